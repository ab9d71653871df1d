"""Swift accounts and containers over the object views: listings, metadata and read ACLs."""

from __future__ import annotations

import io

import pytest

from provider.errors import Conflict, InvalidInput, NotFound, UsageError
from provider.services.containers import Page, grants
from tests.conftest import StoreEnv


def put(store, path: str, data: bytes = b"x") -> None:  # type: ignore[no-untyped-def]
    store.objects.upload(path, io.BytesIO(data), digest=True)


@pytest.fixture
def alpha(qcow2_env: StoreEnv):  # type: ignore[no-untyped-def]
    store = qcow2_env.open("alpha")
    store.containers.create("docs", meta={"color": "blue"})
    for name in ("a.txt", "b/1", "b/2", "b/c/3", "c.txt", "d%2Fx"):
        put(store, f"docs/{name}", name.encode())
    return store


def names(entries) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.subdir or e.name for e in entries]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(Page(), ["a.txt", "b/1", "b/2", "b/c/3", "c.txt", "d%2Fx"], id="all"),
        pytest.param(Page(prefix="b/"), ["b/1", "b/2", "b/c/3"], id="prefix"),
        pytest.param(Page(delimiter="/"), ["a.txt", "b/", "c.txt", "d%2Fx"], id="delimiter"),
        pytest.param(Page(prefix="b/", delimiter="/"), ["b/1", "b/2", "b/c/"], id="prefix-delimiter"),
        pytest.param(Page(marker="b/1", end_marker="c.txt"), ["b/2", "b/c/3"], id="markers"),
        pytest.param(Page(limit=2), ["a.txt", "b/1"], id="limit"),
        pytest.param(Page(delimiter="/", limit=2), ["a.txt", "b/"], id="limit-delimiter"),
        pytest.param(Page(delimiter="/", marker="b/"), ["c.txt", "d%2Fx"], id="marker-past-subdir"),
    ],
)
def test_listings(alpha, page: Page, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert names(alpha.containers.listing("alpha", "docs", page)) == expected


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_account_metadata_and_delete(alpha, qcow2_env: StoreEnv) -> None:  # type: ignore[no-untyped-def]
    put(alpha, "implicit/o")
    assert [c.name for c in alpha.containers.account(Page())] == ["docs", "implicit"]
    docs = alpha.containers.show("alpha", "docs")
    assert (docs.count, docs.bytes, docs.meta) == (6, 26, {"color": "blue"})
    alpha.containers.set("docs", {"size": "L"}, ["color"], read_acl="beta")
    assert alpha.containers.show("alpha", "docs").meta == {"size": "L"}
    with pytest.raises(Conflict, match="not empty"):
        alpha.containers.delete("docs")
    assert alpha.containers.create("empty") is True
    assert alpha.containers.create("empty") is False
    alpha.containers.delete("empty")
    with pytest.raises(NotFound):
        alpha.containers.delete("empty")
    assert qcow2_env.open("beta").containers.account(Page()) == []


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_read_acls(alpha, qcow2_env: StoreEnv) -> None:  # type: ignore[no-untyped-def]
    beta, gamma = qcow2_env.open("beta"), qcow2_env.open("gamma")
    with pytest.raises(NotFound):
        beta.containers.open_object("alpha", "docs", "a.txt")
    alpha.containers.set("docs", {}, [], read_acl="beta:*")
    assert beta.containers.open_object("alpha", "docs", "a.txt").size == 5
    assert len(beta.containers.listing("alpha", "docs", Page())) == 6
    with pytest.raises(NotFound):
        gamma.containers.show("alpha", "docs")
    alpha.containers.set("docs", {}, [], read_acl=".r:*")
    assert gamma.containers.open_object("alpha", "docs", "a.txt").size == 5
    with pytest.raises(NotFound):
        gamma.containers.listing("alpha", "docs", Page())
    with pytest.raises(NotFound):
        gamma.containers.open_object("alpha", "docs", "missing")


def test_grants() -> None:
    assert grants("p1,p2:*", "p2", listing=True)
    assert not grants("p1", "p2", listing=False)
    assert grants(".r:*,.rlistings", "x", listing=True)
    assert not grants(".r:*", "x", listing=True)
    assert not grants(".rlistings", "x", listing=False)


@pytest.mark.parametrize("limit", [-1, 10001])
def test_listing_limits_out_of_range(limit: int) -> None:
    with pytest.raises(InvalidInput, match="limit must be between 0 and 10000"):
        Page(limit=limit)


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", ["a/b", "..", "a\0b", "n" * 2000, ""])
def test_bad_container_names(qcow2_env: StoreEnv, name: str) -> None:
    with pytest.raises(UsageError):
        qcow2_env.open("alpha").containers.create(name)

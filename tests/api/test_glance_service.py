"""The identity and image services in-process on both catalogs (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import pytest

from provider.errors import AuthenticationFailed, NotFound, PermissionDenied
from provider.services import Caller
from provider.services.image_list import ImageQuery
from tests.conftest import StoreEnv


def test_identity_and_images_on_each_catalog(qcow2_env: StoreEnv) -> None:
    root = qcow2_env.open("root")
    root.identity.create_project("alpha")
    root.identity.create_project("beta")
    root.identity.create_user("alice", "password-1", "alpha")
    token, info = root.identity.authenticate("alice", "password-1", None, 60)
    assert root.identity.validate(token).project_id == "alpha" == info.project_id
    with pytest.raises(AuthenticationFailed):
        root.identity.authenticate("alice", "password-2", None, 60)

    alpha = root.for_caller(Caller("alpha", roles=("member",)))
    beta = root.for_caller(Caller("beta", roles=("member",)))
    made = [
        alpha.glance.create({"name": f"n{i}", "visibility": "shared"}, {"k": str(i % 2)}, ["t"])
        for i in range(7)
    ]
    alpha.glance.upload(made[0].id, io.BytesIO(b"\x07" * 8192), 8192, 1 << 20)
    assert alpha.glance.show(made[0].id).glance["checksum"]
    page, more = alpha.glance.list(ImageQuery(limit=3, sort=[("name", "asc")]))
    assert [r.name for r in page] == ["n0", "n1", "n2"] and more
    page, more = alpha.glance.list(ImageQuery(limit=3, sort=[("name", "asc")], marker=page[-1].id))
    assert [r.name for r in page] == ["n3", "n4", "n5"] and more
    odd, _ = alpha.glance.list(ImageQuery(properties={"k": "1"}, tags=["t"]))
    assert sorted(r.name for r in odd) == ["n1", "n3", "n5"]
    with pytest.raises(NotFound):
        beta.glance.show(made[1].id)
    alpha.image_members.add(made[1].id, "beta")
    assert beta.glance.show(made[1].id).members == {"beta": "pending"}
    assert made[1].id not in {r.id for r in beta.glance.list(ImageQuery())[0]}
    beta.image_members.set_status(made[1].id, "beta", "accepted")
    assert made[1].id in {r.id for r in beta.glance.list(ImageQuery())[0]}
    # a page carries each image's tags (sorted) and members, read for the whole page at once
    alpha.glance.create({"name": "zz"}, {}, ["zeta", "alpha", "mu"])
    listed = {r.name: r for r in alpha.glance.list(ImageQuery(limit=1000))[0]}
    assert listed["zz"].tags == ["alpha", "mu", "zeta"] and listed["zz"].members == {}
    assert listed["n1"].members == {"beta": "accepted"} and listed["n1"].tags == ["t"]
    assert listed["n2"].members == {} and listed["n2"].tags == ["t"]
    with pytest.raises(PermissionDenied):
        beta.glance.delete(made[1].id)
    alpha.glance.delete(made[1].id)
    root.identity.delete_user("alice")
    with pytest.raises(AuthenticationFailed):
        root.identity.validate(token)

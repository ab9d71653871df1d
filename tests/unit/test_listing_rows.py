"""The listing builds its frozen model objects without their ``__init__`` (provider/services/
catalog_listing.py): they must equal what the constructors make, field for field, and a model field the
builder does not give must fail loudly."""

from __future__ import annotations

import dataclasses
import json

import pytest

from provider.model import ImageView, ObjectView, Resource, VolumeView
from provider.services import catalog_listing as listing


def _row(*, obj: bool, img: bool, vol: bool) -> tuple[object, ...]:
    r: list[object] = [None] * 30
    r[0:9] = ["id-1", 4096, "ro" if not vol else "rw", "qcow2", "id-1.raw", "raw", "p-0", "ab12", "proj"]
    r[9:11] = ["2026-12-01", "2026-12-02"]
    if obj:
        r[11:16] = ["images", "a.raw", "application/octet-stream", json.dumps({"k": "v"}), "2026-12-01"]
    if img:
        r[16:23] = ["img", "proj", "shared", "active", "raw", "bare", json.dumps({"OSFAMILY": "linux"})]
        r[23:25] = ["2026-12-01", "2026-12-02"]
        r[29] = listing.SEP.join(["t2", "t1"])
    if vol:
        r[25:29] = ["vm", "available", json.dumps({"VOL_NAME": "g1"}), "2026-12-01"]
    assert len(r) == 30
    return tuple(r)


@pytest.mark.parametrize(
    ("obj", "img", "vol"),
    [(True, True, False), (True, False, False), (False, False, True), (False, True, False)],
)
def test_rows_build_the_objects_the_constructors_make(obj: bool, img: bool, vol: bool) -> None:
    (built,) = listing.build_rows([_row(obj=obj, img=img, vol=vol)])
    expected = Resource(
        "id-1", 4096, "ro" if not vol else "rw", "qcow2", "id-1.raw", "raw", "p-0", "available", "ab12",
        "proj", "2026-12-01", "2026-12-02",
        ObjectView("images", "a.raw", "application/octet-stream", {"k": "v"}, "2026-12-01") if obj else None,
        ImageView("img", "proj", "shared", "active", "raw", "bare", {"OSFAMILY": "linux"}, "2026-12-01",
                  "2026-12-02", ("t1", "t2")) if img else None,
        VolumeView("vm", "available", {"VOL_NAME": "g1"}, "2026-12-01") if vol else None,
    )  # fmt: skip
    assert built == expected
    assert vars(built) == vars(expected) and built.kind == expected.kind and built.name == expected.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.size = 1  # type: ignore[misc]


def test_a_field_the_builder_does_not_give_fails_loudly() -> None:
    with pytest.raises(ValueError, match="shorter"):
        listing._make(VolumeView, listing._VOL, ("vm", "available", {}, "2026-12-01"))

"""Listing 1,000 images: paging through glanceclient, and a constant number of queries per page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from glanceclient.v2 import client as glance_client
from sqlalchemy import event

from provider.services.image_list import ImageQuery
from tests.api.conftest import ApiServer, start_server

COUNT = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    srv = start_server(tmp_path_factory.mktemp("api-paging"))
    store = srv.env.open("alpha", admin=False)
    for i in range(COUNT):
        tags = ["tenth"] if i % 10 == 0 else []
        store.glance.create({"name": f"img-{i:04d}"}, {"batch": str(i % 4)}, tags)
    try:
        yield srv
    finally:
        srv.stop()


def test_paging_through_1000_images(server: ApiServer) -> None:
    gc = glance_client.Client(session=server.session("alice"))
    names = [i.name for i in gc.images.list(page_size=100, sort_key="name", sort_dir="asc")]
    assert names == [f"img-{i:04d}" for i in range(COUNT)]
    newest_first = [i.name for i in gc.images.list(page_size=250)]
    assert len(newest_first) == COUNT and len(set(newest_first)) == COUNT
    tenth = [i.name for i in gc.images.list(filters={"tag": ["tenth"]}, page_size=7, sort="name:desc")]
    assert tenth == [f"img-{i:04d}" for i in reversed(range(0, COUNT, 10))]
    batch = list(gc.images.list(filters={"batch": "3"}, page_size=50))
    assert len(batch) == COUNT // 4 and {i["batch"] for i in batch} == {"3"}
    assert list(gc.images.list(filters={"owner": "beta"})) == []


def test_a_page_costs_the_same_number_of_queries(server: ApiServer) -> None:
    store = server.env.open("alpha", admin=False)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store.catalog.engine, "before_cursor_execute", count)
    try:
        for limit in (10, COUNT):
            statements.clear()
            found, _ = store.glance.list(ImageQuery(limit=limit))
            assert len(found) == limit
            assert len(statements) == 2  # the page, then its tags and members
    finally:
        event.remove(store.catalog.engine, "before_cursor_execute", count)

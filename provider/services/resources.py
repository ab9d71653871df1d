"""The unified view: every view of a resource, its derived kind, lineage, children and dependents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from provider.catalog import schema as t
from provider.services.base import Service


class ResourceService(Service):
    def show(self, ref: str) -> dict[str, Any]:
        with self.catalog.read() as conn:
            res = self.resolve(conn, ref)
            self.check_read(conn, res)
            data = res.to_dict()
            lineage = []
            seen = {res.id}
            parent = res.parent
            while parent and parent not in seen:
                seen.add(parent)
                row = conn.execute(select(t.resources).where(t.resources.c.id == parent)).first()
                if row is None:
                    break
                anc = self.load(conn, parent, states=("available", "deleted"))
                lineage.append(
                    {
                        "id": anc.id,
                        "kind": anc.kind if anc.state == "available" else "deleted",
                        "name": anc.name,
                    }
                )
                parent = anc.parent
            data["lineage"] = lineage
            children = conn.execute(
                select(t.resources.c.id)
                .where(t.resources.c.parent == res.id, t.resources.c.state == "available")
                .order_by(t.resources.c.created_at)
            ).all()
            data["children"] = []
            for (cid,) in children:
                child = self.load(conn, cid)
                data["children"].append({"id": child.id, "kind": child.kind, "name": child.name})
            data["dependents"] = self.dependents(conn, res.id)
            backend = self.store.backend(res.backend)
            try:
                data["allocated_bytes"] = backend.allocated_bytes(res.locator)
            except Exception:  # a report, not an operation: show what is known
                data["allocated_bytes"] = None
            return data

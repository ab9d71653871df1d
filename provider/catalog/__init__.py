"""The SQL catalog: resources, their object/image/volume views, physical dependencies, attachments.

``Catalog`` (SQLAlchemy) is imported on first use, so ``provider.catalog.lite`` (the DB-API reader of the
ExtStorage fast paths) loads without SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provider.catalog.db import Catalog
    from provider.catalog.migrations import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Catalog"]


def __getattr__(name: str) -> Any:
    if name == "Catalog":
        from provider.catalog.db import Catalog

        return Catalog
    if name == "SCHEMA_VERSION":
        from provider.catalog.migrations import SCHEMA_VERSION

        return SCHEMA_VERSION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

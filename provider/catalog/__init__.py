"""The SQL catalog: resources, their object/image/volume views, physical dependencies, attachments."""

from provider.catalog.db import Catalog
from provider.catalog.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Catalog"]

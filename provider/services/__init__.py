"""Services: objects, images, volumes and the unified resource view, over the catalog and backends."""

from provider.model import Resource
from provider.services.base import Caller
from provider.services.store import Store

__all__ = ["Caller", "Resource", "Store"]

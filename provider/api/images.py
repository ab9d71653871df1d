"""The Image API (Glance v2) over the image view of Atoll resources."""

from __future__ import annotations

from provider.api.base import Api


def register(api: Api) -> None:
    api.catalog_entry("image", "glance", "")

"""The services ``atoll serve`` offers, and the one place a new service plugs in.

A service is a module with a function ``register(api: provider.api.base.Api) -> None`` that adds its
routes and its entry in the Keystone service catalog, for example (a Swift-like object store)::

    from provider.api.base import Api

    def register(api: Api) -> None:
        api.catalog_entry("object-store", "swift", "/v1/AUTH_{project_id}")
        api.route("/v1/AUTH_{project_id}", AccountResource(api))
        api.route("/auth/v1.0", SwiftAuth(api), public=("GET",))   # no token needed for GET

Then append the module's name to :data:`SERVICE_MODULES`. ``api.route`` takes a Falcon URI template and
a resource object (``on_get``/``on_put``… responders); every request is authenticated by the
``X-Auth-Token`` header unless its method is listed in ``public``; responders find the caller's store
with ``api.store_for(req)`` and raise :class:`provider.errors.AtollError` subclasses, which become JSON
errors with the right status (see :mod:`provider.api.errors`). A catalog path may contain
``{project_id}``; one entry may be listed under several types (``block-storage`` and ``volumev3``) by
calling ``catalog_entry`` once per type.
"""

from __future__ import annotations

SERVICE_MODULES: tuple[str, ...] = (
    "provider.api.root",
    "provider.api.identity",
    "provider.api.identity_admin",
    "provider.api.images",
    "provider.api.imports",
    "provider.api.swift",
    "provider.api.volume",
)

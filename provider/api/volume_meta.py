"""Volume API descriptions clients read before they create: ``/types`` (Atoll's one volume type),
``/limits`` (the project's quotas as Cinder's absolute limits) and ``/os-availability-zone`` (one zone),
as ``openstack volume type list``, ``openstack limits show --absolute`` and Horizon ask; and for
operators ``/os-services`` (admins) and ``/qos-specs`` (none)."""

from __future__ import annotations

import falcon

from provider.api import volume_views as views
from provider.api.base import Api, send_json
from provider.api.volume import PREFIX, VolumeResource
from provider.api.volume_views import stamp
from provider.errors import InvalidInput
from provider.services.volume_api_messages import FILTERS as MESSAGE_FILTERS
from provider.services.volume_api_model import AVAILABILITY_ZONE, check_volume_type, volume_services


class VolumeTypes(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        send_json(resp, {"volume_types": [views.volume_type()]})


class VolumeType(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str, type_id: str) -> None:
        self.begin(req, resp, project_id)
        check_volume_type(type_id)
        send_json(resp, {"volume_type": views.volume_type()})


class Limits(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        send_json(resp, views.limits(store.quotas.show()))


class AvailabilityZones(VolumeResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        zone = {"zoneName": AVAILABILITY_ZONE, "zoneState": {"available": True}}
        send_json(resp, {"availabilityZoneInfo": [zone]})


class Services(VolumeResource):
    """``GET /os-services`` (admins; ``openstack volume service list``)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        store, _ = self.begin(req, resp, project_id)
        found = [
            {
                "binary": s.binary,
                "host": s.host,
                "zone": s.zone,
                "status": "enabled",
                "state": "up",
                "updated_at": stamp(s.updated_at),
                "disabled_reason": None,
            }
            for s in volume_services(store.caller.admin)
        ]
        send_json(resp, {"services": found})


class ResourceFilters(VolumeResource):
    """``GET /resource_filters`` (3.33+): the filters each listing takes."""

    min_version = (3, 33)

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        filters = [
            {"resource": "volume", "filters": ["name", "status", "metadata"]},
            {"resource": "snapshot", "filters": ["name", "status", "volume_id"]},
            {"resource": "attachment", "filters": ["volume_id"]},
            {"resource": "message", "filters": [f for f in MESSAGE_FILTERS if f != "project_id"]},
        ]
        wanted = req.get_param("resource")
        send_json(resp, {"resource_filters": [f for f in filters if wanted in (None, f["resource"])]})


class QosSpecs(VolumeResource):
    """``GET /qos-specs``: none (``openstack volume qos list``)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        send_json(resp, {"qos_specs": []})


class NotOffered(VolumeResource):
    """Cinder's backups and volume transfers, which Atoll does not offer: the listings are empty (clients
    and dashboards list them beside volumes), creating one is refused with what to use instead."""

    def __init__(self, api: Api, key: str, instead: str) -> None:
        super().__init__(api)
        self.key, self.instead = key, instead

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        send_json(resp, {self.key: []})

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        self.begin(req, resp, project_id)
        raise InvalidInput(
            "this volume service offers no %(what)s: %(instead)s", what=self.key, instead=self.instead
        )


BACKUPS_INSTEAD = (
    "a snapshot (openstack volume snapshot create) or an image of the volume (openstack image create "
    "--volume) keeps its data at once, and openstack image save copies an image out of the store"
)
TRANSFERS_INSTEAD = (
    "an image of the volume (openstack image create --volume) shared with the other project (openstack "
    "image add project) becomes a volume there (openstack volume create --image)"
)


def register(api: Api) -> None:
    api.route(f"{PREFIX}/types", VolumeTypes(api))
    api.route(f"{PREFIX}/types/{{type_id}}", VolumeType(api))
    api.route(f"{PREFIX}/limits", Limits(api))
    api.route(f"{PREFIX}/os-availability-zone", AvailabilityZones(api))
    api.route(f"{PREFIX}/os-services", Services(api))
    api.route(f"{PREFIX}/qos-specs", QosSpecs(api))
    api.route(f"{PREFIX}/resource_filters", ResourceFilters(api))
    for path in ("backups", "backups/detail"):
        api.route(f"{PREFIX}/{path}", NotOffered(api, "backups", BACKUPS_INSTEAD))
    for path in (
        "volume-transfers",
        "volume-transfers/detail",
        "os-volume-transfer",
        "os-volume-transfer/detail",
    ):
        api.route(f"{PREFIX}/{path}", NotOffered(api, "transfers", TRANSFERS_INSTEAD))

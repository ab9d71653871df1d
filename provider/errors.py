"""One exception tree for Atoll: every error a user can meet has a one-line, templated message."""

from __future__ import annotations

from atoll_common.errors import AtollError, InvalidInput, ToolError, UsageError

__all__ = ["AtollError", "InvalidInput", "ToolError", "UsageError"]


class NotFound(AtollError):
    message = "%(what)s %(ref)r not found"


class Ambiguous(AtollError):
    message = "%(ref)r is ambiguous: it names %(choices)s; use the id instead"


class AlreadyExists(AtollError):
    message = "%(what)s %(name)r already exists"


class InUse(AtollError):
    message = "%(what)s %(ref)r is in use: %(reason)s"


class Conflict(AtollError):
    """The operation contradicts the resource's current state (e.g. deleting an object still an image)."""

    message = "%(reason)s"


class PermissionDenied(AtollError):
    message = "permission denied: %(reason)s"


class StorageFull(AtollError):
    message = "the store at %(path)s is full"


class BadConfiguration(AtollError):
    message = "bad configuration: %(reason)s"


class CapabilityNotSupported(AtollError):
    message = "the %(backend)s backend cannot %(operation)s"


class BackendError(AtollError):
    message = "backend failure: %(reason)s"


class CatalogError(AtollError):
    message = "catalog failure: %(reason)s"


class DataPathError(AtollError):
    """Attaching, detaching or a live operation through the data path failed."""

    message = "data path failure: %(reason)s"


class MissingBlocks(Conflict):
    """A hashmap names blocks the store does not hold for the caller: upload them, then retry."""

    message = "%(count)d blocks of the hashmap are missing: upload them (POST ?update) and retry"

    def __init__(self, hashes: list[str]) -> None:
        super().__init__(count=len(hashes))
        self.hashes = hashes


class AuthenticationFailed(AtollError):
    """Wrong credentials, or a token that is missing, malformed, expired or revoked (HTTP 401)."""

    message = "authentication failed: %(reason)s"


class ChecksumMismatch(InvalidInput):
    """The uploaded bytes do not have the digest the client announced (nothing is kept)."""

    message = "the uploaded data has md5 %(got)s, not the ETag %(expected)r the client sent"


class TooLarge(InvalidInput):
    """A request body or image larger than the configured limit (HTTP 413)."""

    message = "%(what)s is larger than the limit of %(limit)d bytes"

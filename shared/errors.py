"""The one error hierarchy of the domain and of the adapters that implement its ports.

Entry points map these to outcomes in one table (see ``unprovision.outcomes``):
``Rejected`` is never retried, ``Transient`` is retried (bounded), ``Permanent`` is recorded and stops.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class UnprovisionError(Exception):
    """Base of every error this project raises on purpose.

    ``status`` is the HTTP status a service answered and ``code`` its own error code (a name such as
    ``DeviceNotFound`` or a number such as ``404201``, as text) when the error came from a service and they
    are known; both stay None for errors raised here. They let callers decide without parsing messages.
    """

    status: int | None = None
    code: str | None = None

    def __init__(self, *args: object, status: int | None = None, code: str | None = None) -> None:
        super().__init__(*args)
        self.status = status
        self.code = code


class Rejected(UnprovisionError):
    """Bad input: recorded with its field errors, acknowledged, never retried."""

    def __init__(
        self, errors: tuple[FieldError, ...] | list[FieldError], message: str = "invalid input", *,
        status: int | None = None, code: str | None = None,
    ) -> None:
        self.errors = tuple(errors)
        detail = "; ".join(f"{e.field}: {e.reason}" for e in self.errors)
        super().__init__(f"{message}: {detail}" if detail else message, status=status, code=code)


class Transient(UnprovisionError):
    """A fault that may pass: retried with bounded backoff, then surfaced so the host redelivers."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, code=code)


class Throttled(Transient):
    """The service answered 429; ``retry_after`` is its Retry-After in seconds when it sent one."""


class PreconditionFailed(Transient):
    """An ETag no longer matches (412): re-read and try again."""


class Permanent(UnprovisionError):
    """Will not pass by retrying: recorded and the event stops there."""


class AuthFailed(Permanent):
    """The service refused our credentials (401/403). Never retried: a wrong key does not heal."""


class NotFound(Permanent):
    """The resource does not exist. Mutations that meet it usually count as already done."""


class Conflict(Permanent):
    """The resource exists already (409) or the request conflicts with its state."""


class HubNotConfigured(Permanent):
    """A registration names a hub this app has no credentials for."""

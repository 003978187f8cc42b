"""``ProvisioningService`` over azure-iothub-provisioningserviceclient 1.2.0 (only this module imports it).

Every SDK call goes through ``_call``: SDK errors become ``shared.errors`` (``sdk_errors.guarded``) and
transient ones are retried by a bounded ``Retrier`` — needed because the SDK never retries POSTs (queries,
attestation reads) nor a 429 without Retry-After (docs/azure-behaviour.md §7). Status changes are ETag-safe
read-modify-writes: the enrollment is read whole, its status changed, and written back with its ETag
(the SDK echoes the body's etag as If-Match, §3.4); a 412 means someone else wrote in between, so the
adapter re-reads and tries again, a bounded number of times. The read is skipped when the last
``get_enrollment``/``get_group`` of that ID is still in the adapter's ``ReadCache`` (≤30 s old): the write
then carries that read's ETag, so a change made in between costs a 412 and a re-read, never a lost update.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from provisioningserviceclient import ProvisioningServiceClient, QuerySpecification

from shared.adapters import dps_models as m
from shared.adapters.read_cache import ReadCache
from shared.adapters.sdk_errors import deleted, guarded
from shared.errors import Conflict, NotFound, PreconditionFailed
from shared.model import (
    EnrollmentGroup,
    IndividualEnrollment,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import StepOutcome
from shared.ports import Change
from shared.retry import Retrier

T = TypeVar("T")
log = logging.getLogger(__name__)

#: How many times a read-modify-write re-reads after a 412 before giving up (raising PreconditionFailed).
ETAG_ATTEMPTS = 5
_QUERY_ALL = "*"  # the service grammar is undocumented (§3.5); "*" is what the SDK's own tests send


class DpsProvisioningService:
    """The Device Provisioning Service through its service API (connection string with a policy key)."""

    def __init__(
        self,
        client: ProvisioningServiceClient,
        *,
        retrier: Retrier | None = None,
        ca_bundle: str | None = None,
        read_cache: ReadCache | None = None,
    ) -> None:
        self._client = client
        self._retrier = retrier or Retrier()
        # Last enrollment/group read per ID, consumed by the next status change of that ID (module doc).
        self._reads = read_cache if read_cache is not None else ReadCache()
        if ca_bundle:
            # Per client, never via the process environment (docs/azure-behaviour.md §6).
            client._runtime_client.config.connection.verify = ca_bundle
        client._runtime_client.config.keep_alive = True  # one TLS connection per thread, not per call (§6)

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, retrier: Retrier | None = None, ca_bundle: str | None = None,
        read_cache: ReadCache | None = None,
    ) -> DpsProvisioningService:
        """``HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`` exactly (the SDK rejects a trailing ';')."""
        try:
            client = ProvisioningServiceClient.create_from_connection_string(
                connection_string.strip().rstrip(";")
            )
        except (ValueError, UnboundLocalError) as error:  # the message never echoes the string itself
            raise ValueError("malformed DPS connection string") from error
        return cls(client, retrier=retrier, ca_bundle=ca_bundle, read_cache=read_cache)

    @property
    def host_name(self) -> str:
        return str(self._client.host_name)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return self._retrier.call(lambda: guarded(fn, what), name=what)

    # ---- reads --------------------------------------------------------------------------------------

    def get_registration(self, registration_id: str) -> RegistrationState | None:
        try:
            raw = self._call(
                "dps get registration", lambda: self._client.get_registration_state(registration_id)
            )
        except NotFound:
            return None
        return m.registration(raw)

    def _get_raw_enrollment(self, registration_id: str) -> Any | None:
        try:
            return self._call(
                "dps get enrollment", lambda: self._client.get_individual_enrollment(registration_id)
            )
        except NotFound:
            return None

    def _get_raw_group(self, group_id: str) -> Any | None:
        try:
            return self._call("dps get group", lambda: self._client.get_enrollment_group(group_id))
        except NotFound:
            return None

    def get_enrollment(self, registration_id: str) -> IndividualEnrollment | None:
        """Always a real GET (the orchestrator's confirm re-read relies on it); the model read is kept
        for the next status change of this ID."""
        raw = self._get_raw_enrollment(registration_id)
        self._remember(_enrollment_key(registration_id), raw)
        return m.enrollment(raw) if raw is not None else None

    def get_group(self, group_id: str) -> EnrollmentGroup | None:
        """Always a real GET; the model read is kept for the next status change of this group."""
        raw = self._get_raw_group(group_id)
        self._remember(_group_key(group_id), raw)
        return m.group(raw) if raw is not None else None

    def _remember(self, key: tuple[str, str], raw: Any | None) -> None:
        if raw is None:
            self._reads.discard(key)  # "absent" is never cached: there is no create-only PUT to guard it
        else:
            self._reads.put(key, raw)

    def _query_pages(self, query: Any, what: str) -> Iterator[Any]:
        """Page through an SDK ``Query``; each page is one POST, retried on its own (the SDK retries none)."""
        while query.has_next:
            try:
                page = self._call(what, query.next)
            except StopIteration:  # the SDK's end marker: an empty page
                return
            yield from page

    def iter_groups(self) -> Iterator[EnrollmentGroup]:
        query = self._client.create_enrollment_group_query(QuerySpecification(_QUERY_ALL), page_size=100)
        for raw in self._query_pages(query, "dps query groups"):
            yield m.group(raw)

    def iter_enrollments(self, page_size: int = 100) -> Iterator[IndividualEnrollment]:
        query = self._client.create_individual_enrollment_query(
            QuerySpecification(_QUERY_ALL), page_size=page_size
        )
        for raw in self._query_pages(query, "dps query enrollments"):
            yield m.enrollment(raw)

    def iter_group_registrations(self, group_id: str, page_size: int = 100) -> Iterator[RegistrationState]:
        """Stream a group's registration records page by page.

        Uses the generated client directly because the SDK's ``create_registration_state_query`` is broken
        in 1.2.0 (docs/azure-behaviour.md §3.7): ``POST /registrations/{groupId}/query`` with paging headers.
        """
        runtime = self._client._runtime_client
        token: str | None = None
        while True:
            headers = {"x-ms-max-item-count": str(page_size)}
            if token:
                headers["x-ms-continuation"] = token

            def fetch(h: dict[str, str] = headers) -> Any:
                return runtime.query_device_registration_states(group_id, custom_headers=h, raw=True)

            raw = self._call("dps query group registrations", fetch)
            items = raw.output or []
            for item in items:
                yield m.registration(item, group_id=group_id)
            token = raw.response.headers.get("x-ms-continuation")
            if not token or not items:
                return

    # ---- enrollment and group mutations -------------------------------------------------------------

    def _set_status(
        self, what: str, key: tuple[str, str], read: Callable[[], Any | None], status: ProvisioningStatus,
        *, fresh: Any | None = None,
    ) -> Change:
        """Read-modify-write of ``provisioning_status`` with the read ETag; on 412 re-read, bounded.

        The first attempt uses ``fresh`` (a model just read), else the cached read of ``key``. A cached
        model only ever justifies a *conditional write*: when it already shows ``status``, the answer
        "already done" would rest on possibly stale data with no ETag check behind it, so it is read again.
        A 404 on the write (deleted since the read) is treated like a 412: the re-read decides.
        """
        model = fresh
        if model is None:
            model = self._reads.take(key)
            if model is not None and _status_of(model) == status.value:
                model = None
        for attempt in range(1, ETAG_ATTEMPTS + 1):
            if model is None:
                model = read()
            if model is None:
                raise NotFound(f"{what}: not found")
            before = _status_of(model)
            if before == status.value:
                return Change(StepOutcome.ALREADY_DONE, before=before, after=before)
            model.provisioning_status = status.value
            try:
                self._call(what, partial(self._client.create_or_update, model))
            except (PreconditionFailed, NotFound):
                log.info("%s: changed underneath (attempt %d), re-reading", what, attempt)
                model = None
                continue
            finally:
                self._reads.discard(key)
            return Change(StepOutcome.DONE, before=before, after=status.value)
        raise PreconditionFailed(f"{what}: ETag kept changing after {ETAG_ATTEMPTS} attempts")

    def set_enrollment_status(self, registration_id: str, status: ProvisioningStatus) -> Change:
        return self._set_status(
            "dps set enrollment status", _enrollment_key(registration_id),
            lambda: self._get_raw_enrollment(registration_id), status,
        )

    def set_group_status(self, group_id: str, status: ProvisioningStatus) -> Change:
        return self._set_status(
            "dps set group status", _group_key(group_id), lambda: self._get_raw_group(group_id), status
        )

    def _delete(self, what: str, fn: Callable[[], None]) -> Change:
        """Unconditional delete; 404 counts as already done (a redelivered event must not fail)."""
        return deleted(lambda: self._call(what, fn))

    def delete_enrollment(self, registration_id: str) -> Change:
        self._reads.discard(_enrollment_key(registration_id))
        return self._delete(
            "dps delete enrollment",
            lambda: self._client.delete_individual_enrollment_by_param(registration_id),
        )

    def delete_group(self, group_id: str) -> Change:
        self._reads.discard(_group_key(group_id))
        return self._delete(
            "dps delete group", lambda: self._client.delete_enrollment_group_by_param(group_id)
        )

    def create_blocking_enrollment(
        self, registration_id: str, *, certificate_pem: str | None, marker: str
    ) -> Change:
        """Create a disabled individual enrollment that shadows any group for this registration ID.

        Existing enrollment with this ID: ours (marked) and disabled → ALREADY_DONE; ours but enabled
        (someone re-enabled it) → disabled again → DONE; the device's own (unmarked) → ``Conflict``, the
        planner should have chosen to disable it. Deliberate limit: a PUT without If-Match is a create or
        a wholesale replace (§3.4) and DPS offers no create-only PUT, so an enrollment created by someone
        else between our read and our write would be replaced; the window is one round trip.
        """
        what = "dps create blocking enrollment"
        key = _enrollment_key(registration_id)
        self._reads.discard(key)  # decides create vs. conflict: needs a fresh read, not a cached one
        existing = self._get_raw_enrollment(registration_id)
        if existing is not None:
            current = m.enrollment(existing)
            if not current.is_blocking:
                raise Conflict(f"{what}: the device's own enrollment exists; disable it instead")
            return self._set_status(
                "dps set enrollment status", key, lambda: self._get_raw_enrollment(registration_id),
                ProvisioningStatus.DISABLED, fresh=existing,
            )
        model = m.blocking_enrollment(registration_id, certificate_pem=certificate_pem, marker=marker)
        self._call(what, lambda: self._client.create_or_update(model))
        return Change(StepOutcome.DONE, before="absent", after="disabled (blocking)")


def _enrollment_key(registration_id: str) -> tuple[str, str]:
    return ("enrollment", registration_id)


def _group_key(group_id: str) -> tuple[str, str]:
    return ("group", group_id)


def _status_of(model: Any) -> str:
    return str(model.provisioning_status or "enabled")

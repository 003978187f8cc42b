"""Reading the end state back: the emulator's DPS + hubs, every journal row, and a secret scanner.

The journal keeps every attempt of every step as its own row (``step-<index>-<attempt>``); ``Journal.get``
shows only the latest attempt, so "applied twice" is checked on the raw rows: per event and step index at
most ONE attempt may say ``done`` (a redelivery that finds the change made reports ``already_done``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import TableServiceClient

from tests.soak.soakfleet import Expected

# Well-known development account key of Azurite (public in its docs); must never be logged either.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SECRET_PATTERNS = (re.compile(r"SharedAccessKey=[^;\s\"']"), re.compile(r"\bsig=[A-Za-z0-9%+/=]"),
                   re.compile(r"AccountKey=[^;\s\"']"), re.compile(r"SharedAccessSignature sr="),
                   re.compile(r"BlobEndpoint=|QueueEndpoint=|TableEndpoint="))


@dataclass(frozen=True)
class FleetState:
    """Per registration ID (lower case): enrollment status and hub identity status (``absent`` if gone)."""

    enrollments: Mapping[str, str]
    identities: Mapping[str, str]

    def enrollment(self, reg_id: str) -> str:
        return self.enrollments.get(reg_id.lower(), "absent")

    def identity(self, device_id: str) -> str:
        return self.identities.get(device_id, "absent")


def fleet_state(emu: Any) -> FleetState:
    dump = emu.admin("GET", "/state")
    enrollments = {e["registrationId"].lower(): e.get("provisioningStatus", "enabled")
                   for e in dump["dps"]["enrollments"]}
    identities = {d["device_id"]: d["status"] for hub in dump["hubs"] for d in hub["devices"]}
    return FleetState(enrollments, identities)


@dataclass
class JournalRows:
    """Every row of one journal: headers by eventId, and step attempts per (eventId, index)."""

    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[tuple[str, int], list[str]] = field(default_factory=lambda: defaultdict(list))

    def done_twice(self) -> list[tuple[str, int]]:
        """(eventId, step index) pairs with more than one ``done`` attempt: a change applied twice."""
        return [key for key, outcomes in self.attempts.items() if outcomes.count("done") > 1]


def journal_rows(connection_string: str, prefix: str) -> JournalRows:
    service = TableServiceClient.from_connection_string(connection_string)
    table = service.get_table_client(f"{prefix}journal")
    by_pk: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entity in table.list_entities():
        by_pk[entity["PartitionKey"]].append(dict(entity))
    rows = JournalRows()
    for entities in by_pk.values():
        header = next((e for e in entities if e["RowKey"] == "event"), None)
        if header is None:
            continue
        event_id = str(header["EventId"])
        rows.headers[event_id] = header
        for e in entities:
            if e["RowKey"].startswith("step-"):
                rows.attempts[(event_id, int(e["Index"]))].append(str(e["Outcome"]))
    return rows


def rejected_event_ids(journal: Any) -> dict[str, list[Mapping[str, str]]]:
    """eventId (as claimed by the rejected body) → field errors, from the journal's rejection records."""
    out: dict[str, list[Mapping[str, str]]] = {}
    for record in journal.iter_rejections():
        if record.event_id:
            out[record.event_id] = list(record.errors)
    return out


def state_problems(expected: Sequence[Expected], state: FleetState) -> list[str]:
    """Devices whose end state differs from what their event implies."""
    problems = []
    for exp in expected:
        if exp.device is None:
            continue
        reg = exp.device.registration_id
        got = (state.enrollment(reg), state.identity(reg))
        if got != (exp.enrollment, exp.hub_identity):
            problems.append(f"{exp.event_id} ({exp.kind}) on {reg}: expected "
                            f"{(exp.enrollment, exp.hub_identity)}, got {got}")
    return problems


def secret_values(emu: Any, extra: Iterable[str] = ()) -> list[str]:
    """Every key the emulator holds for its policies, Azurite's key, and anything else given."""
    values = [AZURITE_KEY, *extra]
    connection_strings = [emu.dps_connection_string] + [h["connectionString"] for h in emu.hubs]
    for cs in connection_strings:
        parts = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
        values.append(parts["SharedAccessKey"])
    return [v for v in values if v]


def find_secrets(text: str, values: Iterable[str]) -> list[str]:
    """What in ``text`` looks like a secret: a known key value, or a key/SAS/connection-string shape."""
    hits = [f"known secret value ...{v[-6:]}" for v in values if v in text]
    for pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            start = max(0, match.start() - 60)
            hits.append(f"pattern {pattern.pattern!r} near: {text[start:match.start()]!r}")
    return hits


RETRYABLE = ("Transient", "Throttled", "PreconditionFailed")
# Transient subclasses of the service layer: the host redelivers them as designed (a delivery that waited
# for its device's lease, or for a flush holding an earlier step of its device)
RETRYABLE_ELSEWHERE = ("unprovision.engine.lease.TargetBusy", "unprovision.engine.lease.LeaseLost",
                       "unprovision.storm.coalesce.EarlierStepInFlight")
_RECORD_START = re.compile(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )")
_ERROR_RECORD = re.compile(r"\S+ \S+ (?:ERROR|CRITICAL) (\S+): (.*)")


_HOST_START = re.compile(r"^=== host start \d+ ===$", re.MULTILINE)


def host_loop_problems(log: str, allow_retryable: bool = True) -> list[str]:
    """ERROR records and tracebacks in the host's output other than a function that raised a retryable
    error (which the host logs with its traceback and redelivers, as designed)."""
    problems = []
    # a host start banner (HostProcess writes "=== host start N ===", then devhost prints its functions)
    # ends the record before it: without this, a traceback logged just before a kill would end in banner
    # lines instead of its exception
    records = [r for chunk in _HOST_START.split(log) for r in _RECORD_START.split(chunk)]
    for record in records:
        match = _ERROR_RECORD.match(record)
        if match is None:
            if "Traceback" in record:
                problems.append(record[:400])
            continue
        last = record.strip().splitlines()[-1]
        retryable = any(last.startswith(f"shared.errors.{name}") for name in RETRYABLE) \
            or any(last.startswith(f"{name}:") for name in RETRYABLE_ELSEWHERE)
        if not (allow_retryable and match.group(2).startswith("function ") and retryable):
            problems.append(record[:400])
    return problems

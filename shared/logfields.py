"""Structured log properties an operator can query: eventId, correlationId, target, step, outcome.

Use at a log call site (``log_fields`` does both lines in one call)::

    props = fields(event_id="evt-1", correlation_id=None, target="dev-1", step="HubIdentityDisabled",
                   outcome="done")
    log.info("step done %s", describe(props), extra=log_extra(props))
    log_fields(log, logging.INFO, "step", event_id="evt-1", target="dev-1", step="HubIdentityDisabled",
               outcome="done")

``log_extra`` puts each property on the ``LogRecord`` under its camelCase name (what an OpenTelemetry log
exporter such as azure-monitor-opentelemetry turns into ``customDimensions``) and, for the OpenCensus-style
handlers, the same mapping under ``custom_dimensions``. ``describe`` renders the properties as
``key=value`` pairs in a fixed order so that the classic Functions host pipeline, which forwards only the
message text, still lets Application Insights ``extract()`` them (docs/operations.md shows both forms).

Values are clamped and stripped of whitespace and ``=`` so a field can never forge another; nothing here
reads a secret, and callers pass identifiers only (never a connection string or a certificate).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

# The order in which ``describe`` renders the properties and the names Application Insights shows.
KEYS = ("eventId", "correlationId", "target", "step", "outcome")
# Further properties a caller may add (e.g. hub, attempt); anything else is refused, to keep the schema small.
OPTIONAL_KEYS = ("hub", "eventType", "attempt", "durationMs", "error", "check", "severity", "queue")
MAX_VALUE = 128  # eventId allows 128 characters; longer values are clamped with an ellipsis


def _clean(value: object) -> str:
    text = str(value)
    text = "".join("_" if ch.isspace() or ch == "=" or not ch.isprintable() else ch for ch in text)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def fields(
    *,
    event_id: str | None = None,
    correlation_id: str | None = None,
    target: str | None = None,
    step: str | None = None,
    outcome: str | None = None,
    **more: object,
) -> dict[str, str]:
    """The properties that are known (``None`` is left out), cleaned, under their camelCase names."""
    unknown = sorted(set(more) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown log field(s): {', '.join(unknown)}")
    raw: dict[str, object | None] = {
        "eventId": event_id, "correlationId": correlation_id, "target": target, "step": step,
        "outcome": outcome, **more,
    }
    return {key: _clean(value) for key, value in raw.items() if value is not None}


def log_extra(props: Mapping[str, str]) -> dict[str, object]:
    """``extra=`` for ``logging``: each property as a record attribute, plus ``custom_dimensions``."""
    return {**props, "custom_dimensions": dict(props)}


def describe(props: Mapping[str, str]) -> str:
    """``eventId=evt-1 target=dev-1 ...`` in a fixed order (the five keys first), for the message text."""
    order = [key for key in KEYS if key in props] + sorted(key for key in props if key not in KEYS)
    return " ".join(f"{key}={props[key]}" for key in order)


def log_fields(
    logger: logging.Logger,
    level: int,
    text: str,
    *,
    event_id: str | None = None,
    correlation_id: str | None = None,
    target: str | None = None,
    step: str | None = None,
    outcome: str | None = None,
    **more: object,
) -> dict[str, str]:
    """Log ``text`` followed by ``describe(props)``, with the properties as ``extra`` (``log_extra``);
    returns the properties. The one call the engine, the service layer and the triggers use."""
    props = fields(event_id=event_id, correlation_id=correlation_id, target=target, step=step,
                   outcome=outcome, **more)
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", text, describe(props), extra=log_extra(props), stacklevel=2)
    return props

"""The audit timer: re-checks revocations and reports poison messages on ``%AUDIT_SCHEDULE%`` (hourly)."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from unprovision import service, wiring
from unprovision.triggers import setting_expr

log = logging.getLogger(__name__)


def audit_timer(timer: func.TimerRequest) -> None:
    """Runs the audit (remediating when ``AUDIT_REMEDIATE`` is true) and logs its summary."""
    services = wiring.services()
    report = service.run_audit_now(services, services.settings.audit_remediate)
    log.info("audit timer (past due: %s): %s", timer.past_due, json.dumps(report.summary(), sort_keys=True))


def blueprint() -> func.Blueprint:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]  # untyped in azure-functions 1.26
    bp.function_name("audit_timer")(bp.timer_trigger(
        arg_name="timer", schedule=setting_expr("AUDIT_SCHEDULE", "0 0 * * * *"),
        run_on_startup=False)(audit_timer))
    return bp

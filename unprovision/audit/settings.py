"""The audit's knobs, read from the app's ``Settings`` (or any object or mapping with the same names)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# The app's Settings names of knobs whose audit name differs.
_ALIASES = {"cert_threshold_days": ("cert_expiry_warning_days",)}


@dataclass(frozen=True)
class AuditSettings:
    """``from_settings`` reads ``audit_<name>`` or ``<name>`` (or an alias) from any settings object."""

    cert_threshold_days: int = 30
    max_findings_per_check: int = 200
    filter_capacity: int = 1_000_000  # Bloom filters: ~1.2 MB each at 1 % error
    filter_error_rate: float = 0.01
    page_size: int = 100
    # Registry tokens one hub query page costs: the query quota is a fifth of the identity-registry quota in
    # every tier (S1/S2: 20 vs 100/min per unit, S3: 1,000 vs 5,000), so 5 tokens keep queries in budget.
    hub_page_ops: int = 5
    dps_ops_per_minute: float = 500.0  # half the documented 1,000/min: live revocations keep the rest
    check_individual_registrations: bool = True  # one DPS read per enabled own enrollment, twice per run
    stuck_after_minutes: int = 60  # received/in_progress events not updated for longer are reported

    @classmethod
    def from_settings(cls, settings: Any) -> AuditSettings:
        if isinstance(settings, AuditSettings):
            return settings
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in (f"audit_{f.name}", f.name, *_ALIASES.get(f.name, ())):
                value = settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)
                if value is not None:
                    values[f.name] = value
                    break
        return cls(**values)

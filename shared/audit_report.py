"""The audit report: what one run found, suppressed and re-applied; its JSON document and its table.

Built on ``shared.audit`` (check IDs, findings, group snapshots); that module never imports this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.audit import CHECKS, CheckId, Finding, GroupSnapshot, Severity
from shared.ports import SuppressionRecord


@dataclass(frozen=True)
class Remediation:
    """One re-applied revocation: the synthetic event, the journal event it repeats, and how it ended."""

    event_id: str
    original_event_id: str
    target: str
    status: str  # completed | failed | skipped (the orchestrator's verdict, or why nothing ran)
    checks: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"eventId": self.event_id, "originalEventId": self.original_event_id, "target": self.target,
                "status": self.status, "checks": list(self.checks), "error": self.error}


@dataclass(frozen=True)
class AuditReport:
    """One audit run. ``counts`` are exact per check; ``findings`` keep at most a bounded number per check."""

    report_id: str
    started_at: str
    finished_at: str
    remediate: bool
    findings: tuple[Finding, ...] = ()
    suppressed: tuple[tuple[Finding, SuppressionRecord], ...] = ()
    suppressions: tuple[SuppressionRecord, ...] = ()  # those in force during the run
    remediations: tuple[Remediation, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)  # check -> findings (not suppressed), untruncated
    errors: tuple[str, ...] = ()  # checks that could not run completely, and why
    notes: tuple[str, ...] = ()
    groups: tuple[GroupSnapshot, ...] = ()  # remembered for the next run (deleted-group analysis)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.errors

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per check and severity (untruncated), the shape logged after every run."""
        out: dict[str, dict[str, int]] = {}
        for check, n in sorted(self.counts.items()):
            sev = CHECKS[CheckId(check)].severity.value
            by_sev = out.setdefault(check, {})
            by_sev[sev] = by_sev.get(sev, 0) + n
        for f in self.findings:  # severities that differ from the default (LOW disabled-group findings)
            if f.severity != CHECKS[f.check].severity:
                out[f.check.value][CHECKS[f.check].severity.value] -= 1
                out[f.check.value][f.severity.value] = out[f.check.value].get(f.severity.value, 0) + 1
        return {c: {s: n for s, n in v.items() if n} for c, v in out.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "reportId": self.report_id, "startedAt": self.started_at, "finishedAt": self.finished_at,
            "remediate": self.remediate, "summary": self.summary(), "counts": dict(self.counts),
            "findings": [f.to_json() for f in self.findings],
            "suppressed": [{**f.to_json(), "suppression": asdict(s)} for f, s in self.suppressed],
            "suppressions": [asdict(s) for s in self.suppressions],
            "remediations": [r.to_json() for r in self.remediations],
            "errors": list(self.errors), "notes": list(self.notes),
            "groups": [g.to_json() for g in self.groups],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AuditReport:
        def sup(d: Mapping[str, Any]) -> SuppressionRecord:
            return SuppressionRecord(**d)

        return cls(
            doc["reportId"], doc["startedAt"], doc["finishedAt"], bool(doc.get("remediate")),
            tuple(Finding.from_json(f) for f in doc.get("findings", ())),
            tuple((Finding.from_json(f), sup(f["suppression"])) for f in doc.get("suppressed", ())),
            tuple(sup(s) for s in doc.get("suppressions", ())),
            tuple(Remediation(r["eventId"], r["originalEventId"], r["target"], r["status"],
                              tuple(r.get("checks", ())), r.get("error"))
                  for r in doc.get("remediations", ())),
            dict(doc.get("counts", {})), tuple(doc.get("errors", ())), tuple(doc.get("notes", ())),
            tuple(GroupSnapshot.from_json(g) for g in doc.get("groups", ())),
        )


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int = 60) -> list[str]:
    cut = [[c if len(c) <= width else c[: width - 1] + "…" for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cut)) if cut else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cut)
    return out


def render_table(report: AuditReport) -> str:
    """The human view: a summary line, findings by severity, suppressed findings, remediations, errors."""
    severity_order = {s: i for i, s in enumerate(Severity)}
    total = sum(report.counts.values())
    head = (f"audit {report.report_id} at {report.started_at}: {total} finding(s), "
            f"{len(report.suppressed)} suppressed, {len(report.remediations)} remediation(s)")
    lines = [head]
    ordered = sorted(report.findings, key=lambda f: (severity_order[f.severity], f.check, f.resource))
    if ordered:
        lines += ["", *_table(["SEVERITY", "CHECK", "RESOURCE", "EVIDENCE", "ACTION"],
                              [[f.severity, f.check, f.resource, f.evidence, f.action] for f in ordered])]
    shown = {c: sum(1 for f in report.findings if f.check == c) for c in report.counts}
    lines += [f"({n - shown[c]} more {c} not listed)"
              for c, n in sorted(report.counts.items()) if n > shown[c]]
    if report.suppressed:
        rows = [[f.check, f.resource, s.until, s.reason] for f, s in report.suppressed]
        lines += ["", "Suppressed:", *_table(["CHECK", "RESOURCE", "UNTIL", "REASON"], rows)]
    if report.remediations:
        lines += ["", "Remediations:", *_table(["EVENT", "REPEATS", "TARGET", "STATUS"],
                                               [[r.event_id, r.original_event_id, r.target, r.status]
                                                for r in report.remediations])]
    lines += [f"error: {e}" for e in report.errors] + [f"note: {n}" for n in report.notes]
    return "\n".join(lines)

"""The audit: do revocations still hold? Run (``run``), reads and metering (``reader``), revocation checks
(``revocations``), groups (``groups``), hub ↔ DPS join (``fleet``), event health (``health``), remediation
through the engine (``remediate``) and audits requested over HTTP (``requests``). See docs/audit.md."""

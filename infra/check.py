"""Offline checks of the deployment for ``make lint``: no network, no Azure, each with a tool made for it.

1. every ``infra/**/*.bicep`` parses (pycep-parser, from requirements-dev.txt);
2. checkov scans the Bicep (``--framework bicep``, scoped to infra/, ``--skip-download``); waivers are inline
   ``// checkov:skip=ID: reason`` comments next to the resource. checkov runs from its own virtual
   environment ``.venv-iac`` (infra/requirements-iac.txt), made here on first use: it pins ``packaging<24``
   and ``pycep-parser==0.5.1``, which conflict with pytest and our pycep-parser in ``.venv``;
3. azure-functions-doctor (``--profile deploy``) diagnoses what a deployment ships (the folder minus
   ``.funcignore``, plus infra/ for the target configuration) against the template; any *fail* fails.

Usage: ``.venv/bin/python infra/check.py [--skip-checkov] [--skip-doctor]``. Exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
IAC_VENV = ROOT / ".venv-iac"
IAC_REQUIREMENTS = INFRA / "requirements-iac.txt"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_bicep() -> bool:
    from pycep import BicepParser

    ok = True
    for path in sorted(INFRA.rglob("*.bicep")):
        try:
            BicepParser().parse(file_path=path)
        except Exception as exc:  # noqa: BLE001  # report every file's parse error, then fail
            say(f"infra: {path.relative_to(ROOT)} does not parse: {exc}")
            ok = False
    say(f"infra: Bicep parse {'ok' if ok else 'FAILED'}")
    return ok


def ensure_checkov() -> Path:
    marker = IAC_VENV / ".installed"
    if not marker.exists() or marker.stat().st_mtime < IAC_REQUIREMENTS.stat().st_mtime:
        say("infra: installing checkov into .venv-iac (first run only)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(IAC_VENV)], check=True)  # noqa: S603
        pip = subprocess.run([str(IAC_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",  # noqa: S603
                              "--disable-pip-version-check", "-r", str(IAC_REQUIREMENTS)],
                             capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            say(pip.stderr[-3000:])
            raise SystemExit("infra: could not install checkov into .venv-iac")
        marker.touch()
    return IAC_VENV / "bin" / "checkov"


def run_checkov() -> bool:
    checkov = ensure_checkov()
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run([str(checkov), "-d", str(INFRA), "--framework", "bicep", "--compact",  # noqa: S603
                             "--quiet", "--skip-download", "-o", "cli"],
                            env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    say("\n".join(f"infra: checkov: {line}" for line in lines[-40:]))
    if result.returncode != 0:
        say(result.stderr[-2000:])
    return result.returncode == 0


def stage_deployment(target: Path) -> Path:
    """Copy what a deployment ships (the root minus ``.funcignore``) plus infra/ and azure.yaml, which the
    doctor reads for the target configuration. Diagnoses the deployed app, not test fixtures, in seconds."""
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]
    app = target / "app"
    app.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for entry in ROOT.iterdir():
        shipped = entry.name == ".funcignore" or not (
            entry.name.startswith(".") or any(fnmatch.fnmatch(entry.name, p) for p in patterns))
        if shipped or entry.name in ("infra", "azure.yaml"):
            if entry.is_dir():
                shutil.copytree(entry, app / entry.name, ignore=skip)
            else:
                shutil.copy2(entry, app / entry.name)
    return app


def run_doctor() -> bool:
    doctor = BIN / "azure-functions-doctor"
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        report = Path(tmp) / "report.json"
        app = stage_deployment(Path(tmp))
        result = subprocess.run([str(doctor), "doctor", "--path", str(app), "--profile", "deploy",  # noqa: S603
                                 "--format", "json", "--output", str(report), "--summary-json", str(summary)],
                                capture_output=True, text=True, check=False)
        if not summary.exists():
            say(f"infra: azure-functions-doctor did not run: {result.stderr[-1000:]}")
            return False
        counts = json.loads(summary.read_text(encoding="utf-8"))
        items = [item for group in json.loads(report.read_text(encoding="utf-8")).get("results", [])
                 for item in group.get("items", [])] if report.exists() else []
    say(f"infra: azure-functions-doctor (deploy profile): {json.dumps(counts, sort_keys=True)}")
    for item in items:
        if item.get("status") in ("warn", "fail"):
            say(f"infra: azure-functions-doctor {item['status']}: {item.get('label')}: {item.get('value')}"
                " (explained in docs/deploy.md, 'azure-functions-doctor')")
    failed = counts.get("failed", counts.get("fail", 0))
    return result.returncode == 0 and not failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-checkov", action="store_true")
    parser.add_argument("--skip-doctor", action="store_true")
    args = parser.parse_args(argv)
    ok = parse_bicep()
    if not args.skip_checkov:
        ok = run_checkov() and ok
    if not args.skip_doctor:
        ok = run_doctor() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m devhost`` as a process: runs the toy app, serves HTTP, stops on SIGTERM, leaks no secrets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devhost.azurite import DEV_ACCOUNT_KEY, AzuriteHandle

TOYAPP = Path(__file__).parent / "toyapp"
REPO = Path(__file__).resolve().parents[2]


def test_cli_runs_the_app_and_stops_on_sigterm(azurite: AzuriteHandle, tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "ToyStorage": azurite.connection_string,
                    "TOY_QUEUE": "cli-work",
                    "TOY_FAIL_QUEUE": "cli-fail",
                    "TOY_SCHEDULE": "0 0 0 1 1 *",
                },
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--app-root",
            str(TOYAPP),
            "--settings",
            str(settings),
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while not any("open_route: HTTP" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            assert proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        url = re.search(r"(http://127\.0\.0\.1:\d+/api)/open", "".join(lines))
        assert url is not None
        with urllib.request.urlopen(f"{url.group(1)}/open/x/y", timeout=10) as response:  # noqa: S310
            assert response.read() == b"x/y"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    text = "".join(lines) + out + err
    assert "devhost: stopping" in text
    assert "work: queue cli-work" in text
    assert DEV_ACCOUNT_KEY not in text  # connection strings never printed

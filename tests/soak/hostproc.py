"""The app under the local Functions host as a child process, so a test can SIGKILL it mid-flight.

Start command: ``python -c <bootstrap> --app-root . --settings <file> --port N --state-dir D --no-timers
-v``, where the bootstrap runs ``devhost.__main__.main`` after lowering
``devhost.queue_pump.RUNNING_INVISIBILITY_S`` from 600 s to ``invisibility_s``. Why: a killed host leaves
the messages it had fetched invisible for the whole fetch invisibility (like the real host, whose lease only
expires); ten minutes per kill would not fit a CI budget. The engine's per-target lease
(``unprovision.engine.lease.DEFAULT_TTL``, 60 s, renewed while held) is compressed with it to
``lease_ttl_s``, keeping the production order "a dead holder's target lease expires before its message is
visible again": otherwise a redelivered event would spend much of its redelivery budget (5 deliveries of
15 s wait + 5 s visibilityTimeout) waiting out a dead holder's lease, and could be poisoned before it was
ever journaled. Everything else is
``python -m devhost`` unchanged. stdout and stderr of every run are appended to one log file that the
security tests scan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

BOOTSTRAP = (
    "import sys\n"
    "import unprovision.engine.lease as lease\n"
    "lease.DEFAULT_TTL = float(sys.argv.pop(1))\n"
    "import devhost.queue_pump as pump\n"
    "pump.RUNNING_INVISIBILITY_S = int(sys.argv.pop(1))\n"
    "from devhost.__main__ import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
MASTER_KEY = "soak-master-" + os.urandom(12).hex()
FUNCTION_KEY = "soak-function-" + os.urandom(12).hex()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class HostProcess:
    app_root: Path
    settings_file: Path
    state_dir: Path
    log_path: Path
    invisibility_s: int = 15
    lease_ttl_s: float = 10.0  # < invisibility_s, as 60 s < 600 s in production
    port: int = field(default_factory=free_port)
    starts: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 60) -> HostProcess:
        """Spawn the host and wait until its HTTP front end answers (the openapi route is anonymous)."""
        env = {**os.environ, "DEVHOST_MASTER_KEY": MASTER_KEY, "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
               "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}
        args = [sys.executable, "-c", BOOTSTRAP, str(self.lease_ttl_s), str(self.invisibility_s),
                "--app-root", str(self.app_root),
                "--settings", str(self.settings_file), "--port", str(self.port),
                "--state-dir", str(self.state_dir), "--no-timers", "-v"]
        with self.log_path.open("ab") as log:
            log.write(f"\n=== host start {self.starts + 1} ===\n".encode())
            self._proc = subprocess.Popen(args, cwd=self.app_root, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"host exited with {self._proc.returncode}; see {self.log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.base_url}/openapi.json", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"host not ready after {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no clean-up, in-flight messages stay invisible until their lease runs out."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop within 15 s."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = None
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self._proc = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

"""Start and stop Azurite (queue + table, blob on request) on free loopback ports, for tests and runs.

Each service runs as its own process from ``node_modules/.bin`` (the combined ``azurite`` command always
starts blob too). Ports are chosen by the OS: every service starts on port 0 and its real listening port
is read from the process's sockets (psutil), so parallel sessions on one machine never race for a port.
Flags follow docs/azure-behaviour.md (§F7): ``--skipApiVersionCheck`` because
``azure-storage-queue`` 12.18.1 sends an API version newer than Azurite 3.35 knows,
``--disableTelemetry --silent``, and ``--loose`` so that headers Azurite does not implement are ignored
instead of refused.

Usage::

    handle = start_azurite()                      # in memory
    handle = start_azurite(location=Path(".state/azurite"), blob=True)
    ...  handle.connection_string, handle.queue_url, handle.table_url
    handle.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# The public, documented development account of the storage emulators (not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 10.0  # measured start-up is ~1 s per service; the margin covers a loaded 2-core machine
_SERVICES = ("queue", "table", "blob")
_REPO_ROOT = Path(__file__).resolve().parent.parent


class AzuriteError(RuntimeError):
    """Azurite could not be started (missing install, early exit, or no port in time)."""


@dataclass
class AzuriteHandle:
    """A running Azurite: endpoints, the explicit connection string, and ``stop()``."""

    ports: dict[str, int]
    processes: list[subprocess.Popen[bytes]] = field(repr=False)
    location: Path | None = None

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}/{DEV_ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return self.url("queue")

    @property
    def table_url(self) -> str:
        return self.url("table")

    @property
    def blob_url(self) -> str | None:
        return self.url("blob") if "blob" in self.ports else None

    @property
    def connection_string(self) -> str:
        """Explicit well-known dev-account form (``UseDevelopmentStorage=true`` means default ports only)."""
        parts = [
            "DefaultEndpointsProtocol=http",
            f"AccountName={DEV_ACCOUNT}",
            f"AccountKey={DEV_ACCOUNT_KEY}",
            f"QueueEndpoint={self.queue_url}",
            f"TableEndpoint={self.table_url}",
        ]
        if self.blob_url:
            parts.append(f"BlobEndpoint={self.blob_url}")
        return ";".join(parts) + ";"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every service (Azurite closes cleanly); SIGKILL what still lives after ``timeout``."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def __enter__(self) -> AzuriteHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bin_dir(root: Path | None = None) -> Path:
    """Where the Azurite binaries live; a clear error when ``npm ci`` has not run."""
    directory = (root or _REPO_ROOT) / "node_modules" / ".bin"
    if not (directory / "azurite-table").exists():
        raise AzuriteError(f"Azurite is not installed under {directory}: run `make setup` (npm ci) first")
    return directory


def _command(directory: Path, service: str, location: Path | None, extra: Sequence[str] = ()) -> list[str]:
    persistence = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    return [
        str(directory / f"azurite-{service}"),
        f"--{service}Host", HOST,
        f"--{service}Port", "0",
        *persistence,
        "--skipApiVersionCheck", "--disableTelemetry", "--silent", "--loose", *extra,
    ]


def _listening_port(proc: subprocess.Popen[bytes]) -> int | None:
    """The TCP port the process listens on, once it does."""
    try:
        conns = psutil.Process(proc.pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    ports = [c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr]
    return ports[0] if ports else None


def _wait_for_ports(procs: dict[str, subprocess.Popen[bytes]], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    ports: dict[str, int] = {}
    while len(ports) < len(procs):
        for service, proc in procs.items():
            if service in ports:
                continue
            if proc.poll() is not None:
                raise AzuriteError(f"azurite-{service} exited with code {proc.returncode} during start-up")
            port = _listening_port(proc)
            if port:
                ports[service] = port
        if time.monotonic() > deadline:
            missing = sorted(set(procs) - set(ports))
            raise AzuriteError(f"Azurite did not listen within {timeout:.0f} s: {', '.join(missing)}")
        time.sleep(0.05)
    return ports


def start_azurite(
    *, blob: bool = False, location: Path | None = None, timeout: float = STARTUP_TIMEOUT_S,
    extra_args: Sequence[str] = (),
) -> AzuriteHandle:
    """Start queue + table (and blob when asked) in memory, or persisted under ``location``. ``extra_args``
    go to every service (e.g. ``--cert``, ``--key``, ``--oauth basic`` for OAuth tests; the endpoints are
    then https, which ``url`` does not reflect)."""
    directory = bin_dir()
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
    services = _SERVICES if blob else _SERVICES[:2]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "AZURITE_ACCEPT_EULA": "true"}
    try:
        for service in services:
            procs[service] = subprocess.Popen(  # noqa: S603 - fixed argv, our own node_modules binaries
                _command(directory, service, location, extra_args),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=str(location or directory), env=env, start_new_session=True,
            )
        ports = _wait_for_ports(procs, timeout)
    except BaseException:
        for proc in procs.values():
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
        raise
    handle = AzuriteHandle(ports=ports, processes=list(procs.values()), location=location)
    atexit.register(handle.stop)  # no orphans if the owner never stops it; stop() is idempotent
    return handle

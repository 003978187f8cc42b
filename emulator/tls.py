"""TLS for the emulator: a private CA and one server certificate kept in the state directory, and the
server side of mutual TLS.

Why files and reuse: clients trust the emulator through ``REQUESTS_CA_BUNDLE=<state>/ca.pem`` (or
``NODE_EXTRA_CA_CERTS`` for Node); reusing the CA across restarts keeps that setting valid. EC P-256 keys
keep start-up well under a second. The server certificate carries SAN ``127.0.0.1``, ``::1``,
``localhost`` and any extra addresses asked for (standard-ports mode); it is renewed when missing, expired
within a day, not issued by the current CA, or not covering an address asked for.

Mutual TLS: every listener *requests* a client certificate and accepts whatever chain is presented (or none),
as DPS and IoT Hub do at the handshake; enrollments and identities decide afterwards. Python's ``ssl``
cannot do this (it verifies client chains against a trust store and exposes only the leaf), so the
listener uses pyOpenSSL, whose verify callback may accept any chain and which exposes the whole presented
chain (leaf and intermediates).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files the server and clients need."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    path.chmod(0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_CA_USAGE = x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _make_ca(files: TlsFiles) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unprovision emulator local CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(files.ca_key, key)
    files.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_server(files: TlsFiles, extra_ips: Iterable[str] = ()) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we wrote it ourselves
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ips = dict.fromkeys(["127.0.0.1", "::1", *(str(ipaddress.ip_address(ip)) for ip in extra_ips)])
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.server_key, key)
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_valid(files: TlsFiles, extra_ips: Iterable[str] = ()) -> bool:
    if not (files.server_cert.exists() and files.server_key.exists()):
        return False
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    fresh = cert.not_valid_after_utc > _now() + dt.timedelta(days=1)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return fresh and cert.issuer == ca_cert.subject and set(extra_ips) <= covered


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ensure_tls(state_dir: Path, extra_ips: Iterable[str] = ()) -> TlsFiles:
    """Create (or reuse) the CA and server certificate under ``state_dir``; the server certificate covers
    ``extra_ips`` too (re-issued when it does not)."""
    extra_ips = [ip for ip in extra_ips if _is_ip(ip)]
    state_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(state_dir / "ca.pem", state_dir / "ca-key.pem",
                     state_dir / "server.pem", state_dir / "server-key.pem")
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _make_ca(files)
        files.server_cert.unlink(missing_ok=True)
    if not _server_valid(files, extra_ips):
        _make_server(files, extra_ips)
    return files


def _accept_any(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """Accept every presented chain at the handshake (DPS/IoT Hub decide afterwards, from their records)."""
    del conn, cert, errno, depth, ok
    return True


def server_context(files: TlsFiles) -> SSL.Context:
    """Server context: TLS 1.2+, requests (never requires) a client certificate and accepts any chain."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(files.server_cert))
    context.use_privatekey_file(str(files.server_key))
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    context.set_session_id(b"unprovision-emulator")
    return context


class _RawTls(io.RawIOBase):
    """File object over a pyOpenSSL connection, for ``BaseHTTPRequestHandler``'s rfile/wfile."""

    def __init__(self, conn: SSL.Connection, mode: str) -> None:
        super().__init__()
        self._conn = conn
        self._mode = mode

    def readable(self) -> bool:
        return "r" in self._mode

    def writable(self) -> bool:
        return "w" in self._mode

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._conn.recv_into(buffer))
        except (SSL.ZeroReturnError, SSL.SysCallError):
            return 0
        except SSL.WantReadError as exc:  # SO_RCVTIMEO elapsed
            raise TimeoutError("TLS read timed out") from exc
        except SSL.Error as exc:
            raise OSError(f"TLS error: {exc}") from exc

    def write(self, data: Any) -> int:
        try:
            return int(self._conn.send(bytes(data)))
        except SSL.Error as exc:
            raise OSError(f"TLS error: {exc}") from exc


class TlsSocket:
    """The parts of a socket that ``socketserver``/``http.server`` use, over a pyOpenSSL connection.

    The socket stays in blocking mode (pyOpenSSL raises WantRead on non-blocking sockets); time-outs are
    kernel ``SO_RCVTIMEO``/``SO_SNDTIMEO`` instead.
    """

    def __init__(self, context: SSL.Context, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = SSL.Connection(context, sock)
        self.conn.set_accept_state()
        self.client_chain: tuple[str, ...] = ()

    def do_handshake(self) -> None:
        """Run the handshake and keep the client's chain (empty when it presented none)."""
        self.conn.do_handshake()
        self.client_chain = self.peer_chain_pems()

    def peer_chain_pems(self) -> tuple[str, ...]:
        """The presented chain, leaf first (server side, OpenSSL lists the leaf separately)."""
        leaf = self.conn.get_peer_certificate()
        if leaf is None:
            return ()
        certs = [leaf, *(self.conn.get_peer_cert_chain() or [])]
        pems: list[str] = []
        for cert in certs:
            pem = crypto.dump_certificate(crypto.FILETYPE_PEM, cert).decode("ascii")
            if pem not in pems:
                pems.append(pem)
        return tuple(pems)

    def settimeout(self, value: float | None) -> None:
        seconds = 0.0 if value is None else float(value)
        packed = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, packed)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, packed)

    def makefile(self, mode: str = "r", buffering: int = -1) -> io.BufferedIOBase:
        raw = _RawTls(self.conn, mode)
        size = buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE
        return io.BufferedReader(raw, size) if "r" in mode else io.BufferedWriter(raw, size)

    def sendall(self, data: bytes) -> None:
        self.conn.sendall(data)

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    def fileno(self) -> int:
        return self.sock.fileno()

    def shutdown(self, how: int) -> None:
        """Shut the TCP socket only: a TLS close_notify from another thread would race the reader."""
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()

"""Standard-ports mode: DPS and every hub on port 443 of their own 127.x.y.z address, named without a port;
concurrent instances pick distinct addresses; the server certificate covers them; the default mode is
unchanged."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from emulator.server import CONFIG_FILE
from emulator.testing import start_emulator


def test_two_instances_bind_443_on_distinct_loopback_addresses_named_without_ports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        first = start_emulator(tmp_path / "a", standard_ports=True)
    except OSError as exc:
        pytest.skip(f"cannot bind port 443 here: {exc}")
    try:
        second = start_emulator(tmp_path / "b", standard_ports=True)
        try:
            names = [first.config["dps"]["hostName"], *(h["hostName"] for h in first.hubs)]
            others = [second.config["dps"]["hostName"], *(h["hostName"] for h in second.hubs)]
            assert not set(names) & set(others)
            for name in names:
                assert ":" not in name
                assert name.startswith("127.")
            assert first.config["dps"]["deviceEndpoint"] == f"https://{names[0]}"
            assert json.loads((tmp_path / "a" / CONFIG_FILE).read_text())["hubs"][0]["hostName"] == names[1]
            context = ssl.create_default_context(cafile=first.ca_bundle)
            for name in names:  # the SAN covers each address: verification by IP succeeds
                with socket.create_connection((name, 443), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname=name) as tls:
                    der = tls.getpeercert(binary_form=True)
                assert der is not None
            san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value
            assert set(names) <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", first.ca_bundle)
            made = first.registry_manager(0).create_device_with_sas("std-1", None, None, "enabled")
            assert made.device_id == "std-1"  # the service SDK signs for, and dials, the bare address
        finally:
            second.emulator.stop()
    finally:
        first.emulator.stop()


def test_default_mode_still_names_endpoints_with_ports(emulator: object) -> None:
    config = emulator.config  # type: ignore[attr-defined]
    assert config["dps"]["hostName"].startswith("127.0.0.1:")
    assert all(h["hostName"].startswith("127.0.0.1:") for h in config["hubs"])

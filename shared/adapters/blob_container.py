"""Blob storage for the import-job path (``shared.adapters.hub_jobs``), over plain HTTP(S): no blob SDK in
this app.

The SAS handed to IoT Hub is a service SAS for one container, signed here with the account key
(string-to-sign of version 2020-12-06+). The working container is created once with a short-lived
*account* SAS (a container's own SAS cannot create it): ``blob_account`` reads endpoint, name and key from a
storage connection string and ``create_container`` creates the container if absent (wiring and the
integration tests both use them). ``BlobContainer`` uploads in ≤ 4 MiB blocks and streams reads, so memory
stays bounded whatever the blob's size.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from shared.errors import NotFound, Permanent, Transient

BLOCK_BYTES = 4 * 1024 * 1024
SAS_VERSION = "2021-08-06"


def container_sas(account: str, key_b64: str, container: str, *, expiry: dt.datetime,
                  permissions: str = "racwdl") -> str:
    """A service SAS (query string) for one container, valid until ``expiry`` (UTC)."""
    fields = {"sp": permissions, "st": "", "se": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "canonical": f"/blob/{account}/{container}", "si": "", "sip": "", "spr": "https,http",
              "sv": SAS_VERSION, "sr": "c", "snapshot": "", "ses": "", "rscc": "", "rscd": "", "rsce": "",
              "rscl": "", "rsct": ""}
    digest = hmac.new(base64.b64decode(key_b64), "\n".join(fields.values()).encode(), hashlib.sha256).digest()
    query = {k: fields[k] for k in ("sv", "sr", "sp", "se", "spr")}
    query["sig"] = base64.b64encode(digest).decode()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())


@dataclass(frozen=True, repr=False)
class BlobAccount:
    """Blob endpoint, account name and key of a storage connection string (``repr`` hides the key)."""

    endpoint: str
    name: str
    key: str

    def __repr__(self) -> str:
        return f"BlobAccount(endpoint={self.endpoint!r}, name={self.name!r}, key=<hidden>)"


def blob_account(connection_string: str) -> BlobAccount | None:
    """``BlobEndpoint`` with ``AccountName``/``AccountKey``; without any explicit endpoint, the default one
    (``<protocol>://<account>.blob.<suffix>``). None without an account key (e.g. a SAS-only string) or when
    other services have explicit endpoints but blob has none (e.g. Azurite without its blob service)."""
    pairs = (part.partition("=") for part in connection_string.split(";"))
    parts = {k.strip().lower(): v.strip() for k, _, v in pairs}
    name, key = parts.get("accountname"), parts.get("accountkey")
    if not name or not key:
        return None
    endpoint = parts.get("blobendpoint")
    if endpoint is None and any(k.endswith("endpoint") for k in parts):
        return None
    endpoint = endpoint or (f"{parts.get('defaultendpointsprotocol') or 'https'}://{name}.blob."
                            f"{parts.get('endpointsuffix') or 'core.windows.net'}")
    return BlobAccount(endpoint.rstrip("/"), name, key)


def create_container(account: BlobAccount, name: str, *, timeout: float = 10.0) -> None:
    """Create ``name`` if absent, with a short-lived account SAS (a container's own SAS cannot create it)."""
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": SAS_VERSION, "ss": "b", "srt": "c", "sp": "c", "se": expiry, "spr": "https,http"}
    to_sign = "\n".join([account.name, "c", "b", "c", "", expiry, "", fields["spr"], SAS_VERSION, "", ""])
    fields["sig"] = base64.b64encode(hmac.new(base64.b64decode(account.key), to_sign.encode(),
                                              hashlib.sha256).digest()).decode()
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
    try:
        response = requests.put(f"{account.endpoint}/{name}?restype=container&{query}", timeout=timeout)
    except requests.RequestException as exc:
        raise Transient(f"create container: blob storage unreachable ({type(exc).__name__})") from exc
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise Transient(f"create container: blob storage answered {response.status_code}")
    if response.status_code not in (201, 409):  # 409: it exists already
        raise Permanent(f"create container: blob storage answered {response.status_code}")


class BlobContainer:
    """One container through its SAS URI (``https://host/account/container?sas``). Never logs the URI."""

    def __init__(self, sas_uri: str, *, timeout: float = 30.0) -> None:
        self.sas_uri = sas_uri
        self._base, _, self._sas = sas_uri.partition("?")
        self._timeout = timeout
        self._http = requests.Session()

    @classmethod
    def for_account(cls, blob_endpoint: str, account: str, key_b64: str, container: str, *,
                    ttl: dt.timedelta = dt.timedelta(hours=2)) -> BlobContainer:
        expiry = dt.datetime.now(dt.UTC) + ttl
        sas = container_sas(account, key_b64, container, expiry=expiry)
        return cls(f"{blob_endpoint.rstrip('/')}/{container}?{sas}")

    def _url(self, blob: str | None = None, **params: str) -> str:
        path = self._base if blob is None else f"{self._base}/{quote(blob)}"
        extra = "".join(f"&{k}={quote(v, safe='')}" for k, v in params.items())
        return f"{path}?{self._sas}{extra}"

    def _send(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self._http.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise Transient(f"{what}: blob storage unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404:
            raise NotFound(f"{what}: blob storage answered 404")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise Transient(f"{what}: blob storage answered {response.status_code}")
        if response.status_code >= 400 and response.status_code != 409:
            raise Permanent(f"{what}: blob storage answered {response.status_code}")
        return response

    def put_lines(self, blob: str, lines: Iterable[str]) -> int:
        """Upload ``lines`` as a block blob in ≤4 MiB blocks (bounded memory); returns the line count."""
        blocks: list[str] = []
        buffer, size, count = [], 0, 0
        for line in lines:
            data = line.encode() + b"\n"
            buffer.append(data)
            size, count = size + len(data), count + 1
            if size >= BLOCK_BYTES:
                blocks.append(self._put_block(blob, len(blocks), b"".join(buffer)))
                buffer, size = [], 0
        if buffer or not blocks:
            blocks.append(self._put_block(blob, len(blocks), b"".join(buffer)))
        body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
            f"<Latest>{b}</Latest>" for b in blocks) + "</BlockList>"
        self._send("PUT", self._url(blob, comp="blocklist"), "put block list", data=body.encode())
        return count

    def _put_block(self, blob: str, number: int, data: bytes) -> str:
        block_id = base64.b64encode(f"block-{number:08d}".encode()).decode()
        self._send("PUT", self._url(blob, comp="block", blockid=block_id), "put block", data=data)
        return block_id

    def iter_lines(self, blob: str) -> Iterator[str]:
        """The blob's non-empty lines, streamed; a missing blob has none."""
        try:
            response = self._send("GET", self._url(blob), "read blob", stream=True)
        except NotFound:
            return
        with response:
            for raw in response.iter_lines():
                if raw.strip():
                    yield raw.decode("utf-8")

    def delete(self, blob: str) -> None:
        try:
            self._send("DELETE", self._url(blob), "delete blob")
        except NotFound:
            return

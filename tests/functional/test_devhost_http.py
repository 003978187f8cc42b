"""HTTP front end: function keys, route templates, 204 on None, 500 on exceptions, admin run-now."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from devhost.host import Host
from devhost.http_server import compile_route
from devhost.keys import load_keys

HostFactory = Callable[..., Host]


def _call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def http_host(make_host: HostFactory) -> Host:
    return make_host(run_timers=False)


def _base(host: Host) -> str:
    assert host.http is not None
    return host.http.base_url


def _function_key(host: Host) -> str:
    assert host.keys is not None
    return host.keys.function_key


def test_function_key_in_header_or_code_query_is_accepted(http_host: Host) -> None:
    key = _function_key(http_host)
    status, body = _call(f"{_base(http_host)}/items/42/bolt?q=x", headers={"x-functions-key": key})
    assert (status, body) == (200, b"42|bolt|x|0")
    status, body = _call(f"{_base(http_host)}/items/7?code={key}", method="POST", body=b"abc")
    assert (status, body) == (200, b"7|||3")


def test_missing_or_wrong_key_is_401(http_host: Host) -> None:
    assert _call(f"{_base(http_host)}/items/42")[0] == 401
    assert _call(f"{_base(http_host)}/items/42", headers={"x-functions-key": "wrong"})[0] == 401
    assert _call(f"{_base(http_host)}/items/42?code=wrong")[0] == 401


def test_master_key_satisfies_function_level(http_host: Host) -> None:
    assert http_host.keys is not None
    headers = {"x-functions-key": http_host.keys.master_key}
    assert _call(f"{_base(http_host)}/items/1", headers=headers)[0] == 200


def test_route_constraint_and_method_filter_give_404(http_host: Host) -> None:
    headers = {"x-functions-key": _function_key(http_host)}
    assert _call(f"{_base(http_host)}/items/abc", headers=headers)[0] == 404  # {item_id:int}
    assert _call(f"{_base(http_host)}/items/1", method="DELETE", headers=headers)[0] == 404
    assert _call(f"{_base(http_host)}/unknown", headers=headers)[0] == 404
    assert _call(f"http://127.0.0.1:{http_host.http.port}/items/1", headers=headers)[0] == 404  # type: ignore[union-attr]


def test_function_returning_none_gives_204(http_host: Host) -> None:
    status, body = _call(
        f"{_base(http_host)}/nothing",
        method="POST",
        body=b"payload",
        headers={"x-functions-key": _function_key(http_host)},
    )
    assert (status, body) == (204, b"")
    assert http_host.index is not None
    assert ("nothing", b"payload") in http_host.index.module.CALLS


def test_anonymous_catch_all_route_needs_no_key(http_host: Host) -> None:
    assert _call(f"{_base(http_host)}/open/a/b/c") == (200, b"a/b/c")
    assert _call(f"{_base(http_host)}/open") == (200, b"")


def test_function_that_raises_gives_500(http_host: Host) -> None:
    assert _call(f"{_base(http_host)}/boom") == (500, b"")


def test_admin_endpoint_runs_a_timer_with_the_master_key_only(http_host: Host) -> None:
    assert http_host.keys is not None
    assert http_host.http is not None
    assert http_host.index is not None
    url = f"http://127.0.0.1:{http_host.http.port}/admin/functions/tick"
    payload = json.dumps({"input": ""}).encode()
    assert _call(url, "POST", payload, {"x-functions-key": _function_key(http_host)})[0] == 401
    assert _call(url, "POST", payload, {"x-functions-key": http_host.keys.master_key})[0] == 202
    assert ("tick", False) in http_host.index.module.CALLS


def test_keys_are_created_once_per_state_dir_and_settings_win(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = load_keys(tmp_path, {})
    assert first.function_key in capsys.readouterr().out  # printed once, at creation
    second = load_keys(tmp_path, {})
    assert (second.master_key, second.function_key) == (first.master_key, first.function_key)
    assert capsys.readouterr().out == ""
    assert first.function_key not in repr(first)
    fixed = load_keys(tmp_path / "other", {"DEVHOST_MASTER_KEY": "m", "DEVHOST_FUNCTION_KEY": "f"})
    assert (fixed.master_key, fixed.function_key) == ("m", "f")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("items/{id:int}", "/items/12", {"id": "12"}),
        ("items/{id:int}", "/items/x", None),
        ("items/{id}/{name?}", "/items/1", {"id": "1"}),
        ("items/{id}/{name?}", "/items/1/n%20m", {"id": "1", "name": "n m"}),
        ("files/{*path}", "/files/a/b.txt", {"path": "a/b.txt"}),
        ("Hello", "/hello", {}),
        ("v{major}.{minor}", "/v1.2", {"major": "1", "minor": "2"}),
    ],
)
def test_route_templates_match_like_asp_net(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    assert compile_route(template).match(path) == expected

"""HTTP front end: function keys and the admin level, route templates, 204 on None, 500 on exceptions,
admin run-now; and the real app's operator routes through it (strict query, force needs the admin key,
hostile bodies answered with field errors and journaled)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devhost.app_index import FunctionInfo, HttpSpec, InvocationResult, TriggerKind
from devhost.host import Host, HostOptions
from devhost.http_server import HttpFrontEnd, compile_route
from devhost.keys import KeyStore, load_keys
from shared.adapters.settings import emulator_values
from shared.ports import RejectionRecord
from tests.functional.fleet import Fleet
from tests.support.azurite_fixtures import unique_prefix
from unprovision import wiring

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


def _route(name: str, route: str, method: str, level: str) -> FunctionInfo:
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{name}|{req.route_params.get('eventId', '')}")

    return FunctionInfo(name, TriggerKind.HTTP, "httpTrigger", "req", HttpSpec(route, (method,), level),
                        handler, False, False, ())


@pytest.fixture
def admin_front() -> Iterator[HttpFrontEnd]:
    """A front end with an ADMIN-level POST beside a FUNCTION-level GET on an overlapping template."""
    functions = [_route("force", "unprovision/force", "POST", "admin"),
                 _route("status", "unprovision/{eventId}", "GET", "function")]
    front = HttpFrontEnd(functions, KeyStore(master_key="master", function_key="function"),
                         lambda info, req: InvocationResult(info.user_function(req), {}), port=0)
    front.start()
    yield front
    front.stop()


def test_admin_level_routes_refuse_the_function_key_and_take_the_master_key(
        admin_front: HttpFrontEnd) -> None:
    url = f"{admin_front.base_url}/unprovision/force"
    assert _call(url, "POST", b"{}", {"x-functions-key": "function"})[0] == 401
    assert _call(f"{url}?code=function", "POST", b"{}")[0] == 401
    assert _call(url, "POST", b"{}")[0] == 401
    assert _call(url, "POST", b"{}", {"x-functions-key": "master"}) == (200, b"force|")
    assert _call(f"{url}?code=master", "POST", b"{}") == (200, b"force|")
    assert _call(url, headers={"x-functions-key": "function"}) == (200, b"status|force"), "GET is the status"


# -- the real function app through devhost ------------------------------------------------------------

APP_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RealApp:
    """The real ``function_app.py`` under devhost, its keys, and a way to see the journal and the fleet."""

    host: Host
    fleet: Fleet

    @property
    def base(self) -> str:
        return _base(self.host)

    def key(self, *, master: bool = False) -> dict[str, str]:
        assert self.host.keys is not None
        return {"x-functions-key": self.host.keys.master_key if master else self.host.keys.function_key}

    def post(self, body: bytes | str, query: str = "", *, route: str = "unprovision",
             master: bool = False) -> tuple[int, Any]:
        data = body.encode() if isinstance(body, str) else body
        status, raw = _call(f"{self.base}/{route}{query}", "POST", data, self.key(master=master))
        return status, json.loads(raw) if raw else None

    def rejection(self, rejection_id: str) -> RejectionRecord:
        journal: Any = wiring.services().journal
        return next(r for r in journal.iter_rejections() if r.rejection_id == rejection_id)


@pytest.fixture
def real_app(clean_emulator: Any, azurite: Any, tmp_path: Path) -> Iterator[RealApp]:
    emulator_json = tmp_path / "emulator.json"
    emulator_json.write_text(json.dumps(clean_emulator.config), encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    settings = {**emulator_values(emulator_json, azurite.connection_string),
                "AzureWebJobsStorage": azurite.connection_string, "LIFECYCLE_QUEUE": f"http-lc-{suffix}",
                "WORK_QUEUE": f"http-wk-{suffix}", "JOURNAL_TABLE_PREFIX": unique_prefix()}
    wiring.reset_services()
    options = HostOptions(app_root=APP_ROOT, settings_file=tmp_path / "none.json", port=0,
                          state_dir=tmp_path / "state", extra_settings=settings,
                          dev_storage=azurite.connection_string, run_timers=False)
    host = Host(options).start()
    try:
        yield RealApp(host, Fleet(clean_emulator.config))
    finally:
        host.stop()
        wiring.reset_services()


def _event(event_id: str, event_type: str, registration_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "type": event_type, "registrationId": registration_id,
            "occurredAt": "2025-06-01T09:30:00Z", "source": "operator", **extra}


@pytest.mark.parametrize("query", ["?dryrun=true", "?DryRun=true", "?dryRun=on", "?dryRun=1",
                                   "?dryRun=true&dryRun=false", "?dryRun=true&verbose=1"])
def test_misspelt_or_malformed_query_on_the_destructive_route_is_refused_and_applies_nothing(
        real_app: RealApp, query: str) -> None:
    device = real_app.fleet.individual("meter-query")
    status, document = real_app.post(json.dumps(_event("q-1", "sold", "meter-query")), query)
    assert (status, document["error"]) == (400, "invalid request"), document
    assert all(e["field"].startswith("query.") for e in document["errors"])
    assert real_app.fleet.hub_status(device) == "enabled", "a refused query must not apply the event"
    assert wiring.services().journal.get("q-1") is None
    status, document = real_app.post(json.dumps(_event("q-1", "sold", "meter-query")), "?dryRun=true")
    assert (status, document["status"]) == (200, "dry_run")
    assert real_app.fleet.hub_status(device) == "enabled"


def test_forcing_a_found_after_stolen_needs_the_admin_key_over_http(real_app: RealApp) -> None:
    device = real_app.fleet.individual("meter-stolen")
    assert real_app.post(json.dumps(_event("st-1", "stolen", "meter-stolen")))[0] == 200
    forced = json.dumps(_event("st-found-1", "found", "meter-stolen", force=True))
    status, document = real_app.post(forced)
    assert (status, document["status"]) == (403, "forbidden"), document
    assert real_app.fleet.hub_status(device) == "disabled", "the function key must not lift a theft"
    assert real_app.post(forced, route="unprovision/force")[0] == 401, "force route: function key refused"
    status, document = real_app.post(json.dumps(_event("st-found-2", "found", "meter-stolen", force=True)),
                                     route="unprovision/force", master=True)
    assert (status, document["status"]) == (200, "completed"), document
    assert real_app.fleet.hub_status(device) == "enabled"


def test_hostile_bodies_get_field_errors_and_every_one_is_journaled(real_app: RealApp) -> None:
    emoji = "\U0001F600"
    bodies: dict[str, bytes] = {
        "nested deeper than": b"[" * 10_000,  # was RecursionError -> 500
        "not valid UTF-8": json.dumps(_event("utf-@", "lost", "meter-x")).encode().replace(b"@", b"\xff"),
        "at most 128": json.dumps(_event("emoji-1", "lost", "meter-x", note=emoji * 20_000),
                                  ensure_ascii=False).encode(),  # > 32K UTF-16 units: was not journaled
        "UTF-16 code units": json.dumps(_event("emoji-2", "lost", "meter-x", note=emoji * 40_000),
                                        ensure_ascii=False).encode(),
    }
    for reason, body in bodies.items():
        status, document = real_app.post(body)
        assert status == 400, (reason, document)
        assert any(reason in e["reason"] for e in document["errors"]), (reason, document)
        kept = real_app.rejection(document["rejectionId"])
        assert kept.errors, reason
        if reason != "not valid UTF-8":  # kept whole: every body under the size limit fits the journal
            assert (kept.body, kept.truncated) == (body.decode(), False), reason
    assert wiring.services().journal.get("utf-\ufffd") is None, "no replacement-character eventId"


@pytest.mark.parametrize("event_id", ["..", ".", "a/b", "a?b", "a#b", "50%"])
def test_an_event_id_that_is_not_a_url_path_segment_is_refused(real_app: RealApp, event_id: str) -> None:
    status, document = real_app.post(json.dumps(_event(event_id, "lost", "meter-x")))
    assert status == 400, document
    assert [e["field"] for e in document["errors"]] == ["eventId"]

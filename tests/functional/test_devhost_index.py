"""App indexing and host settings: read from the app itself and from host.json / local.settings.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.app_index import AppIndexError, HttpSpec, QueueSpec, TimerSpec, TriggerKind, load_app
from devhost.settings import (
    HostSettingsError,
    load_local_settings,
    merge_into_environ,
    read_host_json,
    resolve_connection,
    resolve_expression,
)

TOYAPP = Path(__file__).parent / "toyapp"
TOY_MODULE = "devhost_toyapp"
SETTINGS = {"TOY_QUEUE": "work-a", "TOY_FAIL_QUEUE": "fail-a", "TOY_SCHEDULE": "0 */5 * * * *"}


def test_index_reads_names_triggers_and_resolves_setting_expressions() -> None:
    index = load_app(TOYAPP, SETTINGS, module_name=TOY_MODULE)
    kinds = {f.name: f.kind for f in index.functions}
    assert kinds["work"] is TriggerKind.QUEUE
    assert kinds["always_fails"] is TriggerKind.QUEUE  # @app.function_name wins over the Python name
    assert kinds["get_item"] is TriggerKind.HTTP
    assert kinds["tick"] is TriggerKind.TIMER
    assert "orders" not in kinds  # the toy app registers it only when TOY_SERVICEBUS is set
    assert index.get("work").spec == QueueSpec("work-a", "ToyStorage")
    assert index.get("always_fails").is_async
    assert index.get("tick").spec == TimerSpec("0 */5 * * * *", run_on_startup=False, use_monitor=None)
    http = index.get("get_item").spec
    assert isinstance(http, HttpSpec)
    assert (http.route, http.methods, http.auth_level) == (
        "items/{item_id:int}/{name?}",
        ("GET", "POST"),
        "function",
    )
    assert index.get("boom").spec == HttpSpec("boom", None, "anonymous")


def test_index_can_run_twice_because_each_load_imports_a_fresh_app() -> None:
    first = load_app(TOYAPP, SETTINGS, module_name=TOY_MODULE)
    second = load_app(TOYAPP, SETTINGS, module_name=TOY_MODULE)
    assert [f.name for f in first.functions] == [f.name for f in second.functions]
    assert first.app is not second.app


def test_missing_setting_in_an_expression_is_a_clear_error() -> None:
    with pytest.raises(AppIndexError, match="TOY_QUEUE"):
        load_app(TOYAPP, {k: v for k, v in SETTINGS.items() if k != "TOY_QUEUE"}, module_name=TOY_MODULE)


def _write_app(root: Path, body: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "function_app.py").write_text("import azure.functions as func\n" + body)


def test_two_function_apps_are_rejected(tmp_path: Path) -> None:
    _write_app(tmp_path, "a = func.FunctionApp()\nb = func.FunctionApp()\n")
    with pytest.raises(AppIndexError) as info:
        load_app(tmp_path, {}, module_name="devhost_tmpapp")
    assert info.value.code == "MultipleFunctionApps"


def test_no_function_app_is_rejected(tmp_path: Path) -> None:
    _write_app(tmp_path, "bp = func.Blueprint()\n")
    with pytest.raises(AppIndexError) as info:
        load_app(tmp_path, {}, module_name="devhost_tmpapp")
    assert info.value.code == "NoFunctionApp"


def test_script_name_comes_from_python_script_file_name(tmp_path: Path) -> None:
    (tmp_path / "main_app.py").write_text(
        "import azure.functions as func\napp = func.FunctionApp()\n"
        "@app.route(route='ping', auth_level='anonymous')\ndef ping(req):\n    return 'pong'\n"
    )
    index = load_app(tmp_path, {"PYTHON_SCRIPT_FILE_NAME": "main_app.py"}, module_name="devhost_tmpapp")
    assert [f.name for f in index.functions] == ["ping"]


def test_local_settings_do_not_override_existing_environment(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps(
            {"IsEncrypted": False, "Values": {"A": "file", "B": "file"}, "ConnectionStrings": {"C": "conn"}}
        )
    )
    values, conns = load_local_settings(path)
    environ = {"A": "env"}
    added = merge_into_environ(values, environ)
    assert environ == {"A": "env", "B": "file"}
    assert added == ["B"]
    assert conns == {"C": "conn"}


def test_connection_resolution_prefers_azurewebjobs_prefix_and_maps_development_storage() -> None:
    settings = {"AzureWebJobsStore": "first", "Store": "second", "Dev": "UseDevelopmentStorage=true"}
    assert resolve_connection("Store", settings) == "first"
    assert resolve_connection("Store", {"Store": "second"}) == "second"
    assert resolve_connection("Store", {"Store": "x"}, connection_strings={"Store": "cs"}) == "cs"
    assert resolve_connection("Dev", settings, dev_storage="explicit") == "explicit"
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in (
        resolve_connection("Dev", settings) or ""
    )
    assert resolve_connection("", {"AzureWebJobsStorage": "host"}) == "host"
    assert resolve_connection("Missing", {"Missing__queueServiceUri": "https://x"}) is None


def test_host_json_values_and_app_setting_overrides(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {
                        "batchSize": 8,
                        "visibilityTimeout": "00:00:30",
                        "maxPollingInterval": "00:00:02",
                    },
                },
            }
        )
    )
    config = read_host_json(tmp_path, {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3"})
    assert config.route_prefix == ""
    assert config.queues.batch_size == 8
    assert config.queues.new_batch_threshold == 4  # batchSize / 2 for one processor
    assert config.queues.visibility_timeout == 30.0
    assert config.queues.max_dequeue_count == 3
    assert config.queues.max_polling_interval == 2.0


def test_host_json_without_version_2_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{}")
    with pytest.raises(HostSettingsError, match="version"):
        read_host_json(tmp_path)


def test_expressions_resolve_from_settings() -> None:
    assert resolve_expression("%A%-x-%B%", {"A": "1", "B": "2"}) == "1-x-2"
    assert resolve_expression("plain", {}) == "plain"

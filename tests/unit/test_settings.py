"""App settings: names, defaults, connection resolution, validation, secrecy, local.settings.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.adapters import settings as s
from shared.adapters.settings import (
    Settings,
    SettingsError,
    from_emulator,
    load_local_settings,
    resolve_connection,
)

REPO = Path(__file__).resolve().parents[2]
KEY = "c2VjcmV0LWtleS1ub3QtcmVhbA=="
DPS = f"HostName=dps.example.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}"
HUB = f"HostName=Hub-A.example.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
STORAGE = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
SB = f"Endpoint=sb://ns.example.net/;SharedAccessKeyName=send;SharedAccessKey={KEY}"


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = Settings.from_mapping({})
    assert (settings.lifecycle_queue, settings.work_queue) == ("device-lifecycle", "device-lifecycle-work")
    assert settings.audit_schedule == "0 0 * * * *"
    assert settings.audit_remediate is False
    assert settings.dps_connection_string is None
    assert settings.journal is None
    assert settings.iothub_connection("hub-a.example.net") is None
    assert settings.group_import_job_threshold > 0
    assert settings.cert_expiry_warning_days > 0
    assert settings.registry_budgets.for_hub("hub-a.example.net") == 100.0, "S1 x 1 unit"


def test_registry_budget_is_one_number_for_every_hub_or_a_map_by_host_name() -> None:
    every = Settings.from_mapping({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: "5000"}).registry_budgets
    assert (every.for_hub("hub-a.example.net"), every.for_hub("127.0.0.1:4441")) == (5000.0, 5000.0)
    mapped = Settings.from_mapping({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: json.dumps(
        {"Big.Example.net": 10000, "127.0.0.1:4441": 50.5})}).registry_budgets
    assert mapped.for_hub("big.example.NET") == 10000.0, "hub host names are case-insensitive"
    assert mapped.for_hub("127.0.0.1:4441") == 50.5
    assert mapped.for_hub("other.example.net") == 100.0, "an unlisted hub keeps the S1 x 1 unit budget"


def test_every_setting_is_read_from_its_documented_name() -> None:
    values = {
        s.DPS_CONNECTION_STRING: DPS,
        s.IOTHUB_CONNECTIONS: json.dumps({"Hub-A.example.net": HUB, "hub-c.example.net": "identity"}),
        s.JOURNAL_CONNECTION: STORAGE, s.LIFECYCLE_QUEUE: "events", s.WORK_QUEUE: "work-items",
        s.AUDIT_SCHEDULE: "0 */5 * * * *", s.POLICY_OVERRIDE: '{"lost": {"hub": "disable"}}',
        s.OUTCOME_SERVICEBUS_CONNECTION: SB, s.OUTCOME_QUEUE_OR_TOPIC: "outcomes",
        s.SERVICEBUS_CONNECTION: SB, s.SERVICEBUS_QUEUE: "lifecycle", s.GROUP_IMPORT_JOB_THRESHOLD: "250",
        s.EMULATOR_CA_BUNDLE: "/certs/emulator-ca.pem", s.CERT_EXPIRY_WARNING_DAYS: "14",
        s.AUDIT_REMEDIATE: "True", s.JOURNAL_TABLE_PREFIX: "run7",
        s.IOTHUB_REGISTRY_OPS_PER_MINUTE: '{"Hub-A.example.net": 200}',
    }
    settings = Settings.from_mapping(values)
    assert settings.dps_connection_string == DPS
    assert settings.iothub_connection("hub-a.EXAMPLE.net") == HUB, "hub host names are case-insensitive"
    assert settings.iothub_connection("hub-b.example.net") is None, "absent hub: no connection string"
    assert dict(settings.iothub_connections) == {"hub-a.example.net": HUB, "hub-c.example.net": None}, (
        "a hub marked 'identity' is configured for identity-based access; an absent one is not configured")
    assert settings.journal_table_prefix == "run7"
    assert settings.journal is not None
    assert settings.journal.connection_string == STORAGE
    assert (settings.lifecycle_queue, settings.work_queue, settings.audit_schedule) == (
        "events", "work-items", "0 */5 * * * *")
    assert dict(settings.policy_override or {}) == {"lost": {"hub": "disable"}}
    assert settings.outcome_servicebus is not None
    assert settings.outcome_queue_or_topic == "outcomes"
    assert settings.servicebus is not None
    assert settings.servicebus_queue == "lifecycle"
    assert (settings.group_import_job_threshold, settings.cert_expiry_warning_days) == (250, 14)
    assert settings.emulator_ca_bundle == "/certs/emulator-ca.pem"
    assert settings.audit_remediate is True
    assert settings.registry_budgets.for_hub("hub-a.example.net") == 200.0


def test_repr_and_str_never_show_keys_or_connection_strings() -> None:
    settings = Settings.from_mapping({
        s.DPS_CONNECTION_STRING: DPS, s.IOTHUB_CONNECTIONS: json.dumps({"hub-a.example.net": HUB.replace(
            "Hub-A", "hub-a")}), s.JOURNAL_CONNECTION: STORAGE, s.OUTCOME_SERVICEBUS_CONNECTION: SB,
        s.OUTCOME_QUEUE_OR_TOPIC: "outcomes",
        "SERVICEBUS_CONNECTION__fullyQualifiedNamespace": "ns.example.net",
        "SERVICEBUS_CONNECTION__clientSecret": "very-secret-value",
    })
    for text in (repr(settings), str(settings), f"{settings}"):
        assert KEY not in text
        assert "very-secret-value" not in text
        assert "SharedAccessKey=" not in text
        assert "dps.example.net" in text
        assert "hub-a.example.net" in text


def test_journal_falls_back_to_host_storage_and_expands_development_storage() -> None:
    journal = Settings.from_mapping({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).journal
    assert journal is not None
    assert journal.name == "AzureWebJobsStorage"
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in (journal.connection_string or "")


def test_a_connection_setting_may_name_another_connection_setting() -> None:
    journal = Settings.from_mapping({s.JOURNAL_CONNECTION: "MyStorage", "MyStorage": STORAGE}).journal
    assert journal is not None
    assert (journal.name, journal.connection_string) == ("MyStorage", STORAGE)
    with pytest.raises(SettingsError, match="loop"):
        resolve_connection({"A": "B", "B": "A"}, "A")


def test_connection_lookup_order_follows_the_functions_host() -> None:
    values = {"X": "AccountName=plain;x=1", "AzureWebJobsX": "AccountName=prefixed;x=1"}
    assert resolve_connection(values, "X").name == "AzureWebJobsX"  # type: ignore[union-attr]
    values["ConnectionStrings:AzureWebJobsX"] = "AccountName=cs;x=1"
    assert resolve_connection(values, "X").connection_string == "AccountName=cs;x=1"  # type: ignore[union-attr]
    assert resolve_connection({}, "X") is None


def test_identity_based_connections_come_from_double_underscore_keys() -> None:
    values = {
        "JOURNAL_CONNECTION__tableServiceUri": "https://acct.table.core.windows.net",
        "JOURNAL_CONNECTION__credential": "managedidentity", "JOURNAL_CONNECTION__clientId": "cid",
        "AzureWebJobsStorage__accountName": "hostacct",
    }
    journal = Settings.from_mapping(values).journal
    assert journal is not None
    assert journal.identity_based
    assert journal.service_uri("table") == "https://acct.table.core.windows.net"
    host = resolve_connection(values, "AzureWebJobsStorage")
    assert host is not None
    assert host.service_uri("queue") == "https://hostacct.queue.core.windows.net"
    exact_wins = resolve_connection({**values, "JOURNAL_CONNECTION": STORAGE}, "JOURNAL_CONNECTION")
    assert exact_wins is not None
    assert exact_wins.connection_string == STORAGE


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({s.DPS_CONNECTION_STRING: f"HostName=dps.example.net;SharedAccessKey={KEY}"},
         s.DPS_CONNECTION_STRING),
        ({s.IOTHUB_CONNECTIONS: f"{{not json {KEY}"}, s.IOTHUB_CONNECTIONS),
        ({s.IOTHUB_CONNECTIONS: json.dumps([HUB])}, s.IOTHUB_CONNECTIONS),
        ({s.IOTHUB_CONNECTIONS: json.dumps({"other.example.net": HUB})}, s.IOTHUB_CONNECTIONS),
        ({s.LIFECYCLE_QUEUE: "Bad_Queue"}, s.LIFECYCLE_QUEUE),
        ({s.WORK_QUEUE: "a--b"}, s.WORK_QUEUE),
        ({s.AUDIT_SCHEDULE: "0 * * * *"}, s.AUDIT_SCHEDULE),
        ({s.POLICY_OVERRIDE: "[1]"}, s.POLICY_OVERRIDE),
        ({s.GROUP_IMPORT_JOB_THRESHOLD: "-3"}, s.GROUP_IMPORT_JOB_THRESHOLD),
        ({s.CERT_EXPIRY_WARNING_DAYS: "soon"}, s.CERT_EXPIRY_WARNING_DAYS),
        ({s.AUDIT_REMEDIATE: "maybe"}, s.AUDIT_REMEDIATE),
        ({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: "0"}, s.IOTHUB_REGISTRY_OPS_PER_MINUTE),
        ({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: "fast"}, s.IOTHUB_REGISTRY_OPS_PER_MINUTE),
        ({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: '{"hub-a.example.net": "1"}'}, s.IOTHUB_REGISTRY_OPS_PER_MINUTE),
        ({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: '{"hub a/b": 100}'}, s.IOTHUB_REGISTRY_OPS_PER_MINUTE),
        ({s.IOTHUB_REGISTRY_OPS_PER_MINUTE: "[100]"}, s.IOTHUB_REGISTRY_OPS_PER_MINUTE),
        ({s.OUTCOME_QUEUE_OR_TOPIC: "outcomes"}, s.OUTCOME_QUEUE_OR_TOPIC),
        ({s.OUTCOME_SERVICEBUS_CONNECTION: SB}, s.OUTCOME_QUEUE_OR_TOPIC),
    ],
)
def test_malformed_settings_name_the_setting_and_hide_the_value(values: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(values)
    assert caught.value.setting.startswith(setting)
    assert KEY not in str(caught.value)


def test_timespan_schedules_are_accepted() -> None:
    assert Settings.from_mapping({s.AUDIT_SCHEDULE: "00:30:00"}).audit_schedule == "00:30:00"


def test_local_settings_fill_the_environment_without_overriding(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({
        "Values": {"LIFECYCLE_QUEUE": "from-file", "WORK_QUEUE": "work-from-file", "AUDIT_REMEDIATE": True},
        "ConnectionStrings": {"MyStorage": STORAGE},
    }))
    environ = {"LIFECYCLE_QUEUE": "from-env"}
    read = load_local_settings(path, environ)
    assert read["LIFECYCLE_QUEUE"] == "from-file"
    assert environ["LIFECYCLE_QUEUE"] == "from-env", "existing variables win, as in the Functions host"
    assert environ["WORK_QUEUE"] == "work-from-file"
    assert environ["AUDIT_REMEDIATE"] == "true"
    assert environ["ConnectionStrings:MyStorage"] == STORAGE
    journal = Settings.from_mapping({**environ, s.JOURNAL_CONNECTION: "MyStorage"}).journal
    assert journal is not None
    assert journal.connection_string == STORAGE


def test_settings_come_from_a_running_emulator(tmp_path: Path) -> None:
    emulator_json = tmp_path / "emulator.json"
    emulator_json.write_text(json.dumps({
        "caBundle": str(tmp_path / "ca.pem"),
        "dps": {"hostName": "127.0.0.1:4431", "idScope": "0ne00000001",
                "connectionString": f"HostName=127.0.0.1:4431;SharedAccessKeyName=provisioningserviceowner;"
                                    f"SharedAccessKey={KEY}"},
        "hubs": [{"name": f"hub-{n}", "hostName": f"127.0.0.1:{4440 + n}",
                  "connectionString": f"HostName=127.0.0.1:{4440 + n};SharedAccessKeyName=iothubowner;"
                                      f"SharedAccessKey={KEY}"} for n in (1, 2)],
    }))
    settings = from_emulator(emulator_json, STORAGE, base={s.LIFECYCLE_QUEUE: "events"})
    assert settings.dps_connection_string is not None
    assert "127.0.0.1:4431" in settings.dps_connection_string
    assert sorted(settings.iothub_connections) == ["127.0.0.1:4441", "127.0.0.1:4442"]
    assert settings.emulator_ca_bundle == str(tmp_path / "ca.pem")
    assert settings.journal is not None
    assert settings.journal.connection_string == STORAGE
    assert settings.lifecycle_queue == "events"


def test_the_committed_sample_documents_every_setting_and_loads() -> None:
    document = json.loads((REPO / "local.settings.sample.json").read_text())
    values = document["Values"]
    names = [v for k, v in vars(s).items() if k.isupper() and k == v]
    assert s.FORCE_SOURCES in names
    assert len(names) >= 18  # other settings may join; none may vanish
    missing = [name for name in names if name not in values]
    assert missing == []
    settings = Settings.from_mapping(values)
    assert settings.journal is not None
    assert settings.journal.name == "AzureWebJobsStorage"
    assert settings.outcome_servicebus is None
    assert settings.servicebus is None


def test_a_table_prefix_that_would_make_an_invalid_table_name_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({s.JOURNAL_TABLE_PREFIX: "run-7"})
    assert s.JOURNAL_TABLE_PREFIX in str(caught.value)


def test_force_sources_default_to_none_so_no_queue_message_may_force() -> None:
    assert Settings.from_mapping({}).force_sources == frozenset()
    assert Settings.from_mapping({s.FORCE_SOURCES: " , "}).force_sources == frozenset()


def test_force_sources_are_a_comma_separated_exact_match_list() -> None:
    settings = Settings.from_mapping({s.FORCE_SOURCES: " asset-tracker , Security Desk ,,asset-tracker"})
    assert settings.force_sources == frozenset({"asset-tracker", "Security Desk"})
    assert "security desk" not in settings.force_sources, "a trust list is not case-folded"
    assert "asset-tracker" in repr(settings)


@pytest.mark.parametrize("value", ["tracker,bad\x01source", "x" * 129])
def test_malformed_force_sources_name_the_setting(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({s.FORCE_SOURCES: value})
    assert caught.value.setting == s.FORCE_SOURCES

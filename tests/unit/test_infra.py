"""Offline checks of the deployment template (infra/, azure.yaml) against the app itself.

* every Bicep file parses (pycep-parser, the parser checkov uses);
* every setting the app reads (the ``NAME = "NAME"`` constants of shared/adapters/settings.py, collected at
  run time so a new setting is caught) is set by the template, plain or identity-based (``NAME__*``), or is
  listed in ``OPTIONAL`` below with the reason; and docs/deploy.md names each one;
* no output carries a key, connection string or SAS, and no app setting holds a plain secret;
* every role assignment is a known built-in role, says why it exists, and docs/deploy.md names the role;
* every checkov waiver gives a reason; the tables and queues the code uses are the ones the template creates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import shared.adapters.settings as settings_module
from shared.adapters.settings import HOST_STORAGE, JOURNAL_CONNECTION, Settings
from shared.adapters.storage_connection import require_storage_connection, service_endpoint, token_credential

pycep = pytest.importorskip("pycep", reason="pycep-parser is in requirements-dev.txt")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# Settings the app reads that the template leaves unset on purpose (one table; docs/deploy.md repeats it).
OPTIONAL = {
    "EMULATOR_CA_BUNDLE": "local runs only: the CA of the DPS/IoT Hub emulator; Azure uses public CAs",
}
# App settings that look like secrets but are not: the ingestion endpoint and instrumentation key identify the
# resource; with DisableLocalAuth the component accepts telemetry only with an Entra token.
NOT_SECRETS = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}

# Built-in roles the template may assign: role definition ID -> name (the same IDs in every tenant).
ROLES = {
    "4ea46cd5-c1b2-4a8e-910b-273211f9ce47": "IoT Hub Registry Contributor",
    "b447c946-2db7-41ec-983d-d8bf3b1c77e3": "IoT Hub Data Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
}
# The ``<NAME>__<property>`` keys the app reads from an identity-based connection (docs/azure-behaviour.md
# §F10.7): storage in shared/adapters/storage_connection.py, Service Bus in the notifier and the trigger.
IDENTITY_PROPERTIES = {"accountName", "queueServiceUri", "tableServiceUri", "blobServiceUri", "credential",
                       "clientId", "fullyQualifiedNamespace"}
# Which storage services each storage connection must reach: host storage carries the lifecycle, work, audit
# and poison queues (and, for the host, blobs); the journal's account carries every table.
STORAGE_SERVICES = {HOST_STORAGE: ("queue", "blob"), JOURNAL_CONNECTION: ("table",)}
SAMPLE_ACCOUNT = "stexample"
SAMPLE_CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"
SECRET_MARKERS = ("listkeys", "listaccountsas", "listservicesas", "connectionstring", "primarykey",
                  "secondarykey", "sharedaccesskey", "accountkey", "password", "@secure")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=path)


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def app_settings(tree: dict[str, Any]) -> dict[str, Any]:
    """Every ``{name, value}`` pair in the template (the app-settings arrays), by name."""
    found: dict[str, Any] = {}
    for node in walk(tree):
        if isinstance(node, dict) and set(node) == {"name", "value"} and isinstance(node["name"], str):
            found[node["name"]] = node["value"]
    return found


def settings_the_app_reads() -> set[str]:
    """The setting names declared in shared/adapters/settings.py (``NAME = "NAME"``) and the host storage."""
    names = {value for key, value in vars(settings_module).items()
             if key.isupper() and isinstance(value, str) and value == key}
    names.add(settings_module.HOST_STORAGE)
    return names


@pytest.fixture(scope="module")
def main_tree() -> dict[str, Any]:
    return parse(MAIN)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_bicep_parses(path: Path) -> None:
    tree = parse(path)
    assert tree["resources"] or tree.get("modules"), f"{path} declares nothing"


def test_settings_collected_from_the_module_include_known_ones() -> None:
    names = settings_the_app_reads()
    # A guard on the collection itself: if the naming convention changed, this test would see nothing.
    assert {"DPS_CONNECTION_STRING", "IOTHUB_CONNECTIONS", "LIFECYCLE_QUEUE", "AzureWebJobsStorage"} <= names


def test_every_setting_the_app_reads_is_set_by_the_template_or_optional(main_tree: dict[str, Any]) -> None:
    declared = app_settings(main_tree)
    missing = []
    for name in sorted(settings_the_app_reads()):
        set_here = name in declared or any(key.startswith(f"{name}__") for key in declared)
        if not set_here and name not in OPTIONAL:
            missing.append(name)
    assert not missing, (f"settings read by shared/adapters/settings.py but neither set in infra/main.bicep "
                         f"nor listed in OPTIONAL (tests/unit/test_infra.py) and docs/deploy.md: {missing}")


def test_optional_table_is_not_stale(main_tree: dict[str, Any]) -> None:
    declared = app_settings(main_tree)
    for name in OPTIONAL:
        assert name in settings_the_app_reads(), f"OPTIONAL lists {name}, which the app no longer reads"
        assert name not in declared, f"OPTIONAL lists {name}, but the template sets it"


def test_deploy_doc_names_every_setting_and_role() -> None:
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    missing = [name for name in sorted(settings_the_app_reads()) if f"`{name}" not in text]
    assert not missing, f"docs/deploy.md does not mention these settings: {missing}"
    assert not [role for role in ROLES.values() if role not in text]


def test_app_settings_hold_no_plain_secret(main_tree: dict[str, Any]) -> None:
    declared = app_settings(main_tree)
    assert str(declared["DPS_CONNECTION_STRING"]).startswith("@Microsoft.KeyVault(")
    for name, value in declared.items():
        if name in NOT_SECRETS:
            continue
        text = json.dumps(value).lower()
        assert not [m for m in SECRET_MARKERS if m in text], f"app setting {name} may carry a secret: {text}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_outputs_carry_no_secret(path: Path) -> None:
    for name, output in parse(path).get("outputs", {}).items():
        text = json.dumps(output, default=str).lower()
        assert not [m for m in SECRET_MARKERS if m in text], f"{path.name} output {name}: {text}"
        assert not [d for d in output.get("decorators", []) if "secure" in json.dumps(d).lower()]


def role_assignments() -> Iterator[tuple[Path, str, dict[str, Any]]]:
    for path in bicep_files():
        for name, resource in parse(path)["resources"].items():
            if resource["type"] == "Microsoft.Authorization/roleAssignments":
                yield path, name, resource


def test_every_role_assignment_is_a_known_role_and_says_why() -> None:
    seen = set()
    for path, name, resource in role_assignments():
        config = resource["config"]
        body = config.get("config", config)  # conditional resources nest their body one level down
        properties = body["properties"]
        assert len(properties.get("description", "")) >= 20, f"{path.name}:{name} has no description"
        text = json.dumps(properties["roleDefinitionId"]) + json.dumps(body.get("name"))
        source = path.read_text(encoding="utf-8")
        ids = set(re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", source))
        unknown = ids - set(ROLES)
        assert not unknown, f"{path.name}: role IDs not in the table: {unknown}"
        assert text  # the definition is taken from the file's role table, checked above
        seen.add(name)
    assert len(seen) >= 8


def test_every_role_assignment_has_a_why_comment() -> None:
    for path in bicep_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            if "'Microsoft.Authorization/roleAssignments@" in line:
                above = "\n".join(lines[max(0, number - 3):number])
                assert "// Why:" in above, f"{path.name}:{number + 1}: role assignment without '// Why:'"


def test_every_checkov_waiver_gives_a_reason() -> None:
    for path in bicep_files():
        for match in re.finditer(r"checkov:skip=(CKV\w+)(.*)", path.read_text(encoding="utf-8")):
            reason = match.group(2).lstrip(":").strip()
            assert len(reason) >= 30, f"{path.name}: waiver {match.group(1)} without a reason"


def test_template_creates_the_tables_the_code_names(main_tree: dict[str, Any]) -> None:
    created = set(main_tree["variables"]["tableKinds"]["value"])
    named: set[str] = set()
    for source in (ROOT / "shared" / "adapters").glob("*.py"):
        text = source.read_text(encoding="utf-8")
        named |= set(re.findall(r'f"\{prefix\}([a-z]+)"', text))
        for kinds in re.findall(r"kinds = \(([^)]*)\)", text):
            named |= set(re.findall(r'"([a-z]+)"', kinds))
    assert named, "no table names found in shared/adapters (naming convention changed?)"
    assert named <= created, f"tables the code uses but the template does not create: {named - created}"


def test_queue_defaults_match_the_app(main_tree: dict[str, Any]) -> None:
    params = main_tree["parameters"]
    defaults = Settings()
    assert params["lifecycleQueueName"]["default"] == defaults.lifecycle_queue
    assert params["workQueueName"]["default"] == defaults.work_queue
    assert params["auditSchedule"]["default"] == defaults.audit_schedule
    for field, param in (("audit_queue", "auditQueueName"),):
        if hasattr(defaults, field):  # settings another change may add or rename
            assert params[param]["default"] == getattr(defaults, field)


def test_python_versions_offered_are_the_tested_ones(main_tree: dict[str, Any]) -> None:
    decorators = json.dumps(main_tree["parameters"]["pythonVersion"]["decorators"])
    assert '"3.11"' in decorators
    assert '"3.12"' in decorators
    assert "3.10" not in decorators
    assert "3.13" not in decorators


def test_azure_yaml_points_at_the_function_app(main_tree: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["infra"]["path"] == "infra"
    assert config["infra"]["module"] == "main"
    (service_name, service), = config["services"].items()
    assert service["host"] == "function"
    assert service["language"] == "python"
    assert service["project"] == "."
    assert f"'azd-service-name': '{service_name}'" in MAIN.read_text(encoding="utf-8")


def test_parameters_file_names_only_declared_parameters(main_tree: dict[str, Any]) -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    unknown = set(document["parameters"]) - set(main_tree["parameters"])
    assert not unknown, f"main.parameters.json sets undeclared parameters: {unknown}"
    required = {name for name, p in main_tree["parameters"].items() if "default" not in p}
    missing = required - set(document["parameters"])
    assert not missing, f"azd would prompt for {missing}"


def test_function_app_is_flex_python_with_identity_deployment_storage(main_tree: dict[str, Any]) -> None:
    # azure-functions-doctor reads these only from ARM JSON, not Bicep: checked here instead.
    resources = main_tree["resources"]
    assert resources["plan"]["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    app = resources["functionApp"]["config"]
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert app["properties"]["httpsOnly"] is True
    assert app["identity"]["type"] == "UserAssigned"
    # Flex Consumption rejects these; the runtime is functionAppConfig.runtime.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"} & set(app_settings(main_tree))
    storage = resources["storage"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False


def test_offered_python_versions_are_inside_the_library_and_project_bounds(main_tree: dict[str, Any]) -> None:
    """README "Supported Python": azure-functions' own Requires-Python and pyproject's both admit each."""
    from importlib.metadata import distribution

    from packaging.specifiers import SpecifierSet

    offered = re.findall(r'"(3\.\d+)"', json.dumps(main_tree["parameters"]["pythonVersion"]["decorators"]))
    library = SpecifierSet(distribution("azure-functions").metadata["Requires-Python"] or "")
    project = SpecifierSet(re.search(r'requires-python = "([^"]+)"',
                                     (ROOT / "pyproject.toml").read_text(encoding="utf-8")).group(1))
    assert offered
    for version in offered:
        assert f"{version}.0" in library, f"azure-functions does not support Python {version}"
        assert f"{version}.0" in project, f"pyproject.toml excludes Python {version}"


def _sample(value: Any, variables: dict[str, Any]) -> str:
    """A deployed value for a template expression: the storage account's name and endpoints, the identity's
    client ID, a variable's literal; enough to run the app's own resolution over the template's settings."""
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    accessor = value.get("operator", {}).get("operands", {}) if isinstance(value, dict) else {}
    if accessor.get("operand_1") == "identityConnection":
        literal = variables["identityConnection"]["value"][accessor["operand_2"]]
        return literal if isinstance(literal, str) else SAMPLE_CLIENT_ID
    if accessor == {"operand_1": "storage", "operand_2": "name"}:
        return SAMPLE_ACCOUNT
    endpoint = re.search(r'"primaryEndpoints", "operand_2": "(\w+)"', text)
    if accessor.get("operand_1") == "storage" and endpoint:
        return f"https://{SAMPLE_ACCOUNT}.{endpoint.group(1)}.core.windows.net/"
    raise AssertionError(f"no sample for template expression {text[:120]}")


def test_identity_settings_are_exactly_what_the_storage_adapters_read(main_tree: dict[str, Any]) -> None:
    """The template's identity-based settings, fed to the app's own resolution, give every storage client the
    endpoints of the deployed account and the user-assigned identity; it sets no property the app ignores."""
    from azure.identity import ManagedIdentityCredential

    from unprovision.wiring import storage_account

    declared = app_settings(main_tree)
    identity = {name: value for name, value in declared.items() if "__" in name}
    ignored = sorted(name for name in identity if name.split("__", 1)[1] not in IDENTITY_PROPERTIES)
    assert not ignored, f"identity-based settings the app never reads: {ignored}"
    assert HOST_STORAGE not in declared, "a plain AzureWebJobsStorage would win over the identity-based one"
    variables = main_tree["variables"]
    values = {name: _sample(value, variables) for name, value in identity.items()
              if not name.startswith(("SERVICEBUS_", "OUTCOME_SERVICEBUS_"))}
    for name, services in STORAGE_SERVICES.items():
        connection = require_storage_connection(values, name)
        assert connection.identity_based, name
        for service in services:
            assert service_endpoint(connection, service).rstrip("/") == \
                f"https://{SAMPLE_ACCOUNT}.{service}.core.windows.net", (name, service)
        credential = token_credential(connection)
        assert isinstance(credential, ManagedIdentityCredential), name
    settings = Settings.from_mapping(values)
    host = storage_account(settings, values)
    assert host is not None
    assert host.name == HOST_STORAGE  # the queues live in the host's account, reached with the identity
    assert settings.journal is not None
    assert settings.journal.name == JOURNAL_CONNECTION

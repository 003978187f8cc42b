"""Index a v2-model Functions app the way the Python worker does, and invoke its functions.

The worker imports ``PYTHON_SCRIPT_FILE_NAME`` (default ``function_app.py``) from the app root, requires
exactly one ``FunctionRegister`` in the module globals and calls ``get_functions()`` once (a second call on
the same instance fails, docs/azure-behaviour.md §F1.2/§F1.3). Everything the host needs is read from the
app's own metadata, never a hand-kept list.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import inspect
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import FunctionRegister

from devhost.settings import HostSettingsError, resolve_expression


class AppIndexError(Exception):
    """The app cannot be indexed (no app, two apps, a bad binding)."""

    def __init__(self, message: str, *, code: str = "IndexingFailed") -> None:
        super().__init__(message)
        self.code = code


class TriggerKind(enum.Enum):
    """Trigger kinds the host drives; OTHER functions are indexed but not run."""

    QUEUE = "queueTrigger"
    HTTP = "httpTrigger"
    TIMER = "timerTrigger"
    SERVICE_BUS = "serviceBusTrigger"
    OTHER = "other"


@dataclass(frozen=True)
class QueueSpec:
    queue_name: str
    connection: str


@dataclass(frozen=True)
class HttpSpec:
    route: str
    methods: tuple[str, ...] | None  # None = every method
    auth_level: str  # "anonymous" | "function" | "admin"


@dataclass(frozen=True)
class TimerSpec:
    schedule: str
    run_on_startup: bool
    use_monitor: bool | None


@dataclass(frozen=True)
class ServiceBusSpec:
    entity: str  # queue name, or "<topic>/Subscriptions/<subscription>"
    connection: str
    auto_complete: bool | None


@dataclass(frozen=True)
class OutputBinding:
    """An OUT binding (``$return`` or a ``func.Out`` parameter) with its resolved attributes."""

    name: str
    type: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function: its trigger, where it listens and how to call it."""

    name: str
    kind: TriggerKind
    binding_type: str
    trigger_param: str
    spec: QueueSpec | HttpSpec | TimerSpec | ServiceBusSpec | None
    user_function: Callable[..., Any]
    is_async: bool
    wants_context: bool
    outputs: tuple[OutputBinding, ...]


class OutValue(func.Out[Any]):
    """Concrete ``func.Out`` (the library's is abstract; the worker has its own)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class InvocationContext(func.Context):
    """Concrete ``func.Context`` for functions that declare a ``context`` parameter."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return self._local


@dataclass(frozen=True)
class InvocationResult:
    """What a function produced: its return value and the values set on its ``func.Out`` outputs."""

    return_value: Any
    outputs: Mapping[str, Any]


@dataclass(frozen=True)
class AppIndex:
    """The indexed app: the module, its FunctionApp and the function descriptions."""

    app_root: Path
    module: Any
    app: FunctionRegister
    functions: tuple[FunctionInfo, ...]

    def by_kind(self, kind: TriggerKind) -> list[FunctionInfo]:
        return [f for f in self.functions if f.kind is kind]

    def get(self, name: str) -> FunctionInfo:
        for info in self.functions:
            if info.name == name:
                return info
        raise KeyError(name)


def _import_app_module(app_root: Path, script: str, module_name: str | None = None) -> Any:
    """Import the script fresh (so ``get_functions()`` runs on a new app instance).

    Like the worker, by default the module is registered under its file stem and the app root goes first
    on sys.path. With ``module_name`` (tests hosting a toy app next to the real one in one process) the
    module gets that name and the app root is appended instead, so ``import function_app`` elsewhere still
    finds the real app.
    """
    path = (app_root / script).resolve()
    if not path.is_file():
        raise AppIndexError(f"{script} not found in {app_root}", code="ScriptNotFound")
    root = str(path.parent)
    if root not in sys.path:
        if module_name:
            sys.path.append(root)
        else:
            sys.path.insert(0, root)
    name = module_name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppIndexError(f"cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _find_register(module: Any) -> FunctionRegister:
    """The single FunctionRegister in the module globals (same object under two names counts once)."""
    found = {id(v): v for v in vars(module).values() if isinstance(v, FunctionRegister)}
    if not found:
        raise AppIndexError("no top-level FunctionApp instance found in the script", code="NoFunctionApp")
    if len(found) > 1:
        raise AppIndexError("more than one FunctionApp instance in the script", code="MultipleFunctionApps")
    return next(iter(found.values()))


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _spec_for(
    trigger: Any, settings: Mapping[str, str]
) -> QueueSpec | HttpSpec | TimerSpec | ServiceBusSpec | None:
    kind = trigger.get_binding_name()
    if kind == TriggerKind.QUEUE.value:
        return QueueSpec(resolve_expression(trigger.queue_name, settings), trigger.connection or "")
    if kind == TriggerKind.HTTP.value:
        methods = None if not trigger.methods else tuple(_enum_value(m).upper() for m in trigger.methods)
        level = _enum_value(trigger.auth_level or "function").lower()
        return HttpSpec(resolve_expression(trigger.route, settings).strip("/"), methods, level)
    if kind == TriggerKind.TIMER.value:
        return TimerSpec(
            resolve_expression(trigger.schedule, settings), bool(trigger.run_on_startup), trigger.use_monitor
        )
    if kind == TriggerKind.SERVICE_BUS.value:
        if getattr(trigger, "topic_name", None):
            entity = f"{trigger.topic_name}/Subscriptions/{trigger.subscription_name}"
        else:
            entity = trigger.queue_name
        return ServiceBusSpec(
            resolve_expression(entity, settings),
            trigger.connection or "",
            getattr(trigger, "auto_complete_messages", None),
        )
    return None


def _outputs(fn: Any, trigger_name: str, settings: Mapping[str, str]) -> tuple[OutputBinding, ...]:
    result = []
    for binding in fn.get_bindings():
        if binding.name == trigger_name or _enum_value(binding.direction) not in ("1", "OUT"):
            continue
        attrs = {
            k: resolve_expression(v, settings) if isinstance(v, str) else v
            for k, v in binding.get_dict_repr().items()
            if k not in ("direction", "type", "name")
        }
        result.append(OutputBinding(binding.name, binding.get_binding_name(), attrs))
    return tuple(result)


def _describe(fn: Any, settings: Mapping[str, str]) -> FunctionInfo:
    trigger = fn.get_trigger()
    binding_type = trigger.get_binding_name()
    kinds = {k.value: k for k in TriggerKind}
    user = fn.get_user_function()
    try:
        spec = _spec_for(trigger, settings)
    except HostSettingsError as exc:
        raise AppIndexError(f"function {fn.get_function_name()}: {exc}", code=exc.code) from exc
    return FunctionInfo(
        name=fn.get_function_name(),
        kind=kinds.get(binding_type, TriggerKind.OTHER),
        binding_type=binding_type,
        trigger_param=trigger.name,
        spec=spec,
        user_function=user,
        is_async=inspect.iscoroutinefunction(user),
        wants_context="context" in inspect.signature(user).parameters,
        outputs=_outputs(fn, trigger.name, settings),
    )


def load_app(app_root: Path, settings: Mapping[str, str], *, module_name: str | None = None) -> AppIndex:
    """Import and index the app under ``app_root``; ``%NAME%`` expressions resolve from ``settings``."""
    script = settings.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py"
    module = _import_app_module(app_root, script, module_name)
    app = _find_register(module)
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise AppIndexError(f"the app's functions are invalid: {exc}") from exc
    infos = tuple(_describe(fn, settings) for fn in functions)
    return AppIndex(app_root=app_root, module=module, app=app, functions=infos)


def invoke(info: FunctionInfo, trigger_value: Any, app_root: Path | None = None) -> InvocationResult:
    """Call the user function with its trigger value, a context and fresh ``Out`` objects; await it."""
    kwargs: dict[str, Any] = {info.trigger_param: trigger_value}
    outs = {o.name: OutValue() for o in info.outputs if o.name != "$return"}
    kwargs.update(outs)
    if info.wants_context:
        kwargs["context"] = InvocationContext(info.name, str(app_root or "."))
    result = info.user_function(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return InvocationResult(result, {name: out.get() for name, out in outs.items() if out.get() is not None})


async def _await(awaitable: Any) -> Any:
    return await awaitable

"""A small, strict subset of the IoT Hub query language, plus continuation paging.

Supported (case-insensitive keywords): ``SELECT * FROM devices [WHERE <cond> [AND <cond>]...]`` where
``<cond>`` is ``<field> = <literal>``, ``<field> != <literal>`` or ``<field> IN [<literal>, ...]``;
``<field>`` is ``deviceId``, ``status``, ``connectionState``, ``authenticationType`` or a dotted path
under ``tags.`` / ``properties.desired.`` / ``properties.reported.``; literals are single-quoted strings
(``''`` escapes a quote), numbers, ``true``/``false``/``null``. Anything else → 400 ArgumentInvalid, so
code relying on unsupported syntax fails loudly rather than getting wrong answers.

Paging: ``x-ms-max-item-count`` (default 100, capped at 1000 — the real cap is not documented,
docs/azure-behaviour.md §11.8); the continuation token is opaque (base64 of the offset and a query hash); no
continuation header on the last page. Results are in registry insertion order.

Index: when a top-level condition is ``deviceId = '<id>'`` or ``deviceId IN ['<id>', ...]`` (the app's bulk
disable asks exactly this, 100 IDs at a time), ``run_query`` asks the registry for those IDs only
(``TwinSource.twins_by_id``) instead of building every twin in the hub; the full predicate is still applied
to them, and the registry returns them in insertion order, so results and paging are identical to a scan.
Every other query scans.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.iothub.model import hub_error

DEFAULT_PAGE = 100
MAX_PAGE = 1000
_TOP_FIELDS = {"deviceid": "deviceId", "status": "status", "connectionstate": "connectionState",
               "authenticationtype": "authenticationType"}
_PREFIXES = ("tags.", "properties.desired.", "properties.reported.")
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|=|\[|\]|,|\*)"
                    r"|(?P<word>[A-Za-z_$][A-Za-z0-9_$.]*))")

Predicate = Callable[[dict[str, Any]], bool]
IdSet = frozenset[str] | None  # the device IDs a condition can match; None = not an ID condition


class TwinSource(Protocol):
    """What ``run_query`` reads: every twin, or only those of some IDs, both in registry insertion order."""

    def twins(self) -> list[dict[str, Any]]: ...

    def twins_by_id(self, device_ids: Collection[str]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Query:
    """A compiled query: its predicate, and the only device IDs it can match when it names some."""

    predicate: Predicate
    device_ids: IdSet = None


def _bad(message: str) -> Exception:
    return hub_error(400, "ArgumentInvalid", f"Query not supported by the emulator: {message}")


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise _bad(f"unexpected input at {position}")
        position = match.end()
        kind = match.lastgroup or ""
        value: Any = match.group(kind)
        if kind == "str":
            value = value[1:-1].replace("''", "'")
        elif kind == "num":
            value = float(value) if "." in value else int(value)
        out.append((kind, value))
    return out


@dataclass
class _Parser:
    tokens: list[tuple[str, Any]]
    pos: int = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", None)

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, word: str) -> None:
        kind, value = self.take()
        if kind != "word" or str(value).lower() != word:
            raise _bad(f"expected {word.upper()}")

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("str", "num"):
            return value
        if kind == "word" and str(value).lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[str(value).lower()]
        raise _bad("expected a literal")

    def field(self) -> str:
        kind, value = self.take()
        if kind != "word":
            raise _bad("expected a field name")
        name = str(value)
        if name.lower() in _TOP_FIELDS:
            return _TOP_FIELDS[name.lower()]
        if name.startswith(_PREFIXES) and not name.endswith("."):
            return name
        raise _bad(f"field {name!r} is outside the supported subset")

    def condition(self) -> tuple[Predicate, IdSet]:
        path = self.field()
        kind, op = self.take()
        if kind == "op" and op in ("=", "!="):
            expected = self.literal()
            negate = op == "!="
            ids = _ids(path, [expected]) if not negate else None
            return (lambda twin: (_lookup(twin, path) == expected) != negate), ids
        if kind == "word" and str(op).lower() == "in":
            return self._in_list(path)
        raise _bad("expected =, != or IN")

    def _in_list(self, path: str) -> tuple[Predicate, IdSet]:
        if self.take() != ("op", "["):
            raise _bad("IN needs [ ... ]")
        values = [self.literal()]
        while self.peek() == ("op", ","):
            self.take()
            values.append(self.literal())
        if self.take() != ("op", "]"):
            raise _bad("IN list not closed")
        return (lambda twin: _lookup(twin, path) in values), _ids(path, values)


def _ids(path: str, values: list[Any]) -> IdSet:
    """The IDs a ``deviceId`` equality/IN can match: its string literals (a twin's deviceId is a string)."""
    if path != "deviceId":
        return None
    return frozenset(v for v in values if isinstance(v, str))


_MISSING = object()


def _lookup(twin: dict[str, Any], path: str) -> Any:
    node: Any = twin
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def compile_query(text: Any) -> Query:
    """Compile a query string: predicate plus the ID set of its ``deviceId`` conditions (intersected)."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("the query is empty")
    parser = _Parser(_tokens(text))
    parser.keyword("select")
    if parser.take() != ("op", "*"):
        raise _bad("only SELECT * is supported")
    parser.keyword("from")
    parser.keyword("devices")
    conditions: list[Predicate] = []
    device_ids: IdSet = None
    if parser.peek()[0] != "end":
        parser.keyword("where")
        while True:
            predicate, ids = parser.condition()
            conditions.append(predicate)
            if ids is not None:  # conditions are ANDed: a twin must satisfy every ID condition
                device_ids = ids if device_ids is None else device_ids & ids
            if parser.peek()[0] == "end":
                break
            parser.keyword("and")
    return Query(lambda twin: all(cond(twin) for cond in conditions), device_ids)


def _query_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_token(offset: int, text: str) -> str:
    raw = json.dumps({"o": offset, "q": _query_hash(text)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str | None, text: str) -> int:
    """Offset from a continuation token; 400 when it is malformed or belongs to another query."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise hub_error(400, "ArgumentInvalid", "Invalid continuation token.") from exc
    if data.get("q") != _query_hash(text) or offset < 0:
        raise hub_error(400, "ArgumentInvalid", "Continuation token does not match the query.")
    return offset


def page_size(header: str | None) -> int:
    """``x-ms-max-item-count`` → page size (default 100, clamped to 1..1000)."""
    if not header:
        return DEFAULT_PAGE
    try:
        return min(max(int(header), 1), MAX_PAGE)
    except ValueError as exc:
        raise hub_error(400, "ArgumentInvalid", "x-ms-max-item-count must be an integer.") from exc


def run_query(twins: list[dict[str, Any]] | TwinSource, text: str, *, max_items: str | None,
              continuation: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Filter and page; returns (items, next continuation token or None on the last page).

    ``twins`` is a list (scanned) or a ``TwinSource`` (the hub registry), which is asked only for the
    named IDs when the query has a ``deviceId`` =/IN condition (module doc).
    """
    query = compile_query(text)
    offset = decode_token(continuation, text)
    size = page_size(max_items)
    if isinstance(twins, list):
        candidates = twins
    elif query.device_ids is not None:
        candidates = twins.twins_by_id(query.device_ids)
    else:
        candidates = twins.twins()
    matching = [twin for twin in candidates if query.predicate(twin)]
    page = matching[offset : offset + size]
    following = offset + size
    return page, (encode_token(following, text) if following < len(matching) else None)

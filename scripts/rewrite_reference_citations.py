"""Point the old "reference §N" comments at docs/azure-behaviour.md (issue 10, item 6).

The code used to cite two documents kept outside the repository: an Azure IoT behaviour reference (DPS, IoT
Hub, SDKs) and a Functions host behaviour reference. Both now live in ``docs/azure-behaviour.md``: the IoT
sections keep their numbers (§1 ... §11), the host sections carry an ``F`` (§F1 ... §F12). A citation in a
file about the local Functions host (``devhost/``, ``tests/**/test_devhost_*``, ``docs/devhost.md``) or one
that names the host reference gets the ``F``.

    python scripts/rewrite_reference_citations.py --check [--diff]   # report only, write nothing
    python scripts/rewrite_reference_citations.py                    # rewrite *.py and *.md in place

Python lines that the rewrite pushes over the ruff line length are re-wrapped: overflowing words move to the
next line of the same comment or docstring paragraph (or a new line), an inline comment moves above its code.

Exit status: 0 when every citation resolves; 1 when a cited section has no heading in docs/azure-behaviour.md
or a mention of the external references is left that no rule rewrites; 2 when a rewritten Python line is
still over the ruff line length (the report lists it). Standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELF_REL = "scripts/rewrite_reference_citations.py"
DOC = "docs/azure-behaviour.md"
SKIP_DIRS = {".venv", "venv", "node_modules", ".git", "__pycache__", ".mypy_cache", ".ruff_cache",
             ".pytest_cache"}

DASHES = "-\u2013"  # hyphen and en dash, as in "§1.1\u20131.2" or "§1\u2013§6"
# One section token (§3, §3.4, §F10.7), optionally a range; a list joins tokens with , / and or.
_SEC = rf"§F?\d+(?:\.\d+)*(?:\s*[{DASHES}]\s*§?F?\d+(?:\.\d+)*)?"
_JOIN = r"\s*(?:,|/|\band\b|\bor\b)\s*"
_LIST = rf"{_SEC}(?:{_JOIN}{_SEC})*"
_HOST_DOC = r"functions-host-behaviour(?:\.md)?"
_IOT_DOC = r"azure-iot-behaviour(?:\.md)?"

HEADING = re.compile(r"^#{1,6}\s+(F?\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
SECTION_TOKEN = re.compile(r"§?(F?)(\d+(?:\.\d+)*)")
DOC_CITATION = re.compile(rf"{re.escape(DOC)}`?\s*\(?\s*({_LIST})")
BARE_SECTION = re.compile(r"§(F?\d+(?:\.\d+)*)")
LEFTOVER = re.compile(rf"\breference\s*§|{_HOST_DOC}|{_IOT_DOC}|shared/reference", re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*(?:[*-]\s|\d+\.\s|>>>|\.\.\.|\|)")


@dataclass(frozen=True)
class Rule:
    """A citation form: ``pattern`` has a group ``secs``; ``template`` gets the (maybe F-prefixed) list."""

    pattern: re.Pattern[str]
    template: str
    kind: str  # "host", "iot", or "file" (decided by the file's path)


RULES = (
    # the host reference, named
    Rule(re.compile(rf"(?:the\s+)?{_HOST_DOC}\s+reference,\s*section\s+(?P<secs>\d+(?:\.\d+)*)"),
         "{doc} {secs}", "host"),
    Rule(re.compile(rf"(?:the\s+)?{_HOST_DOC}\s+reference\s+(?P<secs>{_LIST})"), "{doc} {secs}", "host"),
    Rule(re.compile(rf"reference\s+{_HOST_DOC}\s+(?P<secs>{_LIST})"), "{doc} {secs}", "host"),
    Rule(re.compile(rf"the\s+reference\s+\({_HOST_DOC}\s+(?P<secs>{_LIST})\)"), "{doc} ({secs})", "host"),
    Rule(re.compile(rf"`{_HOST_DOC}`\s+(?P<secs>{_LIST})"), "`{doc}` {secs}", "host"),
    Rule(re.compile(rf"\bhost\s+reference\s+(?P<secs>{_LIST})"), "{doc} {secs}", "host"),
    # the IoT reference, named
    Rule(re.compile(rf"reference\s+{_IOT_DOC}\s+(?P<secs>{_LIST})"), "{doc} {secs}", "iot"),
    Rule(re.compile(rf"the\s+reference's\s+recipes\s+\((?P<secs>{_LIST})\)"),
         "the recipes of {doc} ({secs})", "iot"),
    # unnamed: "the reference (§5)", "reference §4.4", "Reference §2", "reference\n§3, §8"
    Rule(re.compile(rf"the\s+reference\s+\((?P<secs>{_LIST})\)"), "{doc} ({secs})", "file"),
    Rule(re.compile(rf"\b[Rr]eference(?P<ws>\s+)(?P<secs>{_LIST})"), "{doc}{ws}{secs}", "file"),
)


def is_host_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return rel.startswith("devhost/") or name.startswith("test_devhost") or rel == "docs/devhost.md"


def as_host(sections: str) -> str:
    """``§2, §1.1-1.2`` -> ``§F2, §F1.1-F1.2`` (idempotent)."""
    sections = re.sub(r"§(?!F)(?=\d)", "§F", sections)
    return re.sub(rf"([{DASHES}]\s*)(?=\d)", r"\1F", sections)


def cited_ids(sections: str) -> list[str]:
    """Every section a citation list names; the right end of a range inherits the left end's F."""
    ids: list[str] = []
    for part in re.split(_JOIN, sections):
        prefix = ""
        for end in re.split(rf"\s*[{DASHES}]\s*", part):
            m = SECTION_TOKEN.fullmatch(end.strip())
            if m:
                prefix = m.group(1) or prefix
                ids.append(prefix + m.group(2))
    return ids


def rewrite(text: str, rel: str) -> tuple[str, list[tuple[int, str, str]]]:
    """Apply every rule; return the new text and (line, old, new) for each citation rewritten."""
    changes: list[tuple[int, str, str]] = []
    host_file = is_host_file(rel)
    for rule in RULES:
        current = text

        def repl(m: re.Match[str], rule: Rule = rule, current: str = current) -> str:
            secs = m.group("secs")
            if secs[0] != "§":  # "section 2"
                secs = "§" + secs
            if rule.kind == "host" or (rule.kind == "file" and host_file):
                secs = as_host(secs)
            new = rule.template.format(doc=DOC, secs=secs, ws=m.groupdict().get("ws") or " ")
            changes.append((current.count("\n", 0, m.start()) + 1, m.group(0), new))
            return new

        text = rule.pattern.sub(repl, current)
    return text, sorted(changes)


def _split_at(text: str, width: int) -> tuple[str, str] | None:
    """Split at the last space leaving at most ``width`` characters, never right before § or a lone unit."""
    cut = text.rfind(" ", 0, width + 1)
    while cut > 0 and (text[cut + 1 : cut + 2] == "§" or text[cut + 1 :].split(" ", 1)[0] in {"s", "-"}):
        cut = text.rfind(" ", 0, cut)
    if cut <= 0 or not text[:cut].strip():
        return None
    return text[:cut].rstrip(), text[cut + 1 :].lstrip()


def _inline_comment(line: str) -> tuple[str, str] | None:
    """``code  # comment`` -> (code, comment) when the ``#`` is outside string literals (simple check)."""
    m = re.search(r"\s{2}# ", line)
    if not m or line.lstrip().startswith("#"):
        return None
    code = line[: m.start()]
    if code.count('"') % 2 or code.count("'") % 2:
        return None
    return code.rstrip(), line[m.end() :]


def _joinable(nxt: str | None, prefix: str, tail: str) -> bool:
    """Whether ``tail`` may go in front of ``nxt``, the next line of the same comment or docstring."""
    if nxt is None or '"""' in tail or not nxt.strip() or nxt.strip().startswith('"""'):
        return False
    rest = nxt[len(prefix) :]
    if not nxt.startswith(prefix) or rest.startswith(" ") or LIST_ITEM.match(rest):
        return False
    return (prefix.strip() == "#") == nxt.lstrip().startswith("#")


def reflow_long_lines(text: str, limit: int, touched: set[int]) -> str:
    """Re-wrap the lines (1-based numbers in ``touched``) that the rewrite made longer than ``limit``."""
    lines = text.split("\n")
    todo = {n - 1 for n in touched}
    i = 0
    while i < len(lines):
        line = lines[i]
        if i not in todo or len(line) <= limit:
            i += 1
            continue
        inline = _inline_comment(line)
        if inline:
            code, comment = inline
            indent = code[: len(code) - len(code.lstrip())]
            lines[i : i + 1] = [f"{indent}# {comment}", code]
            todo = {n + 1 if n > i else n for n in todo} | {i}
            continue
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        is_comment = stripped.startswith("#")
        prefix, body = (indent + "# ", stripped[1:].lstrip()) if is_comment else (indent, stripped)
        head_prefix = prefix
        if not stripped.startswith("#") and '"""' in body[:5]:
            quote = body.index('"""') + 3
            head_prefix, body = indent + body[:quote], body[quote:]
        split = _split_at(body, limit - len(head_prefix))
        if split is None:
            i += 1
            continue
        head, tail = split
        lines[i] = head_prefix + head
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if _joinable(nxt, prefix, tail):
            lines[i + 1] = prefix + tail + " " + lines[i + 1][len(prefix) :]
        else:
            lines.insert(i + 1, prefix + tail)
            todo = {n + 1 if n > i else n for n in todo}
        todo.add(i + 1)
        i += 1
    return "\n".join(lines)


def line_length_limit(root: Path) -> int:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        return int(data["tool"]["ruff"]["line-length"])
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        return 88


@dataclass
class FileReport:
    rel: str
    changes: list[tuple[int, str, str]] = field(default_factory=list)
    missing: list[tuple[int, str]] = field(default_factory=list)
    leftovers: list[tuple[int, str]] = field(default_factory=list)
    long_lines: list[tuple[int, int]] = field(default_factory=list)
    bare: list[tuple[int, str]] = field(default_factory=list)

    def interesting(self) -> bool:
        return bool(self.changes or self.missing or self.leftovers or self.long_lines or self.bare)


def check(report: FileReport, old: str, new: str, known: set[str], limit: int) -> None:
    """Fill ``report`` with unknown sections, leftover mentions, over-long lines and unknown bare § tokens."""
    spans = []
    for m in DOC_CITATION.finditer(new):
        spans.append(m.span(1))
        line = new.count("\n", 0, m.start()) + 1
        report.missing += [(line, sid) for sid in cited_ids(m.group(1)) if sid not in known]
    new_lines = new.splitlines()
    for m in LEFTOVER.finditer(new):
        line = new.count("\n", 0, m.start()) + 1
        report.leftovers.append((line, new_lines[line - 1].strip()))
    if spans:  # a bare "§3.4" next to a citation means a section of the same document
        for m in BARE_SECTION.finditer(new):
            if not any(a <= m.start() < b for a, b in spans) and m.group(1) not in known:
                report.bare.append((new.count("\n", 0, m.start()) + 1, m.group(0)))
    if report.rel.endswith(".py"):
        before = set(old.splitlines())
        report.long_lines += [
            (i, len(t)) for i, t in enumerate(new_lines, 1) if len(t) > limit and t not in before
        ]


def iter_files(root: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(root.rglob("*")):
        rel_parts = path.relative_to(root).parts
        if any(part in SKIP_DIRS for part in rel_parts) or path.suffix not in {".py", ".md"}:
            continue
        rel = "/".join(rel_parts)
        if path.is_file() and rel not in {DOC, SELF_REL}:
            yield path, rel


def print_report(reports: list[FileReport], known: set[str], limit: int, *, check_only: bool) -> int:
    for r in reports:
        for line, old, new in r.changes:
            print(f"{r.rel}:{line}: {old!r} -> {new!r}")
    n_files = sum(1 for r in reports if r.changes)
    n_changes = sum(len(r.changes) for r in reports)
    print(f"{'would rewrite' if check_only else 'rewrote'} {n_changes} citation(s) in {n_files} file(s)")
    n_missing = n_left = n_long = 0
    for r in reports:
        for line, sid in r.missing:
            print(f"MISSING {r.rel}:{line}: §{sid} has no heading in {DOC}")
        for line, text in r.leftovers:
            print(f"LEFTOVER {r.rel}:{line}: {text}")
        for line, n in r.long_lines:
            print(f"LONG {r.rel}:{line}: {n} characters after the rewrite (ruff line length {limit})")
        for line, token in r.bare:
            print(f"NOTE {r.rel}:{line}: bare {token} is not a section of {DOC} (check by hand)")
        n_missing += len(r.missing)
        n_left += len(r.leftovers)
        n_long += len(r.long_lines)
    print(f"sections in {DOC}: {len(known)}; missing: {n_missing}; leftovers: {n_left}; long lines: {n_long}")
    if n_missing or n_left:
        return 1
    return 2 if n_long else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rewrite 'reference §N' citations to " + DOC)
    parser.add_argument("--check", action="store_true", help="report what would change; write nothing")
    parser.add_argument("--diff", action="store_true", help="print a unified diff of each rewritten file")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this repository)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    doc_path = root / DOC
    if not doc_path.is_file():
        print(f"error: {DOC} does not exist under {root}", file=sys.stderr)
        return 1
    known = set(HEADING.findall(doc_path.read_text(encoding="utf-8")))
    limit = line_length_limit(root)

    reports: list[FileReport] = []
    for path, rel in iter_files(root):
        old = path.read_text(encoding="utf-8")
        new, changes = rewrite(old, rel)
        if changes and rel.endswith(".py"):
            new = reflow_long_lines(new, limit, {line for line, _, _ in changes})
        report = FileReport(rel=rel, changes=changes)
        check(report, old, new, known, limit)
        if report.interesting():
            reports.append(report)
        if changes and args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"))
        if changes and not args.check:
            path.write_text(new, encoding="utf-8")
    return print_report(reports, known, limit, check_only=args.check)


if __name__ == "__main__":
    sys.exit(main())

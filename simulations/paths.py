"""Report paths: what a scenario's report holds, read from simulations/schema.py.

- :func:`check_path` refuses a check path that the scenario's report cannot have: a typo,
  another scenario's fault id, ``messages.*`` in a scenario that posts nothing, a kind it
  never sends, a renamed key; each with a "did you mean" from :mod:`difflib`. The
  scenario loader calls it for every path of every check, before anything starts.
- :func:`differences` compares a finished report with the schema (a test does it on real
  runs; every run logs a mismatch as a bug).
- :func:`markdown_table` is docs/scenarios.md's table of report paths (a test keeps the two
  equal; ``python -m ncbsim.simulations.paths`` prints it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ncbsim.errors import ConfigError
from ncbsim.simulations.schema import REPORT, Ctx, Each, Leaf, Node, Table, When

if TYPE_CHECKING:
    from ncbsim.simulations.scenario import Scenario

__all__ = [
    "Differences",
    "PathError",
    "check_path",
    "check_paths",
    "differences",
    "doc_rows",
    "markdown_table",
    "paths",
]

Path = tuple[str, ...]


class PathError(ConfigError):
    """A check names a path that the scenario's report cannot hold. The message says why,
    and suggests the nearest path that exists."""


# Checks read the report's ``per_bureau`` as ``bureaus`` (report.json keeps ``bureaus``
# as the list of codes).
_CHECK_ROOT = Table(
    {("bureaus" if k == "per_bureau" else k): v for k, v in REPORT.fields.items() if k != "bureaus"}
)

RENAMED: dict[Path, tuple[Path, str]] = {
    ("bureaus", "*", "queries"): (
        ("bureaus", "*", "as_recipient", "queries"),
        "the pairs sent to a bureau are under as_recipient, those it sent under as_requester",
    ),
    ("bureaus", "*", "latency_ms"): (
        ("bureaus", "*", "as_recipient", "latency_ms"),
        "the latency of a bureau's answers is under as_recipient",
    ),
    ("bureaus", "*", "sent"): (
        ("bureaus", "*", "as_requester", "requests"),
        "the queries a bureau sent are as_requester.requests (pairs: as_requester.queries.sent)",
    ),
}
"""Check paths of earlier reports, and what they are now (matched by prefix; * is any id)."""


# ---------------------------------------------------------------- walking


def _resolve(node: Node, s: Scenario, ctx: Ctx) -> Leaf | Table | Each | str:
    """The node, through any When that holds; or why it does not exist here."""
    while isinstance(node, When):
        if not node.exists(s, ctx):
            return node.why_not
        node = node.node
    return node


def _leaves(node: Node, s: Scenario, ctx: Ctx) -> Iterator[tuple[Path, Leaf]]:
    resolved = _resolve(node, s, ctx)
    if isinstance(resolved, str):
        return
    if isinstance(resolved, Leaf):
        yield ctx, resolved
    elif isinstance(resolved, Table):
        for key, child in resolved.fields.items():
            yield from _leaves(child, s, (*ctx, key))
    else:
        for item in resolved.ids(s, ctx):
            yield from _leaves(resolved.item, s, (*ctx, item))


def paths(s: Scenario) -> dict[Path, Leaf]:
    """Every leaf path of a finished report of ``s`` (report.json terms), with its leaf."""
    return dict(_leaves(REPORT, s, ()))


def _to_check(path: Path) -> Path:
    return ("bureaus", *path[1:]) if path[:1] == ("per_bureau",) else path


def check_paths(s: Scenario) -> list[str]:
    """Every dotted path a check of ``s`` may read (``bureaus`` for ``per_bureau``)."""
    return [
        ".".join(_to_check(p))
        for p, leaf in paths(s).items()
        if leaf.checkable and p[0] != "bureaus"
    ]


def _renamed(path: Path) -> tuple[str, str] | None:
    for old, (new, why) in RENAMED.items():
        if len(path) >= len(old) and all(o in ("*", p) for o, p in zip(old, path, strict=False)):
            fresh = [p if n == "*" else n for n, p in zip(new, path, strict=False)]
            fresh += list(new[len(fresh) :])
            return ".".join([*fresh, *path[len(old) :]]), why
    return None


def _options(options: Sequence[str]) -> str:
    if not options:
        return "; there is none"
    if len(options) > 12:
        return f"; expected one of {len(options)} ({', '.join(options[:6])}, ...)"
    return f"; expected one of {', '.join(options)}"


def _kind_of(leaf: Leaf) -> str:
    return {"number": "a number", "bool": "true/false", "text": "text", "list": "a list"}[leaf.type]


@dataclass(frozen=True, slots=True)
class _Why:
    """Why a path cannot be read, and the path a misspelling most likely meant (if any)."""

    text: str
    fix: Path | None = None


def _nearest(seg: str, options: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(seg, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _child(node: Node, path: Path, depth: int, s: Scenario) -> Node | _Why:
    """The node under ``path[depth]`` of ``node`` (at ``path[:depth]``); or why there is none.

    A misspelt key or id gets the same path with the nearest key or id in its place; one
    key too many under a number, the path without it.
    """
    seg, ctx = path[depth], path[:depth]
    resolved = _resolve(node, s, ctx)
    if isinstance(resolved, str):
        return _Why(resolved)
    where = ".".join(ctx)
    if isinstance(resolved, Leaf):
        return _Why(f"{where} is {_kind_of(resolved)}, not a table", ctx)
    if isinstance(resolved, Table):
        options, what = list(resolved.fields), f"a key of {where}"
        if seg in resolved.fields:
            return resolved.fields[seg]
    else:
        options, what = list(resolved.ids(s, ctx)), resolved.what
        if seg in options:
            return resolved.item
    near = _nearest(seg, options)
    fix = None if near is None else (*ctx, near, *path[depth + 1 :])
    problem = f"{seg!r} is not {what}" if ctx else f"unknown report key {seg!r}"
    return _Why(problem + _options(options), fix)


def _end(node: Node, s: Scenario, ctx: Ctx) -> _Why | None:
    """Why the value at ``ctx`` is not one a check reads; None if it is."""
    resolved = _resolve(node, s, ctx)
    if isinstance(resolved, str):
        return _Why(resolved)
    where = ".".join(ctx)
    if not isinstance(resolved, Leaf):
        inside = sorted({".".join(p[len(ctx) :]) for p, _ in _leaves(resolved, s, ctx)})
        return _Why(f"{where} is a table, not a number; name one of its values{_options(inside)}")
    if resolved.after_checks:
        return _Why(f"{where} is written after the checks run")
    return None if resolved.checkable else _Why(f"{where} is {_kind_of(resolved)}, not a number")


def _problem(path: Path, s: Scenario) -> _Why | None:
    """Why ``path`` (check terms) cannot be read from a report of ``s``; None if it can."""
    node: Node = _CHECK_ROOT
    for depth in range(len(path)):
        child = _child(node, path, depth, s)
        if isinstance(child, _Why):
            return child
        node = child
    return _end(node, s, path)


def _suggestion(path: Path, s: Scenario) -> str | None:
    """The path ``path`` most likely meant, with up to two misspellings fixed; or None."""
    candidate: Path | None = path
    for _ in range(2):
        why = _problem(candidate, s) if candidate is not None else None
        candidate = why.fix if why is not None else None
        if candidate is not None and _problem(candidate, s) is None:
            return ".".join(candidate)
    return None


def check_path(path: Path, s: Scenario) -> None:
    """Refuse a check path a report of ``s`` cannot hold: :class:`PathError` says why.

    The message starts with the path and gives the reason. A misspelt key or id ends
    with the path it most likely meant, found with :mod:`difflib` among the keys or ids
    there (``did you mean queries.failed?``); a path of an earlier report
    (``bureaus.FR.queries.sent``) names its new place. A path this scenario cannot have
    (``messages.*`` without posts) says why, without a guess.
    """
    why = _problem(path, s)
    if why is None:
        return
    dotted = ".".join(path)
    renamed = _renamed(path)
    if renamed is not None and _problem(tuple(renamed[0].split(".")), s) is None:
        raise PathError(f"{dotted}: renamed: {renamed[1]}; did you mean {renamed[0]}?")
    near = _suggestion(path, s)
    raise PathError(f"{dotted}: {why.text}" + (f"; did you mean {near}?" if near else ""))


# ---------------------------------------------------------------- a report against the schema


def _report_leaves(value: Any, ctx: Path = ()) -> Iterator[Path]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _report_leaves(item, (*ctx, str(key)))
    elif ctx:
        yield ctx


@dataclass(frozen=True, slots=True)
class Differences:
    """Where a report and the schema disagree (both empty when they agree)."""

    missing: list[str] = field(default_factory=list)  # in the schema, not in the report
    unexpected: list[str] = field(default_factory=list)  # in the report, not in the schema

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected)


def differences(report: Mapping[str, Any], s: Scenario, *, finished: bool = True) -> Differences:
    """Compare ``report`` (report.json terms) with the schema of ``s``.

    ``finished``: the report has what ``simulate`` adds after the checks (``checks``,
    ``passed``, ...); otherwise those are not expected. Optional leaves may be absent.
    """
    expected = paths(s)
    found = set(_report_leaves(report))
    missing = [
        ".".join(p)
        for p, leaf in expected.items()
        if p not in found and not leaf.optional and (finished or not leaf.after_checks)
    ]
    unexpected = [".".join(p) for p in _report_leaves(report) if p not in expected]
    return Differences(missing, unexpected)


# ---------------------------------------------------------------- the docs


def _doc_rows(node: Node, ctx: tuple[str, ...]) -> Iterator[tuple[str, str, str]]:
    path = ".".join(ctx)
    if isinstance(node, When):
        if isinstance(node.node, Leaf):
            *_, (name, doc, unit) = _doc_rows(node.node, ctx)
            yield name, f"{doc} (only for {node.condition})", unit
        else:
            yield f"`{path}`", f"only for {node.condition}; what it holds is below", "table"
            yield from _doc_rows(node.node, ctx)
        return
    if isinstance(node, Leaf):
        doc = node.doc
        if node.nullable and "null" not in doc:
            doc += "; null if it has no value"
        if node.after_checks:
            doc += " (written after the checks: not for checks)"
        elif not node.checkable:
            doc += " (not for checks)"
        yield f"`{path}`", doc, node.unit
        return
    if isinstance(node, Each):
        yield from _doc_rows(node.item, (*ctx, node.placeholder))
        return
    if node.group is not None:
        placeholder, doc, unit = node.group
        yield f"`{path}.{placeholder}`", doc, unit
    for key, child in node.fields.items():
        if key not in node.grouped:
            yield from _doc_rows(child, (*ctx, key))


def doc_rows() -> list[tuple[str, str, str]]:
    """(path as checks name it, what it counts, unit) for every path of the schema."""
    rows: list[tuple[str, str, str]] = []
    for key, child in REPORT.fields.items():
        if key == "bureaus":
            rows.append(
                (
                    "`bureaus`",
                    "in report.json, the scenario's bureau codes; in checks, the per_bureau"
                    " table below",
                    "codes",
                )
            )
            continue
        name = "bureaus" if key == "per_bureau" else key
        rows.extend(_doc_rows(child, (name,)))
    return rows


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """docs/scenarios.md's table of report paths."""
    lines = ["| path | what it counts | unit |", "|---|---|---|"]
    lines += [f"| {p} | {_escape(d)} | {u} |" for p, d, u in doc_rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - prints the docs table
    print(markdown_table(), end="")

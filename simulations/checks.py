"""Check expressions: small, safe, Python-like conditions a simulation report must meet.

A check such as ``latency_ms.p99 < 250 and queries.failed == 0`` is parsed with :mod:`ast`
and walked against an allow-list of node types, so nothing but these can appear:

- dotted paths into the report (``queries.failed``, ``bureaus.FR.as_recipient.queries.no_answer``,
  ``faults.cut.recovered_s``), each segment a Python identifier;
- integer and decimal numbers;
- comparisons ``== != < <= > >=`` (chained: ``0 < queries.hit <= queries.sent``);
- ``and``, ``or``, ``not``; ``+ - * /`` and unary ``-``/``+``; parentheses.

Calls, subscripts, strings, ``True``/``None``, lambdas, comprehensions and the rest are
refused at parse time. Evaluation never raises: a path missing from the report, a ``null``
value, a table where a number was wanted, or a division by zero makes the check fail, with
a detail that says why. docs/scenarios.md describes the report paths.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ncbsim.errors import ConfigError

__all__ = ["Check", "CheckError", "evaluate", "names", "parse"]

Path = tuple[str, ...]

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
}
_UNARY = (ast.Not, ast.USub, ast.UAdd)
_MAX_LENGTH = 1000


class CheckError(ConfigError):
    """A check expression is not valid: bad syntax or a construct outside the grammar.

    A :class:`~ncbsim.errors.ConfigError`, so also a ``ValueError``; the scenario loader
    wraps it in a ``ScenarioError`` that names the file and the key.
    """


@dataclass(frozen=True, slots=True)
class Check:
    """A parsed check expression: its source, its syntax tree and the paths it reads."""

    source: str
    tree: ast.Expression
    paths: tuple[Path, ...]  # in order of first appearance, without repeats


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Subscript):
        return "a subscript ([...])"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r} (only numbers are allowed)"
    if isinstance(node, ast.Lambda):
        return "a lambda"
    names = {
        ast.BitAnd: "'&' (use 'and')",
        ast.BitOr: "'|' (use 'or')",
        ast.Invert: "'~' (use 'not')",
        ast.In: "'in'",
        ast.NotIn: "'not in'",
        ast.Is: "'is'",
        ast.IsNot: "'is not'",
        ast.FloorDiv: "'//'",
        ast.Mod: "'%'",
        ast.Pow: "'**'",
    }
    return names.get(type(node), type(node).__name__)


def _path(node: ast.expr) -> Path | None:
    """The dotted path a Name/Attribute chain spells, or None if it is something else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


def _validate(node: ast.AST, paths: list[Path]) -> None:  # noqa: PLR0912 - one branch per node type
    if isinstance(node, ast.Expression):
        _validate(node.body, paths)
    elif isinstance(node, ast.Name | ast.Attribute):
        path = _path(node)
        if path is None:
            raise CheckError(f"{_describe(node)} is not allowed; only dotted report paths")
        if path not in paths:
            paths.append(path)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CheckError(f"{_describe(node)} is not allowed")
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _validate(value, paths)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY):
            raise CheckError(f"{_describe(node.op)} is not allowed")
        _validate(node.operand, paths)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise CheckError(f"{_describe(node.op)} is not allowed")
        _validate(node.left, paths)
        _validate(node.right, paths)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise CheckError(f"{_describe(op)} is not allowed")
        _validate(node.left, paths)
        for comparator in node.comparators:
            _validate(comparator, paths)
    else:
        raise CheckError(f"{_describe(node)} is not allowed")


def parse(expr: str) -> Check:
    """Parse and vet a check expression; raises :class:`CheckError` with a clear message."""
    if not isinstance(expr, str):
        raise CheckError(f"expected an expression string, got {expr!r}")
    if not expr.strip():
        raise CheckError("empty expression")
    if len(expr) > _MAX_LENGTH:
        raise CheckError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise CheckError(f"invalid syntax in {expr!r}: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. a NUL character
        raise CheckError(f"invalid expression {expr!r}: {exc}") from None
    paths: list[Path] = []
    try:
        _validate(tree, paths)
    except RecursionError:
        raise CheckError(f"expression {expr!r} is nested too deeply") from None
    return Check(source=expr, tree=tree, paths=tuple(paths))


def names(expr: str | Check) -> set[Path]:
    """The dotted report paths an expression reads, e.g. ``{("queries", "failed")}``."""
    check = expr if isinstance(expr, Check) else parse(expr)
    return set(check.paths)


class _Missing(Exception):  # noqa: N818 - internal signal, never escapes evaluate()
    """A path could not be read from the report as a number."""


def _dotted(path: Path) -> str:
    return ".".join(path)


def _lookup(report: Mapping[str, Any], path: Path) -> Any:
    value: Any = report
    for depth, key in enumerate(path):
        if not isinstance(value, Mapping) or key not in value:
            missing = _dotted(path[: depth + 1])
            raise _Missing(f"{missing} is missing from the report")
        value = value[key]
    if value is None:
        raise _Missing(f"{_dotted(path)} has no value (null)")
    if isinstance(value, Mapping | list | tuple):
        kind = "a table" if isinstance(value, Mapping) else "a list"
        raise _Missing(f"{_dotted(path)} is {kind}, not a number")
    if not isinstance(value, bool | int | float):
        raise _Missing(f"{_dotted(path)} = {value!r} is not a number")
    return value


def _format(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(round(value, 3))
    return repr(value) if isinstance(value, bool | float) else str(value)


class _Evaluator:
    def __init__(self, report: Mapping[str, Any]) -> None:
        self.report = report

    def value(self, node: ast.AST) -> Any:  # noqa: PLR0911, PLR0912 - one branch per node type
        if isinstance(node, ast.Expression):
            return self.value(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            path = _path(node)
            assert path is not None  # parse() vetted the tree
            return _lookup(self.report, path)
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for item in node.values:
                result = self.value(item)
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            if isinstance(node.op, ast.Not):
                return not operand
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            return _BINARY[type(node.op)][1](left, right)
        if isinstance(node, ast.Compare):
            left = self.value(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.value(comparator)
                if not _COMPARE[type(op)][1](left, right):
                    return False
                left = right
            return True
        raise AssertionError(f"unvetted node {type(node).__name__}")  # parse() refuses it


def _bounds(check: Check) -> dict[Path, str]:
    """For ``path OP number`` comparisons (OP other than ==): path -> "OP number"."""
    found: dict[Path, str] = {}
    for node in ast.walk(check.tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            path = _path(node.left)
            right = node.comparators[0]
            op = type(node.ops[0])
            if path is not None and isinstance(right, ast.Constant) and op is not ast.Eq:
                found.setdefault(path, f"{_COMPARE[op][0]} {_format(right.value)}")
    return found


def evaluate(expr: str | Check, report: Mapping[str, Any]) -> tuple[bool, str]:
    """Evaluate a check against a report: (passed, detail). Never raises for report data.

    The detail shows each path's value, e.g. ``"latency_ms.p99 = 31.2 (< 250)"``, or why
    the check could not be evaluated (missing path, null value, division by zero).
    A syntactically invalid ``expr`` string raises :class:`CheckError` as :func:`parse` does.
    """
    check = expr if isinstance(expr, Check) else parse(expr)
    values: dict[Path, Any] = {}
    try:
        for path in check.paths:
            values[path] = _lookup(report, path)
    except _Missing as exc:
        return False, str(exc)
    bounds = _bounds(check)
    shown = ", ".join(
        f"{_dotted(p)} = {_format(v)}" + (f" ({bounds[p]})" if p in bounds else "")
        for p, v in values.items()
    )
    try:
        result = _Evaluator(report).value(check.tree)
    except ZeroDivisionError:
        return False, f"division by zero ({shown})" if shown else "division by zero"
    except (TypeError, OverflowError, ArithmeticError) as exc:
        return False, f"cannot evaluate: {exc} ({shown})"
    return bool(result), shown or f"{check.source.strip()} is {bool(result)}"

"""Check expressions: the allow-listed grammar, the paths they read, and safe evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from ncbsim.errors import ConfigError
from ncbsim.simulations import checks
from ncbsim.simulations.checks import CheckError

REPORT: dict[str, Any] = {
    "queries": {"sent": 80, "answered": 78, "hit": 30, "no_hit": 48, "no_answer": 2, "failed": 0},
    "latency_ms": {"p50": 9.3, "p95": 20.0, "p99": 31.2, "max": 40.0},
    "bureaus": {"FR": {"queries": {"sent": 20, "no_answer": 0}, "latency_ms": {"p50": 8.0}}},
    "kinds": {"document": {"queries": {"sent": 40}, "latency_ms": {"p50": 7.5}}},
    "faults": {
        "cut": {
            "kind": "partition",
            "bureaus": ["IT", "ES"],
            "during": {"sent": 10, "answered": 0, "no_answer": 10},
            "after": {"sent": 12, "answered": 12},
            "recovered_s": None,
        },
        "slow": {"recovered_s": 1.25},
    },
    "explicit": {"first": {"outcome": "hit", "expected": "hit", "passed": True}},
    "startup_s": 4.5,
    "zero": 0,
}


def test_parse_lists_the_dotted_paths_in_order() -> None:
    """parse() keeps the source and every dotted path once, in order of appearance."""
    parsed = checks.parse("queries.failed == 0 and latency_ms.p99 < 250 or queries.failed > 1")
    assert parsed.paths == (("queries", "failed"), ("latency_ms", "p99"))
    assert checks.names("bureaus.FR.queries.no_answer == 0") == {
        ("bureaus", "FR", "queries", "no_answer")
    }


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty expression"),
        ("queries.failed ==", "invalid syntax"),
        ("print(1)", "a function call is not allowed"),
        ("queries.failed.bit_length() == 0", "a function call is not allowed"),
        ("queries['failed'] == 0", "a subscript ([...]) is not allowed"),
        ("queries.failed == 'x'", "the constant 'x' (only numbers are allowed)"),
        ("queries.failed == True", "the constant True"),
        ("queries.failed == None", "the constant None"),
        ("(lambda: 1)() == 1", "is not allowed"),
        ("[x for x in queries]", "ListComp is not allowed"),
        ("queries.failed in (0, 1)", "'in' is not allowed"),
        ("queries.failed is 0", "'is' is not allowed"),
        ("queries.failed ** 2 > 1", "'**' is not allowed"),
        ("queries.failed & 1", "'&' (use 'and') is not allowed"),
        ("__import__('os').system('true')", "a function call is not allowed"),
        ("(1).real == 1", "only dotted report paths"),
        ("x := 1", "invalid syntax"),
        ("queries.sent if 1 else 0", "IfExp is not allowed"),
    ],
)
def test_constructs_outside_the_grammar_are_refused(expr: str, message: str) -> None:
    """Calls, subscripts, strings, lambdas and other constructs raise CheckError at parse."""
    with pytest.raises(CheckError) as info:
        checks.parse(expr)
    assert message in str(info.value)


def test_check_error_is_a_config_value_error() -> None:
    """CheckError is a ConfigError and a ValueError, as the scenario loader expects."""
    assert issubclass(CheckError, ConfigError)
    assert issubclass(CheckError, ValueError)


@pytest.mark.parametrize(
    ("expr", "passed", "detail"),
    [
        ("queries.failed == 0", True, "queries.failed = 0"),
        ("queries.no_answer == 0", False, "queries.no_answer = 2"),
        ("latency_ms.p99 < 250", True, "latency_ms.p99 = 31.2 (< 250)"),
        ("latency_ms.p99 < 30", False, "latency_ms.p99 = 31.2 (< 30)"),
        ("faults.slow.recovered_s <= 2", True, "faults.slow.recovered_s = 1.25 (<= 2)"),
        ("explicit.first.passed", True, "explicit.first.passed = True"),
        ("not explicit.first.passed", False, "explicit.first.passed = True"),
    ],
)
def test_evaluate_gives_the_verdict_and_shows_the_values(
    expr: str, passed: bool, detail: str
) -> None:
    """evaluate() returns pass/fail and a detail with each value read (and its bound)."""
    assert checks.evaluate(expr, REPORT) == (passed, detail)


@pytest.mark.parametrize(
    ("expr", "passed"),
    [
        ("0 <= queries.failed < 1", True),
        ("0 < queries.hit <= queries.sent", True),
        ("0 < queries.failed <= queries.sent", False),
        ("queries.hit < queries.no_hit < queries.answered", True),
        ("queries.hit < queries.answered < queries.no_hit", False),
        ("queries.failed == 0 and latency_ms.p99 < 250", True),
        ("queries.failed == 0 and latency_ms.p99 < 10", False),
        ("queries.failed > 0 or latency_ms.p99 < 250", True),
        ("queries.failed > 0 or latency_ms.p99 < 10", False),
        ("not (queries.failed > 0)", True),
        ("queries.answered / queries.sent >= 0.95", True),
        ("queries.answered / queries.sent >= 0.99", False),
        ("queries.hit + queries.no_hit == queries.answered", True),
        ("queries.sent - queries.answered == queries.no_answer * 1", True),
        ("-latency_ms.p50 < 0", True),
        ("faults.cut.during.answered == 0 and faults.cut.after.answered == 12", True),
        ("bureaus.FR.queries.no_answer == 0", True),
        ("kinds.document.latency_ms.p50 < 5", False),
    ],
)
def test_chained_comparisons_and_boolean_operators(expr: str, passed: bool) -> None:
    """Chains, and/or/not and arithmetic follow Python's meaning."""
    assert checks.evaluate(expr, REPORT)[0] is passed


@pytest.mark.parametrize(
    ("expr", "detail"),
    [
        ("faults.cut.recovered_s < 5", "faults.cut.recovered_s has no value (null)"),
        ("faults.gone.recovered_s < 5", "faults.gone is missing from the report"),
        ("queries.retried == 0", "queries.retried is missing from the report"),
        ("messages.sent == 0", "messages is missing from the report"),
        ("startup_s.max < 5", "startup_s.max is missing from the report"),
        ("queries > 0", "queries is a table, not a number"),
        ("faults.cut.bureaus == 2", "faults.cut.bureaus is a list, not a number"),
        ("explicit.first.outcome == 1", "explicit.first.outcome = 'hit' is not a number"),
        (
            "queries.failed > 1 or faults.cut.recovered_s < 5",
            "faults.cut.recovered_s has no value (null)",
        ),
    ],
)
def test_missing_null_or_non_numeric_values_fail_without_raising(expr: str, detail: str) -> None:
    """A path the report lacks, a null (never recovered) or a table makes the check fail."""
    assert checks.evaluate(expr, REPORT) == (False, detail)


def test_division_by_zero_fails_with_detail() -> None:
    """Dividing by a zero count fails the check instead of raising."""
    passed, detail = checks.evaluate("queries.sent / zero > 1", REPORT)
    assert passed is False
    assert detail == "division by zero (queries.sent = 80, zero = 0)"


def test_expression_of_constants_reports_its_value() -> None:
    """An expression with no paths still evaluates, and its detail says so."""
    assert checks.evaluate("1 < 2", {}) == (True, "1 < 2 is True")


def test_evaluate_accepts_a_parsed_check() -> None:
    """A Check parsed once at load can be evaluated later against the report."""
    parsed = checks.parse("startup_s < 60")
    assert checks.evaluate(parsed, REPORT) == (True, "startup_s = 4.5 (< 60)")
    assert checks.evaluate(parsed, {"startup_s": 75.0}) == (False, "startup_s = 75.0 (< 60)")

"""The SLO gate inside locust: what it judges, with locust's own statistics objects.

Importing locust patches the whole process for gevent, so each case runs the gate
in a child Python process of its own, on a ``RequestStats`` filled by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ncbsim.load import slo

_JUDGE = """
import json, sys
from types import SimpleNamespace
from locust.stats import RequestStats
from ncbsim.load import gate

slo_file, verdict_file, slow_type = sys.argv[1:4]
stats = RequestStats()
for _ in range(200):
    stats.log_request("grpc", "document", 5, 100)
for _ in range(10):  # one slow call per user, of the given request type
    stats.log_request(slow_type, "directory", 500, 100)
environment = SimpleNamespace(
    runner=SimpleNamespace(exceptions={}),
    stats=stats,
    process_exit_code=None,
    parsed_options=SimpleNamespace(slo=slo_file, verdict=verdict_file, plan=""),
)
gate.judge(environment)
print(json.dumps({"exit": environment.process_exit_code}))
"""


def _judge(tmp_path: Path, slow_type: str) -> tuple[int, dict[str, object]]:
    limits = tmp_path / "slo.toml"
    limits.write_text("[overall]\np99_ms = 50\nmax_failure_ratio = 0\n")
    verdict = tmp_path / "verdict.json"
    result = subprocess.run(
        [sys.executable, "-c", _JUDGE, str(limits), str(verdict), slow_type],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    code = json.loads(result.stdout.splitlines()[-1])["exit"]
    return code, json.loads(verdict.read_text())


def test_warm_up_calls_are_reported_but_never_judged(tmp_path: Path) -> None:
    """Ten slow directory fetches at the start cannot set a run's p99 or fail its gate."""
    code, verdict = _judge(tmp_path, slo.WARM_UP)
    assert code == 0
    assert verdict["passed"] is True
    overall = verdict["overall"]
    assert isinstance(overall, dict)
    assert (overall["requests"], overall["p99_ms"]) == (200, 5)
    assert set(verdict["requests"]) == {"document"}  # type: ignore[arg-type]
    warm_up = verdict["warm_up"]
    assert isinstance(warm_up, dict)
    assert (warm_up["directory"]["requests"], warm_up["directory"]["p99_ms"]) == (10, 500)


def test_slow_calls_that_are_not_warm_up_are_judged(tmp_path: Path) -> None:
    """The exclusion is by request type: the same slow calls as checks breach the p99."""
    code, verdict = _judge(tmp_path, "grpc")
    assert code == 1
    overall = verdict["overall"]
    assert isinstance(overall, dict)
    assert (overall["requests"], overall["p99_ms"]) == (210, 500)
    assert verdict["warm_up"] == {}

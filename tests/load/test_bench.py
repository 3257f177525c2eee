"""`ncbsim bench`: its figures and ratios, its options, and a real quick run end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncbsim.cli import build_parser
from ncbsim.errors import ConfigError
from ncbsim.load.bench import QUICK, BenchConfig, config_from_args
from ncbsim.load.bench_report import (
    CRYPTO_OPS,
    Batch,
    crypto_bound_seq,
    crypto_bound_throughput,
    mode_figures,
    ops_per_query,
    overhead,
    percentile,
    summarize,
    summarize_observed,
)

CRYPTO_US = {
    "x25519_keygen": 30.0,
    "hpke_seal": 85.0,
    "ed25519_sign": 25.0,
    "ed25519_verify": 62.0,
    "hpke_open": 47.0,
}


def _batch(side: str, mode: str, round_index: int, latencies: list[float], wall: float) -> Batch:
    cpu = {"client": 0.1 * wall, "relay": 0.2 * wall, "server": 0.3 * wall}
    return Batch(side, mode, round_index, latencies, wall, 0, cpu)


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles follow the linear-interpolation rule, whatever the input order."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 0.99) == pytest.approx(99.01)
    assert percentile([7.5], 0.99) == 7.5
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_crypto_bounds() -> None:
    """The seq bound adds crypto to the floor's latency; the throughput bound to its CPU."""
    assert crypto_bound_seq(1.3, 0.5) == pytest.approx(1.8 / 1.3)
    assert crypto_bound_throughput(1.2, 0.4) == pytest.approx(0.75)


def test_mode_figures_pool_rounds() -> None:
    """Pooled figures: p50 over every call, calls/s over the summed wall time, CPU per call."""
    figures = mode_figures(
        [_batch("floor", "seq", 0, [1.0, 2.0, 3.0], 0.5), _batch("floor", "seq", 1, [4.0], 0.5)]
    )
    assert figures["calls"] == 4
    assert figures["p50_ms"] == pytest.approx(2.5)
    assert figures["calls_per_s"] == pytest.approx(4.0)
    assert figures["p50_ms_per_round"] == [2.0, 4.0]
    assert figures["calls_per_s_per_round"] == [6.0, 2.0]
    assert figures["cpu_ms_per_call"]["total"] == pytest.approx(150.0)
    assert figures["busy_cores"] == pytest.approx(0.6)


def test_summarize_ratios_and_goals() -> None:
    """The ratios are ncbsim ÷ floor of the reported figures, and the goals judge them."""
    batches = []
    for index in range(2):
        batches += [
            _batch("ncbsim", "seq", index, [1.2, 1.2, 1.2], 0.01),
            _batch("ncbsim", "c32", index, [30.0] * 90, 0.1),
            _batch("floor", "seq", index, [1.0, 1.0, 1.0], 0.01),
            _batch("floor", "c32", index, [20.0] * 100, 0.1),
        ]
    report = summarize(
        batches, crypto_us=CRYPTO_US, orders=[("ncbsim", "floor"), ("floor", "ncbsim")]
    )
    assert report["seq_p50_ratio"] == pytest.approx(1.2)
    assert report["c32_throughput_ratio"] == pytest.approx(0.9)
    assert report["c32_p50_ratio"] == pytest.approx(1.5)
    assert report["goals"]["seq_p50_ratio"]["met"] is True
    assert report["goals"]["c32_throughput_ratio"]["met"] is True
    assert report["crypto"]["ms_per_query"] == pytest.approx(0.468)
    assert report["crypto_bound_seq_p50_ratio"] == pytest.approx(1.468)
    assert [r["order"] for r in report["rounds"]] == [["ncbsim", "floor"], ["floor", "ncbsim"]]
    assert report["stability"]["c32_throughput_ratio"] == {"min": 0.9, "median": 0.9, "max": 0.9}


def test_overhead_is_cpu_beyond_floor_and_crypto_per_process() -> None:
    """overhead_ms_per_call: each process's CPU per call less the floor's in the same
    place less the crypto that process does, counted by the client's envelope format."""
    ncb = {"cpu_ms_per_call": {"client": 1.0, "relay": 0.9, "server": 1.2}}
    flo = {"cpu_ms_per_call": {"client": 0.4, "relay": 0.7, "server": 0.5}}
    own = overhead(ncb, flo, CRYPTO_US, protocol=1)
    # client: keygen 30 + seal 85 + sign 25 + verify 62 + open 47 = 249 µs
    assert own["client"] == pytest.approx(1.0 - 0.4 - 0.249, abs=1e-4)
    assert own["gateway"] == pytest.approx(0.2, abs=1e-4)
    # node: verify 62 + open 47 + seal 85 + sign 25 = 219 µs
    assert own["node"] == pytest.approx(1.2 - 0.5 - 0.219, abs=1e-4)
    # Format 2, steady state: AEAD both ways, a signature per 32 requests.
    aead = {**CRYPTO_US, "aead_seal": 4.0, "aead_open": 3.0}
    own2 = overhead(ncb, flo, aead, protocol=2)
    assert own2["client"] == pytest.approx(0.6 - (4.0 + 3.0 + 25.0 / 32) / 1000, abs=1e-4)
    assert own2["node"] == pytest.approx(0.7 - (3.0 + 4.0 + 62.0 / 32) / 1000, abs=1e-4)
    # The per-process tables add up to the per-query counts the bounds use.
    assert ops_per_query(1) == {
        "x25519_keygen": 1,
        "hpke_seal": 2,
        "ed25519_sign": 2,
        "ed25519_verify": 2,
        "hpke_open": 2,
    }
    assert set(CRYPTO_OPS) == {1, 2}
    assert all(not ops["gateway"] for ops in CRYPTO_OPS.values())


def test_summary_judges_overhead_goal_per_process() -> None:
    """goals.overhead_ms_per_call holds one goal per process, judged on the sequential run."""
    batches = []
    for mode, wall in (("seq", 0.01), ("c32", 0.1)):
        for side in ("ncbsim", "floor"):
            batches.append(_batch(side, mode, 0, [1.0] * 10, wall))
    report = summarize(batches, crypto_us=CRYPTO_US, orders=[("ncbsim", "floor")])
    goals = report["goals"]["overhead_ms_per_call"]
    # Same CPU on both sides: the gateway's own cost is 0; client and node go below 0
    # by their crypto.
    assert goals["gateway"] == {"goal": "<= 0.1", "value": 0.0, "met": True}
    assert goals["client"]["value"] == pytest.approx(-0.249, abs=1e-4)
    assert report["crypto"]["ops_per_process"]["node"]["hpke_seal"] == 1


def test_crypto_costs_time_each_named_operation() -> None:
    """The crypto timings cover the operations asked for, format 2's AEAD included."""
    from ncbsim.load.bench_measure import crypto_costs
    from ncbsim.v2 import envelope_pb2

    request = envelope_pb2.Envelope(header=b"h" * 80, sealed=b"s" * 400, signature=b"g" * 64)
    costs = crypto_costs(request, 3, ops_per_query(2))
    assert set(costs) == {"aead_seal", "aead_open", "ed25519_sign", "ed25519_verify"}
    assert all(us > 0 for us in costs.values())
    with pytest.raises(ValueError, match="no timing"):
        crypto_costs(request, 1, ["rot13"])


def test_options_override_the_preset() -> None:
    """--quick picks the quick preset; explicit options override either preset."""
    parser = build_parser()
    quick = config_from_args(parser.parse_args(["bench", "--quick", "--rounds", "3"]))
    assert quick == dataclasses.replace(QUICK, rounds=3)
    full = config_from_args(parser.parse_args(["bench", "--concurrency", "8", "--hit-ratio", "0"]))
    assert (full.concurrency, full.hit_ratio, full.rounds) == (8, 0.0, BenchConfig().rounds)
    assert full.suite == "classic"
    hybrid = config_from_args(parser.parse_args(["bench", "--quick", "--suite", "hybrid"]))
    assert hybrid.suite == "hybrid"


@pytest.mark.parametrize(
    "options",
    [
        {"rounds": 0},
        {"hit_ratio": 1.5},
        {"c32_calls": 4, "concurrency": 8},
        {"documents": 1},
        {"suite": "rot13"},
    ],
)
def test_config_rejects_bad_values(options: dict[str, object]) -> None:
    """Impossible settings are refused before anything starts."""
    with pytest.raises(ConfigError):
        BenchConfig(**options)  # type: ignore[arg-type]


def _cmdlines_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.integration
@pytest.mark.load
def test_quick_bench_prints_one_json_object_and_leaves_nothing(tmp_path: Path) -> None:
    """`bench --json --quick` measures both sides fully and cleans up its processes and files."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "ncbsim", "bench", "--json", "--quick"],
        capture_output=True,
        text=True,
        timeout=240,  # a bound on a hang, not on speed: a busy machine takes longer
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # the whole of stdout is one JSON object

    ncb, flo = report["ncbsim"], report["floor"]
    assert report["seq_p50_ratio"] == pytest.approx(
        ncb["seq"]["p50_ms"] / flo["seq"]["p50_ms"], rel=1e-3
    )
    assert report["c32_throughput_ratio"] == pytest.approx(
        ncb["c32"]["calls_per_s"] / flo["c32"]["calls_per_s"], rel=1e-3
    )
    params = report["parameters"]
    assert params["quick"] is True
    assert params["rounds"] == QUICK.rounds
    for side in (ncb, flo):
        assert side["seq"]["calls"] == params["rounds"] * params["seq_calls"]
        assert side["c32"]["calls"] == params["rounds"] * params["c32_calls"]
        assert side["seq"]["failures"] == side["c32"]["failures"] == 0
    # Real lookups: some queries hit DE's records, the rest do not, none fail.
    assert set(ncb["outcomes"]) == {"hit", "no_hit"}
    assert sum(ncb["outcomes"].values()) == ncb["seq"]["calls"] + ncb["c32"]["calls"]
    # Both sides carry envelopes of the same size: within a few bytes, since the floor
    # carries a session request's checkpoint bytes (about one request in 32 has one) in
    # every envelope's signature field, with that field's own tag and length.
    payload = report["payload"]
    for key in ("request_bytes", "response_bytes"):
        assert abs(payload["ncbsim"][key] - payload["floor"][key]) <= 4
    assert [r["order"] for r in report["rounds"]] == [["ncbsim", "floor"], ["floor", "ncbsim"]]
    assert report["crypto_bound_seq_p50_ratio"] > 1 > report["crypto_bound_c32_throughput_ratio"]
    assert set(report["goals"]) == {"seq_p50_ratio", "c32_throughput_ratio", "overhead_ms_per_call"}
    assert report["protocol"] == 2
    for mode in ("seq", "c32"):
        own, cpu, floor = report["overhead_ms_per_call"][mode], ncb[mode], flo[mode]
        assert set(own) == {"client", "gateway", "node"}
        # The gateway does no crypto: its own cost is all its CPU beyond the relay's.
        assert own["gateway"] == pytest.approx(
            cpu["cpu_ms_per_call"]["relay"] - floor["cpu_ms_per_call"]["relay"], abs=1e-3
        )

    assert _cmdlines_mentioning(str(tmp_path)) == []
    assert list(tmp_path.glob("ncbsim-bench-*")) == []


def test_observed_figures_are_ratios_to_plain_ncbsim() -> None:
    """--observe: the observed side's p50 and throughput over plain ncbsim's, with the
    events read and dropped; the option sets the config."""
    batches = [
        _batch("ncbsim", "seq", 0, [2.0, 4.0, 4.0], 0.010),
        _batch("ncbsim", "c32", 0, [40.0] * 32, 0.050),
        _batch("observed", "seq", 0, [3.0, 5.0, 5.0], 0.012),
        _batch("observed", "c32", 0, [44.0] * 32, 0.064),
    ]
    plain = {"seq": mode_figures(batches[:1]), "c32": mode_figures(batches[1:2])}
    observed = summarize_observed(batches, plain, events=1000, dropped=0)
    assert observed["seq_p50_ratio"] == pytest.approx(5.0 / 4.0)
    assert observed["c32_p50_ratio"] == pytest.approx(44.0 / 40.0)
    assert observed["c32_throughput_ratio"] == pytest.approx(500 / 640, abs=1e-3)
    assert observed["seq_throughput_ratio"] == pytest.approx(250 / 300, abs=1e-3)
    assert (observed["events"], observed["dropped"]) == (1000, 0)
    assert observed["seq"]["calls"] == 3
    parser = build_parser()
    assert config_from_args(parser.parse_args(["bench", "--quick", "--observe"])).observe
    assert not config_from_args(parser.parse_args(["bench", "--quick"])).observe

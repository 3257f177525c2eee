"""Gateway input limits (gateway/limits.py): the rate limiter with a fake clock, its TOML
overrides, the size checks and the config. The statuses and audit rows the gateway answers
with are tested in test_relay.py and test_control.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from gateway_support import FakeClock, fake_limiter, query_request

from ncbsim import envelope, pki, transport
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.gateway.config import GatewayConfig
from ncbsim.gateway.limits import (
    DAY_MS,
    BureauLimit,
    LimitExceeded,
    RateLimiter,
    check_size,
    load_overrides,
    wrapped_size,
)
from ncbsim.workdir import GatewayFiles

# 2026-11-27 23:59:58.500 UTC: a day boundary 1.5 s away.
NEAR_MIDNIGHT_MS = int(datetime(2026, 11, 27, 23, 59, 58, 500_000, tzinfo=UTC).timestamp() * 1000)


def _refusal(limiter: RateLimiter, bureau: str, count: int = 1) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        limiter.take(bureau, count)
    return caught.value


# ----------------------------------------------------------------------------- token bucket


def test_a_full_bucket_serves_the_burst_then_says_when_to_retry() -> None:
    """`burst` envelopes pass at once; the next is refused with the wait for one token."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=10.0, burst=5)
    for _ in range(5):
        limiter.take("FR")
    refused = _refusal(limiter, "FR")
    assert refused.retry_after_ms == 100  # one token at 10/s
    assert str(refused) == "rate limit for FR: retry after 100 ms"
    assert refused.trailing_metadata() == (
        ("retry-after-ms", "100"),
        ("grpc-retry-pushback-ms", "100"),
    )


def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    """After the advertised wait one more passes; a long idle time refills only `burst`."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=10.0, burst=5)
    for _ in range(5):
        limiter.take("FR")
    wait_ms = _refusal(limiter, "FR").retry_after_ms
    assert wait_ms is not None
    clock.advance(wait_ms / 1000 / 2)
    assert _refusal(limiter, "FR").retry_after_ms == wait_ms // 2  # half a token back
    clock.advance(wait_ms / 1000 / 2)
    limiter.take("FR")
    clock.advance(3600)  # an hour idle
    for _ in range(5):
        limiter.take("FR")
    _refusal(limiter, "FR")


def test_a_refused_call_counts_nothing() -> None:
    """A MultiQuery of 4 with 3 tokens left is refused whole; 3 single envelopes then pass."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=1.0, burst=5)
    limiter.take("FR", 2)
    refused = _refusal(limiter, "FR", 4)
    assert refused.retry_after_ms == 1000  # one token short at 1/s
    for _ in range(3):
        limiter.take("FR")
    _refusal(limiter, "FR")


def test_a_multi_query_counts_one_per_envelope() -> None:
    """Five envelopes in one call take five tokens and five of the daily quota."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=1.0, burst=5, quota=7)
    limiter.take("FR", 5)
    _refusal(limiter, "FR")
    clock.advance(2)  # two tokens back
    limiter.take("FR", 2)
    clock.advance(60)
    refused = _refusal(limiter, "FR")
    assert str(refused).startswith("daily quota of 7 queries for FR used")


def test_a_call_larger_than_the_burst_is_never_retried() -> None:
    """More envelopes in one call than the burst can never fit: pushback -1, no retry-after."""
    clock = FakeClock()
    limiter = fake_limiter(clock, burst=5)
    refused = _refusal(limiter, "FR", 6)
    assert refused.retry_after_ms is None
    assert refused.trailing_metadata() == (("grpc-retry-pushback-ms", "-1"),)
    limiter.take("FR", 5)  # and it took nothing


def test_the_bucket_ignores_wall_clock_steps() -> None:
    """Setting the wall clock forward a day refills no tokens (the bucket is monotonic)."""
    clock = FakeClock()
    limiter = fake_limiter(clock, rate=1.0, burst=2)
    limiter.take("FR", 2)
    clock.wall += DAY_MS
    _refusal(limiter, "FR")


# ----------------------------------------------------------------------------- daily quota


def test_the_daily_quota_says_when_it_resets_and_resets_at_utc_midnight() -> None:
    """Quota used: refused until 00:00 UTC, with the time left; at midnight it counts anew."""
    clock = FakeClock(NEAR_MIDNIGHT_MS)
    limiter = fake_limiter(clock, rate=1_000.0, burst=100, quota=3)
    limiter.take("FR", 3)
    refused = _refusal(limiter, "FR")
    assert refused.retry_after_ms == 1_500
    assert str(refused) == (
        "daily quota of 3 queries for FR used; resets 2026-11-28T00:00:00Z (retry after 2 s)"
    )
    clock.advance(1.499)
    _refusal(limiter, "FR")
    clock.advance(0.001)  # 00:00:00.000 UTC
    limiter.take("FR", 3)
    _refusal(limiter, "FR")


def test_the_quota_names_what_is_left_when_a_call_does_not_fit() -> None:
    """Two left and three asked: refused whole, the detail says both; the two still pass."""
    clock = FakeClock()
    limiter = fake_limiter(clock, burst=10, quota=5)
    limiter.take("FR", 3)
    refused = _refusal(limiter, "FR", 3)
    assert "has 2 left, 3 asked" in str(refused)
    assert refused.retry_after_ms == DAY_MS // 2  # noon to midnight
    limiter.take("FR", 2)


def test_a_wall_clock_stepped_back_does_not_restore_the_quota() -> None:
    """Quota used at 00:00:01; the clock goes back to the day before: still refused."""
    clock = FakeClock(NEAR_MIDNIGHT_MS + 2_500)
    limiter = fake_limiter(clock, burst=10, quota=2)
    limiter.take("FR", 2)
    clock.wall -= 10_000
    _refusal(limiter, "FR")


# ----------------------------------------------------------------------------- per bureau


def test_bureaus_are_limited_separately_and_overrides_apply_to_theirs() -> None:
    """FR's override is tight and used up; DE, on the defaults, is served all along."""
    clock = FakeClock()
    tight = BureauLimit(rate_per_s=1.0, burst=2, daily_quota=100)
    limiter = fake_limiter(clock, rate=100.0, burst=50, overrides={"FR": tight})
    assert limiter.limit("FR") == tight
    assert limiter.limit("DE").burst == 50
    limiter.take("FR", 2)
    _refusal(limiter, "FR")
    limiter.take("DE", 50)
    _refusal(limiter, "DE")
    assert _refusal(limiter, "FR").retry_after_ms == 1000


@pytest.mark.parametrize(
    "fields",
    [
        {"rate_per_s": 0.0},
        {"rate_per_s": float("nan")},
        {"rate_per_s": float("inf")},
        {"burst": 0},
        {"daily_quota": 0},
    ],
)
def test_a_limit_must_be_positive(fields: dict[str, float]) -> None:
    """Zero, NaN or infinite rates, an empty burst or quota are configuration errors."""
    values: dict[str, float] = {"rate_per_s": 1.0, "burst": 1, "daily_quota": 1, **fields}
    with pytest.raises(ConfigError):
        BureauLimit(**values)  # type: ignore[arg-type]


def test_check_size_refuses_above_the_maximum_only() -> None:
    """A request of exactly the maximum passes; one byte more is refused, never to retry."""
    check_size(4096, 4096)
    with pytest.raises(LimitExceeded) as caught:
        check_size(4097, 4096)
    assert caught.value.retry_after_ms is None
    assert "4097" in str(caught.value)
    assert "4096" in str(caught.value)


# ----------------------------------------------------------------------------- TOML overrides

DEFAULT = BureauLimit(rate_per_s=1000.0, burst=2000, daily_quota=10_000_000)


def test_overrides_file_sets_only_the_keys_it_names(tmp_path: Path) -> None:
    """Keys left out of a bureau's table keep the gateway-wide value."""
    path = tmp_path / "limits.toml"
    path.write_text(
        "[bureaus.FR]\nrate = 2.5\nburst = 10\ndaily_quota = 500\n\n[bureaus.DE]\ndaily_quota = 7\n"
    )
    assert load_overrides(path, DEFAULT) == {
        "FR": BureauLimit(rate_per_s=2.5, burst=10, daily_quota=500),
        "DE": BureauLimit(rate_per_s=1000.0, burst=2000, daily_quota=7),
    }


def test_an_empty_overrides_file_overrides_nothing(tmp_path: Path) -> None:
    """A file with no [bureaus] tables is valid and changes no limit."""
    path = tmp_path / "limits.toml"
    path.write_text("# nothing yet\n")
    assert load_overrides(path, DEFAULT) == {}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[bureaus.FR\nrate = 1\n", "not valid TOML"),
        ("[defaults]\nrate = 1\n", "defaults"),
        ("bureaus = 3\n", "bureaus"),
        ("[bureaus.fr]\nrate = 1\n", "bureaus.fr"),
        ("[bureaus.FRA]\nrate = 1\n", "bureaus.FRA"),
        ("[bureaus]\nFR = 5\n", "bureaus.FR"),
        ("[bureaus.FR]\nrates = 1\n", "bureaus.FR.rates"),
        ('[bureaus.FR]\nrate = "fast"\n', "bureaus.FR.rate"),
        ("[bureaus.FR]\nburst = true\n", "bureaus.FR.burst"),
        ("[bureaus.FR]\nburst = 2.5\n", "bureaus.FR.burst"),
        ("[bureaus.FR]\ndaily_quota = 0\n", "bureaus.FR"),
        ("[bureaus.FR]\nrate = -1\n", "bureaus.FR"),
        ("[bureaus.FR]\nrate = nan\n", "bureaus.FR"),
    ],
)
def test_a_bad_overrides_file_names_the_file_and_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    """Every mistake is one ConfigError that names the file and where in it."""
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_overrides(path, DEFAULT)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert named in message


def test_a_missing_overrides_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that cannot be read is named, without a traceback-worthy exception."""
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_overrides(path, DEFAULT)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "fields",
    [
        {"max_envelope_bytes": 0},
        {"max_envelope_bytes": transport.MAX_MESSAGE_BYTES + 1},
        {"rate_per_s": 0.0},
        {"burst": 0},
        {"daily_quota": 0},
        {"mailbox_retention_h": -1.0},
        {"mailbox_retention_h": float("nan")},
    ],
)
def test_gateway_config_refuses_bad_limits(tmp_path: Path, fields: dict[str, float]) -> None:
    """An envelope maximum outside 1..4 MiB, a non-positive limit, or a negative or NaN
    retention, is refused."""
    with pytest.raises(ConfigError):
        GatewayConfig(
            pki=pki.PkiDir(tmp_path), files=GatewayFiles.beside(tmp_path / "a.sqlite"), **fields
        )  # type: ignore[arg-type]


def test_gateway_config_refuses_an_override_for_a_non_code(tmp_path: Path) -> None:
    """Overrides are keyed by bureau code."""
    limit = BureauLimit(rate_per_s=1.0, burst=1, daily_quota=1)
    with pytest.raises(NcbsimError):
        GatewayConfig(
            pki=pki.PkiDir(tmp_path),
            files=GatewayFiles.beside(tmp_path / "a.sqlite"),
            bureau_limits={"fr": limit},
        )


def test_default_limits_leave_room_for_load_and_bench(tmp_path: Path) -> None:
    """`ncbsim load` (10 bureaus x ~10/s) and `ncbsim bench` (one bureau as fast as the
    plain relay's 1,230 calls/s at most) are never limited by the defaults."""
    config = GatewayConfig(
        pki=pki.PkiDir(tmp_path), files=GatewayFiles.beside(tmp_path / "a.sqlite")
    )
    floor_calls_per_s = 1_230  # the plain relay: ncbsim's gateway does not exceed it
    bench_goal_calls_per_s = 1_000  # 0.8 x the floor, rounded up
    assert config.rate_per_s >= 5 * floor_calls_per_s
    assert config.burst >= 10 * floor_calls_per_s
    assert config.daily_quota >= bench_goal_calls_per_s * 86_400  # a whole day of bench
    assert config.max_envelope_bytes >= 16 * 250  # a query envelope is about 250 bytes


# ----------------------------------------------------------------------------- framing


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 1_000_000])
def test_wrapped_size_reads_the_envelope_size_protobuf_wrote(size: int) -> None:
    """For a serialized QueryRequest, wrapped_size is its envelope's size, whatever the
    length of the varint that frames it."""
    item = envelope.Envelope(sealed=b"s" * size) if size else envelope.Envelope()
    assert wrapped_size(query_request(item)) == item.ByteSize()


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x0a", b"\x0a\x05abc", b"\x0a\x02abc", b"\x12\x01a", b"\x0a" + b"\xff" * 11],
    ids=["empty", "tag-only", "short", "long", "other-field", "endless-varint"],
)
def test_wrapped_size_is_none_for_anything_but_one_framed_envelope(raw: bytes) -> None:
    """Bytes that are not exactly one field-1 envelope have no wrapped size."""
    assert wrapped_size(raw) is None

"""The classroom-mode gateway's pure parts (ncbsim.gateway.attacks): the mode file is read
strictly and anything malformed means honest (logged once); tampering flips exactly one
bit; its files sit beside the mode file; and it is reachable only through
``ncbsim gateway --classroom-attacks``, whose help says it is for the classroom only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ncbsim import envelope
from ncbsim.gateway.attacks import MODES, Mode, ModeError, ModeFile, attack_files
from ncbsim.gateway.attacks.modes import flip, tamper
from ncbsim.gateway.config import GatewayConfig
from ncbsim.pki import PkiDir
from ncbsim.workdir import GatewayFiles, Workdir


def test_a_mode_file_is_read_field_by_field() -> None:
    """Every field of the mode format lands in Mode (``as`` as ``as_``)."""
    mode = Mode.parse(
        json.dumps(
            {
                "mode": "reroute",
                "variant": "forward",
                "target": "DE",
                "to": "NL",
                "sender": "FR",
                "as": "ES",
                "swap": {"bureau": "DE", "how": "altered"},
                "leaked": True,
            }
        )
    )
    assert (mode.name, mode.variant, mode.target, mode.to, mode.sender, mode.as_) == (
        "reroute",
        "forward",
        "DE",
        "NL",
        "FR",
        "ES",
    )
    assert mode.swap == {"bureau": "DE", "how": "altered"}
    assert mode.leaked
    assert not mode.withhold_revocations


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{nope", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"mode": "melt-down"}', "unknown mode 'melt-down'"),
        ('{"mode": "swap-key", "swap": 3}', "swap is not an object"),
    ],
)
def test_a_malformed_mode_file_is_refused(text: str, problem: str) -> None:
    """Anything but a JSON object of a known mode is a ModeError saying what is wrong."""
    with pytest.raises(ModeError, match=problem):
        Mode.parse(text)


def test_an_absent_file_or_none_is_honest(tmp_path: Path) -> None:
    """No mode file (the normal state) means honest, without a word in the log."""
    with capture_logs() as logs:
        assert ModeFile(tmp_path / "attack.json").read() == Mode()
        assert ModeFile(None).read().name == "honest"
    assert logs == []


def test_a_malformed_file_means_honest_and_is_logged_once(tmp_path: Path) -> None:
    """Read on every call, a malformed file gives honest each time and one warning per
    distinct problem; a good file then applies at once."""
    path = tmp_path / "attack.json"
    path.write_text("{broken")
    modes = ModeFile(path)
    with capture_logs() as logs:
        assert [modes.read().name for _ in range(3)] == ["honest"] * 3
        path.write_text(json.dumps({"mode": "drop", "target": "DE", "variant": "hang"}))
        assert modes.read().name == "drop"
    warnings = [e for e in logs if e["event"] == "attack_mode_ignored"]
    assert len(warnings) == 1
    assert warnings[0]["problem"].startswith("not JSON")
    assert warnings[0]["log_level"] == "warning"


def test_every_mode_the_suite_uses_is_known() -> None:
    """The modes the security suite and the classroom set are all known names."""
    assert {
        "honest",
        "swap-key",
        "alter-request",
        "alter-response",
        "replay-request",
        "replay-response",
        "reroute",
        "forge",
        "forge-request",
        "drop",
        "mix-deliveries",
        "hide-route",
    } == MODES


@pytest.mark.parametrize("variant", ["body", "header", "signature"])
def test_tampering_flips_exactly_one_bit_where_asked(variant: str) -> None:
    """A tampered envelope differs from the original by one bit, in the part named."""
    from ncbsim.v2 import envelope_pb2

    header = envelope_pb2.Header(correlation_id=b"\x11" * 16, sender="FR").SerializeToString()
    item = envelope.Envelope(header=header, sealed=b"\x00" * 40, signature=b"\x22" * 64)
    out = tamper(item, variant)
    parts = {"header": (item.header, out.header), "body": (item.sealed, out.sealed)}
    parts["signature"] = (item.signature, out.signature)
    for name, (before, after) in parts.items():
        bits = sum(bin(a ^ b).count("1") for a, b in zip(before, after, strict=True))
        assert bits == (1 if name == variant else 0), name
    with pytest.raises(ValueError, match="unknown variant"):
        tamper(item, "everything")
    assert flip(b"\x00\x00", 3) == b"\x00\x01"


def test_tampering_a_format_2_authenticator_flips_the_aead_tag() -> None:
    """A format-2 request or response has no signature: ``signature`` flips the last bit
    of ``sealed`` (its AEAD tag) instead, and nothing else."""
    item = envelope.Envelope(header=b"\x08\x02", sealed=b"\x00" * 40)
    out = tamper(item, "signature")
    assert (out.header, out.signature) == (item.header, b"")
    assert out.sealed == b"\x00" * 39 + b"\x01"


def test_its_files_are_the_work_directory_s() -> None:
    """Beside WORKDIR/gateway/attack.json: the attack record and the capture file that
    Workdir names (and docs/files.md lists)."""
    wd = Workdir(Path("/net"))
    assert attack_files(wd.gateway.attack_mode) == (
        wd.gateway.attack_events,
        wd.gateway.attack_capture,
    )


def test_a_gateway_config_is_honest_by_default(tmp_path: Path) -> None:
    """GatewayConfig names no mode file unless told: the honest gateway."""
    config = GatewayConfig(pki=PkiDir(tmp_path), files=GatewayFiles.beside(tmp_path / "a.sqlite"))
    assert config.classroom_attacks is None


def test_the_flag_is_documented_for_the_classroom_only() -> None:
    """`ncbsim gateway --help` names the flag and says it is for `ncbsim classroom` only."""
    out = subprocess.run(
        [sys.executable, "-m", "ncbsim", "gateway", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": ""},
    ).stdout
    assert "--classroom-attacks FILE" in out
    assert "for `ncbsim classroom` only" in " ".join(out.split())


def test_nothing_of_the_attacks_is_imported_without_the_flag() -> None:
    """The gateway's server, its CLI and the network code load without gateway.attacks."""
    code = (
        "import sys, ncbsim.gateway.server, ncbsim.cli, ncbsim.simulations.network; "
        "from ncbsim.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if 'attacks' in m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"

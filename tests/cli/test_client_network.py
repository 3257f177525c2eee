"""Where a client command finds its network: ``--workdir``, or ``--gateway`` and ``--pki``;
anything else is one line on stderr, exit 2, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncbsim import pki
from ncbsim.cli import main

QUERY = ["query", "--as", "FR", "--to", "DE", "document", "--number", "X1", "--issuer", "FR"]
EITHER = (
    "ncbsim: give --workdir of `ncbsim up`, or --gateway HOST:PORT and --pki DIR of a "
    "network run elsewhere"
)


@pytest.fixture(scope="module")
def pki_root(module_pki: pki.PkiDir) -> Path:
    """A PKI folder as `pki init` writes it; no gateway runs."""
    return module_pki.root


def _refused(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """Run ``ncbsim ARGS`` in-process; assert exit 2 and one stderr line, return it."""
    assert main([str(a) for a in args]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ([], EITHER),
        (["--gateway", "127.0.0.1:7600"], EITHER),
        (["--pki", "PKI"], EITHER),
        (
            ["--workdir", "PKI", "--gateway", "127.0.0.1:7600"],
            "ncbsim: give --workdir, or --gateway and --pki, not both",
        ),
        (
            ["--workdir", "PKI", "--pki", "PKI", "--gateway", "127.0.0.1:7600"],
            "ncbsim: give --workdir, or --gateway and --pki, not both",
        ),
        (
            ["--pki", "PKI", "--gateway", "gateway"],
            "ncbsim: --gateway: not a host:port address: 'gateway'",
        ),
    ],
)
def test_query_needs_exactly_one_way_to_the_network(
    capsys: pytest.CaptureFixture[str], pki_root: Path, where: list[str], expected: str
) -> None:
    """No way, half a way, or both ways to the network: one line saying what to give."""
    where = [str(pki_root) if w == "PKI" else w for w in where]
    assert _refused(capsys, *QUERY[:1], *where, *QUERY[1:]) == expected


def test_a_pki_folder_without_a_pki_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--pki naming a folder with no ca.crt says so."""
    line = _refused(capsys, "query", "--gateway", "127.0.0.1:7600", "--pki", tmp_path, *QUERY[1:])
    assert line == f"ncbsim: --pki {tmp_path}: no PKI there (no ca.crt)"


@pytest.mark.parametrize(
    "command",
    [
        ["message", "send", "--as", "FR", "--to", "DE", "--text", "hi"],
        ["receipts", "--as", "FR"],
        ["diffuse", "--as", "FR", "--to", "DE", "--subject", "s", "--text", "t"],
    ],
)
def test_the_messaging_commands_take_the_same_options(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """message send, receipts and diffuse refuse a missing way to the network alike."""
    assert _refused(capsys, *command) == EITHER


def test_inbox_still_needs_its_workdir(capsys: pytest.CaptureFixture[str]) -> None:
    """inbox reads the node's own database, so it keeps --workdir (required by argparse)."""
    with pytest.raises(SystemExit) as exited:
        main(["inbox", "--as", "FR", "--gateway", "127.0.0.1:7600"])
    assert exited.value.code == 2
    assert "--workdir" in capsys.readouterr().err

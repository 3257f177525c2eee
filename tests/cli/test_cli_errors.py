"""A user's mistake with `pki init`, `node` or `gateway` ends in one line that says what
to do: `ncbsim: ...` on stderr, exit 2, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncbsim import pki

HINT = "pass --listen HOST:PORT (port 0 picks a free one)"


def _ncbsim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (asserting exit 2 and nothing else)."""
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ncbsim: ")
    return lines[0]


@pytest.fixture(scope="module")
def pki_root(module_pki: pki.PkiDir) -> Path:
    """The folder of a PKI for FR, DE and IT, as `pki init` writes it; no gateway runs."""
    return module_pki.root


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_node_for_a_bureau_the_pki_lacks_says_what_it_holds(pki_root: Path) -> None:
    """`node --bureau ES` on a PKI of FR, DE and IT names the PKI's bureaus and how to get
    one with ES (there is no command to add it), instead of an sqlite3 traceback."""
    line = _one_line(
        _ncbsim("node", "--dir", pki_root, "--bureau", "ES", "--gateway", "127.0.0.1:9")
    )
    assert line == (
        f"ncbsim: ES is not in the PKI at {pki_root} (it holds DE, FR, IT); no `ncbsim pki` "
        "command adds a bureau to an existing PKI; create a new one with "
        "`ncbsim pki init --dir NEWDIR --bureaus DE,ES,FR,IT`"
    )
    assert not (pki_root / "bureaus" / "ES").exists()


def test_node_for_a_code_no_country_has(pki_root: Path) -> None:
    """`node --bureau XX` says XX is no country code, instead of an UnknownCountry traceback."""
    line = _one_line(
        _ncbsim("node", "--dir", pki_root, "--bureau", "XX", "--gateway", "127.0.0.1:9")
    )
    assert line == "ncbsim: XX is not an ISO 3166 country code"


def test_node_without_a_gateway_says_how_to_start_one(pki_root: Path) -> None:
    """`node` on a fresh PKI with no gateway running advises `ncbsim gateway --dir` or
    `--gateway`, not `ncbsim up` (which would make a network of its own)."""
    line = _one_line(_ncbsim("node", "--dir", pki_root, "--bureau", "FR"))
    assert line == (
        f"ncbsim: no running gateway found in {pki_root}; start one with "
        f"`ncbsim gateway --dir {pki_root}`, or pass --gateway HOST:PORT"
    )


@pytest.mark.parametrize(
    ("bureaus", "message"),
    [
        ("FR,XX", "XX is not an ISO 3166 country code"),
        ("FR,XX,QQ", "XX, QQ are not ISO 3166 country codes"),
        ("FR,DE,FR", "FR listed more than once"),
        (",", "no bureau codes given; a PKI needs at least one bureau, e.g. FR,DE,IT"),
    ],
)
def test_pki_init_refuses_what_a_scenario_refuses(
    tmp_path: Path, bureaus: str, message: str
) -> None:
    """`pki init` refuses codes no country has, a repeated code and an empty list, as
    scenario files do, and writes nothing."""
    line = _one_line(_ncbsim("pki", "init", "--dir", tmp_path / "p", "--bureaus", bureaus))
    assert line == f"ncbsim: {message}"
    assert not (tmp_path / "p").exists()


def test_pki_init_refuses_an_unknown_suite(tmp_path: Path) -> None:
    """`pki init --suite` takes classic or hybrid; anything else is one line, nothing
    written."""
    out = _ncbsim("pki", "init", "--dir", tmp_path / "p", "--bureaus", "FR", "--suite", "pq")
    assert _one_line(out) == "ncbsim: unknown suite 'pq'; choose classic or hybrid"
    assert not (tmp_path / "p").exists()


def test_pki_init_accepts_the_general_secretariat_and_kosovo(tmp_path: Path) -> None:
    """GS (the General Secretariat) and XK (Kosovo) are bureau codes, as in scenarios."""
    out = _ncbsim("pki", "init", "--dir", tmp_path / "p", "--bureaus", "FR,GS,XK")
    assert out.returncode == 0, out.stderr
    assert pki.PkiDir(tmp_path / "p").bureaus() == ["FR", "GS", "XK"]


def test_gateway_on_a_busy_port_says_so_in_one_line(pki_root: Path, busy_port: int) -> None:
    """A gateway whose port is taken prints only the reason and the option to change, not
    gRPC's internal add_port.cc log line."""
    out = _ncbsim("gateway", "--dir", pki_root, "--listen", f"127.0.0.1:{busy_port}")
    assert _one_line(out) == f"ncbsim: 127.0.0.1:{busy_port}: address in use; {HINT}"


def test_node_on_a_busy_port_says_so_in_one_line(pki_root: Path, busy_port: int) -> None:
    """A node whose --listen port is taken says so in one line, before making records."""
    db = pki_root.parent / "busy-fr.sqlite"
    out = _ncbsim(
        "node", "--dir", pki_root, "--bureau", "FR", "--gateway", "127.0.0.1:9",
        "--listen", f"127.0.0.1:{busy_port}", "--db", db,
    )  # fmt: skip
    assert _one_line(out) == f"ncbsim: 127.0.0.1:{busy_port}: address in use; {HINT}"
    assert not db.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FR/cdg-border-12", "--as FR/cdg-border-12: this command acts as a bureau; give FR"),
        ("fr/x", "--as FR/x: this command acts as a bureau; give FR"),
        ("F1", "--as: not a bureau or user: 'F1' (write FR or FR/cdg-border-12)"),
    ],
)
def test_a_bureau_only_command_refuses_a_user_in_one_line(
    pki_root: Path, value: str, expected: str
) -> None:
    """A command that acts as a bureau (here: setting a record's controls) says so when
    `--as` names one of its users, before it reads anything of the bureau's."""
    out = _ncbsim(
        "record", "restrict", "--workdir", pki_root, "--as", value, "--ref", "R", "--notify"
    )
    assert _one_line(out) == f"ncbsim: {expected}"

"""The command-line contract: every documented command exists and explains itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ncbsim.cli import build_parser

COMMANDS = [
    ["pki", "init"],
    ["gateway"],
    ["node"],
    ["up"],
    ["down"],
    ["query"],
    ["query", "document"],
    ["query", "person"],
    ["query", "vehicle"],
    ["query", "fetch"],
    ["simulate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_accepts_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`ncbsim COMMAND --help` prints usage for that command and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert f"ncbsim {' '.join(command)}" in capsys.readouterr().out


def test_documented_query_form_parses() -> None:
    """The exact query form from the README parses into the expected fields."""
    args = build_parser().parse_args(
        [
            "query",
            "--workdir",
            "w",
            "--as",
            "fr",
            "--to",
            "de,it",
            "document",
            "--number",
            "N1",
            "--issuer",
            "de",
        ]
    )
    assert (args.as_bureau, args.to, args.kind, args.number, args.issuer) == (
        "FR",
        "DE,IT",
        "document",
        "N1",
        "DE",
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_output_options_work_before_or_after_the_kind(where: str) -> None:
    """`--json --fetch --timeout` may follow the record kind, as in the documented form."""
    options = ["--json", "--fetch", "--timeout", "2"]
    head = ["query", "--workdir", "w", "--as", "FR", "--to", "DE"]
    kind = ["person", "--surname", "Voisin", "--dob", "2005-12-09"]
    argv = [*head, *options, *kind] if where == "before" else [*head, *kind, *options]
    args = build_parser().parse_args(argv)
    assert (args.json, args.fetch, args.timeout) == (True, True, 2.0)


def test_output_options_default_off() -> None:
    """Without output options a query prints for humans, runs no step 2, waits 5 s."""
    args = build_parser().parse_args(
        ["query", "--workdir", "w", "--as", "FR", "--to", "DE", "fetch", "--ref", "R"]
    )
    assert (args.json, args.fetch, args.timeout) == (False, False, 5.0)


def test_pki_init_from_the_console_script(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`python -m ncbsim pki init` writes a PKI with one directory entry per bureau."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncbsim",
            "pki",
            "init",
            "--dir",
            str(tmp_path / "p"),
            "--bureaus",
            "FR,DE,NG",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "p" / "directory").iterdir()) == [
        "DE.entry",
        "FR.entry",
        "NG.entry",
    ]


def test_bad_bureau_code_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A malformed bureau code exits 2 with a one-line message, not a traceback."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ncbsim",
            "pki",
            "init",
            "--dir",
            str(tmp_path / "p"),
            "--bureaus",
            "FR,Germany",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "not a bureau code" in out.stderr
    assert "Traceback" not in out.stderr

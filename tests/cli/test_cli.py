"""The command-line contract: every documented command exists and explains itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ncbsim import pki
from ncbsim.cli import build_parser, main

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
    ["pki", "revoke"],
    ["pki", "rotate"],
    ["record", "restrict"],
    ["record", "list"],
    ["status"],
    ["restart"],
    ["fault"],
    ["fault", "partition"],
    ["heal"],
    ["hits"],
    ["audit", "verify"],
    ["audit", "search"],
    ["audit", "prove"],
    ["audit", "check-proof"],
    ["deploy", "render"],
    ["deploy", "apply"],
    ["deploy", "status"],
    ["deploy", "down"],
    ["deploy", "unpack"],
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


def _ncbsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("skew", ["-1", "3600001"])
def test_bad_clock_skew_is_refused_before_anything_starts(tmp_path, skew: str) -> None:  # type: ignore[no-untyped-def]
    """`ncbsim node --clock-skew-ms` outside 0..3600000 exits 2 with the bounds, and no
    records are generated."""
    assert _ncbsim("pki", "init", "--dir", str(tmp_path), "--bureaus", "FR").returncode == 0
    db = tmp_path / "fr.sqlite"
    out = _ncbsim(
        "node", "--dir", str(tmp_path), "--bureau", "FR", "--gateway", "127.0.0.1:1",
        "--db", str(db), "--clock-skew-ms", skew,
    )  # fmt: skip
    assert out.returncode == 2
    assert "clock_skew_ms must be between 0 and 3600000" in out.stderr
    assert "Traceback" not in out.stderr
    assert not db.exists()


def test_rotate_and_revoke_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`pki rotate` reports the new serial and grace; `pki revoke` reports what it revoked;
    a bad grace or an unknown bureau exits 2 with one line."""
    assert _ncbsim("pki", "init", "--dir", str(tmp_path), "--bureaus", "FR,DE").returncode == 0
    rotated = _ncbsim("pki", "rotate", "--dir", str(tmp_path), "--bureau", "DE", "--grace", "90s")
    assert rotated.returncode == 0, rotated.stderr
    assert "serial 2" in rotated.stdout
    assert "(90s)" in rotated.stdout
    revoked = _ncbsim("pki", "revoke", "--dir", str(tmp_path), "--bureau", "FR")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked FR" in revoked.stdout
    assert (tmp_path / "revocations.list").exists()
    for bad in (
        ("pki", "rotate", "--dir", str(tmp_path), "--bureau", "DE", "--grace", "soon"),
        ("pki", "revoke", "--dir", str(tmp_path), "--bureau", "ES"),
    ):
        out = _ncbsim(*bad)
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1
        assert "Traceback" not in out.stderr


# ----------------------------------------------------------------- --workdir hints

# Every command that reads a network's work directory, with the rest of a valid line.
WORKDIR_COMMANDS = {
    "query": ["query", "--as", "FR", "--to", "DE", "fetch", "--ref", "5bzpwnvqk7cqiyxaeiux"],
    "diffuse": ["diffuse", "--as", "FR", "--to", "ALL", "--subject", "s", "--text", "t"],
    "message send": ["message", "send", "--as", "FR", "--to", "DE", "--text", "t"],
    "notice request": [
        "notice", "request", "--as", "FR", "--color", "red", "--person-file", "p.json",
    ],
    "notice withdraw": ["notice", "withdraw", "--as", "FR", "--id", "00"],
    "receipts": ["receipts", "--as", "FR"],
    "inbox": ["inbox", "--as", "FR"],
    "notice list": ["notice", "list", "--as", "FR"],
    "record list": ["record", "list", "--as", "FR"],
    "record enrolled": ["record", "enrolled", "--as", "FR"],
    "record probe": ["record", "probe", "--bureau", "FR", "--ref", "a" * 20, "--out", "p.bin"],
    "audit prove": ["audit", "prove", "--as", "FR", "--message-id", "00" * 16],
}  # fmt: skip
OFFLINE = ("inbox", "notice list", "record list", "record enrolled", "record probe", "audit prove")
GATEWAY_COMMANDS = [c for c in WORKDIR_COMMANDS if c not in OFFLINE]
# Commands on a running network's processes: they need its network.json.
NETWORK_COMMANDS = {
    "status": ["status"],
    "down": ["down"],
    "restart": ["restart", "--bureau", "DE"],
    "fault": ["fault", "kill", "--bureaus", "DE"],
    "heal": ["heal", "--all"],
}


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def _with_workdir(command: str, workdir: Path) -> list[str]:
    line = WORKDIR_COMMANDS[command]
    at = 2 if line[0] in ("message", "notice", "record", "audit") else 1
    return [*line[:at], "--workdir", str(workdir), *line[at:]]


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    """``bare_pki``'s bureaus."""
    return ["FR", "DE"]


@pytest.fixture(scope="module")
def bare_pki(module_pki: pki.PkiDir) -> Path:
    """A PKI made by `pki init`: no gateway was ever started there."""
    return module_pki.root


@pytest.mark.parametrize("command", WORKDIR_COMMANDS)
def test_a_missing_workdir_is_named(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --workdir that does not exist is said to not exist (not "run ncbsim up"), exit 2."""
    missing = tmp_path / "nowhere"
    code, err = _main(_with_workdir(command, missing), capsys)
    assert code == 2
    assert err == f"ncbsim: no such work directory: {missing}\n"


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_a_missing_or_idle_workdir_is_named_by_network_commands(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, down, restart, fault and heal say a missing folder is missing, and an idle
    one runs no network, in one line with exit 2."""
    missing = tmp_path / "nowhere"
    line = NETWORK_COMMANDS[command]
    code, err = _main([*line[:1], "--workdir", str(missing), *line[1:]], capsys)
    assert (code, err) == (2, f"ncbsim: no such work directory: {missing}\n")
    code, err = _main([*line[:1], "--workdir", str(tmp_path), *line[1:]], capsys)
    assert code == 2
    assert err.startswith(f"ncbsim: no network runs in {tmp_path} (no network.json)")


@pytest.mark.parametrize("command", WORKDIR_COMMANDS)
def test_a_folder_without_a_pki_is_not_a_workdir(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that holds no PKI is said to be no network's work directory, exit 2."""
    code, err = _main(_with_workdir(command, tmp_path), capsys)
    assert code == 2
    assert err.startswith(f"ncbsim: {tmp_path} is not a network's work directory")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", GATEWAY_COMMANDS)
def test_a_pki_without_a_gateway_says_how_to_start_one(
    command: str, bare_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PKI where no gateway was started says so, and gives both ways to start one."""
    code, err = _main(_with_workdir(command, bare_pki), capsys)
    assert code == 2
    assert err.startswith(f"ncbsim: no gateway is running in {bare_pki}")
    assert f"`ncbsim up SCENARIO --workdir {bare_pki} --detach`" in err
    assert f"`ncbsim gateway --dir {bare_pki}`" in err
    assert len(err.splitlines()) == 1


@pytest.fixture
def workdir(bare_pki: Path, tmp_path: Path) -> Path:
    """A copy of the bare PKI, for a test to write its own network.json into."""
    path = tmp_path / "w"
    shutil.copytree(bare_pki, path)
    return path


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ('{"links": {"FR": {}}}', "links.FR has no to_gateway"),
        ('{"links": {"FR": "x"}}', "links.FR has no to_gateway"),
        ('{"links": {"FR": {"to_gateway": 5}}}', "links.FR.to_gateway is not an address"),
        ('{"links": []}', "links is not an object"),
        ('{"links": {}}', "it has no gateway"),
        ('{"gateway": ["127.0.0.1:1"]}', "gateway is not an address"),
        ("[]", "not a JSON object"),
        ("not json", "not JSON"),
        ("\xff", "not JSON"),
    ],
)
def test_a_corrupt_network_manifest_is_one_line_saying_what_is_wrong(
    manifest: str, problem: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A network.json that does not say where the gateway is is named, with what is wrong
    in words (no traceback, no Python repr), exit 2."""
    (workdir / "network.json").write_bytes(manifest.encode("latin-1"))
    code, err = _main(_with_workdir("receipts", workdir), capsys)
    path = workdir / "network.json"
    assert (code, err) == (2, f"ncbsim: {path}: not a network manifest ({problem})\n")


def test_a_corrupt_gateway_ready_file_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway/ready.json without the gateway's address says so in words, exit 2."""
    ready = workdir / "gateway" / "ready.json"
    ready.parent.mkdir(exist_ok=True)
    ready.write_text('{"pid": 1}')
    code, err = _main(_with_workdir("receipts", workdir), capsys)
    assert (code, err) == (2, f"ncbsim: {ready}: not a gateway ready file (it has no address)\n")


def test_node_names_a_corrupt_manifest_not_a_missing_gateway(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`node` in a work directory whose network.json is corrupt says so; the advice to
    start a gateway is only for a directory where none was started."""
    (workdir / "network.json").write_text("not json")
    code, err = _main(["node", "--dir", str(workdir), "--bureau", "FR"], capsys)
    path = workdir / "network.json"
    assert (code, err) == (2, f"ncbsim: {path}: not a network manifest (not JSON)\n")


@pytest.mark.parametrize("command", ["record list", "hits"])
@pytest.mark.parametrize("limit", ["0", "100001", "99999999999999999999"])
def test_a_limit_out_of_range_is_one_line(
    command: str, limit: str, bare_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """record list and hits take --limit from 1 to 100000; any other is refused in one
    line, exit 2 (a number beyond SQLite's integers was an OverflowError traceback)."""
    line = {"record list": WORKDIR_COMMANDS["record list"], "hits": ["hits", "--as", "FR"]}
    argv = [*line[command], "--workdir", str(bare_pki), "--limit", limit]
    code, err = _main(argv, capsys)
    assert (code, err) == (2, "ncbsim: --limit must be between 1 and 100000\n")


# ----------------------------------------------------------------- query input


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        (["person", "--surname", "Doe", "--dob", "03/02/1980"], "--dob: expected a date"),
        (["vehicle", "--vin", "123"], "--vin: a VIN has 17 characters, got 3"),
        (["vehicle"], "vehicle: give --vin, --plate or both"),
        (["document", "--number", "X1", "--issuer", "XX"], "--issuer: 'XX' is not an issuing"),
        (["document", "--number", "", "--issuer", "FR"], "--number: the document number is"),
        (["fetch", "--ref", "R"], "--ref: not a record reference"),
    ],
)
def test_bad_query_input_is_refused_before_anything_is_read_or_sent(
    kind: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value that cannot be right exits 2 with one line saying what is expected, before
    the work directory is even looked at (here it does not exist)."""
    argv = ["query", "--workdir", str(tmp_path / "nowhere"), "--as", "FR", "--to", "DE", *kind]
    code, err = _main(argv, capsys)
    assert code == 2
    assert err.startswith(f"ncbsim: {says}")
    assert len(err.splitlines()) == 1


def test_bad_to_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--to with a code that names no bureau exits 2 naming it."""
    argv = ["query", "--workdir", str(tmp_path), "--as", "FR", "--to", "DE,XX", "fetch"]
    code, err = _main([*argv, "--ref", "5bzpwnvqk7cqiyxaeiux"], capsys)
    assert (code, err.splitlines()[0][:40]) == (2, "ncbsim: --to: 'XX' is not a bureau code:")


def test_query_help_says_what_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """`query vehicle --help` says which VINs must carry a check digit, `person --help`
    the date format."""
    for kind, expected in (
        ("vehicle", "only for North American VINs (first character 1 to 5)"),
        ("person", "YYYY-MM-DD: a real date, not in the future"),
        ("document", "ISO 3166 alpha-2"),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["query", kind, "--help"])
        assert expected in " ".join(capsys.readouterr().out.split())

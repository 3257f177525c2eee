"""Workdir names exactly the files of the layout drawn in ncbsim.workdir's docstring and in
docs/files.md, and BureauFiles/GatewayFiles put a moved database's siblings beside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ncbsim import workdir as workdirs
from ncbsim.workdir import BureauFiles, GatewayFiles, Workdir

ROOT = Path(__file__).resolve().parents[2]
WD = Workdir(Path("/net"))
BUREAU = WD.bureau("FR")

NAMED: dict[str, Path] = {
    "network.json": WD.manifest,
    "records.json": WD.stamp,
    "gateway/audit.sqlite": WD.gateway.audit,
    "gateway/mailbox.sqlite": WD.gateway.mailbox,
    "gateway/gateway.log": WD.gateway.log,
    "gateway/ready.json": WD.gateway.ready,
    "gateway/attack.json": WD.gateway.attack_mode,
    "gateway/attack-events.jsonl": WD.gateway.attack_events,
    "gateway/attack-capture.jsonl": WD.gateway.attack_capture,
    "bureaus/FR/records.sqlite": BUREAU.records,
    "bureaus/FR/audit.sqlite": BUREAU.audit,
    "bureaus/FR/replay.sqlite": BUREAU.replay,
    "bureaus/FR/hits.sqlite": BUREAU.hits,
    "bureaus/FR/inbox.sqlite": BUREAU.inbox,
    "bureaus/FR/proofs.sqlite": BUREAU.proofs,
    "bureaus/FR/caps.sqlite": BUREAU.caps,
    "bureaus/FR/node.log": BUREAU.log,
    "hosts/host-3.log": WD.host_log(3),
    "run/host-3.spec.json": WD.host_spec(3),
    "run/host-3.ready.json": WD.host_ready(3),
    "run/host-3.sock": WD.host_socket(3),
    "run/gateway.json": WD.gateway_ready,
    "run/faultd.json": WD.faultd_ready,
    "run/faultd.log": WD.faultd_log,
    "run/faultd.sock": WD.faultd_socket,
    "run/faults.json": WD.live_faults,
    "run/operate.lock": WD.operate_lock,
}
"""Every file Workdir names, by its path under the work directory: the layout today."""


def _drawn() -> set[str]:
    """The files the module docstring draws (``WORKDIR/...`` lines, folders aside)."""
    doc = workdirs.__doc__ or ""
    found = re.findall(r"^ {4}WORKDIR/(\S+)\s", doc, flags=re.M)
    return {path for path in found if not path.endswith(("/", ","))}  # folders, the PKI


@pytest.mark.parametrize(("relative", "path"), sorted(NAMED.items()))
def test_each_name_is_the_path_of_the_layout(relative: str, path: Path) -> None:
    """Each file Workdir names is where the programs have always put it."""
    assert path == Path("/net") / relative


def test_the_drawing_shows_exactly_the_files_workdir_names() -> None:
    """The docstring's drawing and Workdir agree both ways (replay and hits included)."""
    assert _drawn() == set(NAMED)


def test_folders_and_pki_share_one_root() -> None:
    """The bureau and gateway folders are the PKI's party folders; the PKI is the root."""
    assert WD.pki.root == WD.root
    assert BUREAU.root == WD.pki.party("FR") == WD.bureaus / "FR"
    assert WD.gateway.root == WD.pki.party("gateway")
    assert WD.run == Path("/net/run")
    assert WD.hosts == Path("/net/hosts")


def test_a_bureau_folder_gives_its_node_every_file() -> None:
    """What a node opens in ``ncbsim up``'s layout is the bureau folder's files."""
    assert BUREAU.files == BureauFiles(
        records=BUREAU.records,
        audit=BUREAU.audit,
        replay=BUREAU.replay,
        hits=BUREAU.hits,
        inbox=BUREAU.inbox,
        proofs=BUREAU.proofs,
        caps=BUREAU.caps,
    )
    assert WD.gateway.files == GatewayFiles(audit=WD.gateway.audit, mailbox=WD.gateway.mailbox)


def test_files_beside_a_moved_database_keep_their_names(tmp_path: Path) -> None:
    """``ncbsim node --db`` and ``ncbsim gateway --audit`` move the sibling files with them."""
    records = tmp_path / "elsewhere" / "mine.sqlite"
    files = BureauFiles.beside(records)
    assert files.records == records
    assert files.audit == records.parent / "audit.sqlite"
    assert files.replay == records.parent / "replay.sqlite"
    assert files.hits == records.parent / "hits.sqlite"
    assert files.inbox == records.parent / "inbox.sqlite"
    assert files.proofs == records.parent / "proofs.sqlite"
    assert BureauFiles.beside(BUREAU.records) == BUREAU.files
    audit = tmp_path / "g" / "trail.sqlite"
    assert GatewayFiles.beside(audit) == GatewayFiles(
        audit=audit, mailbox=audit.parent / "mailbox.sqlite"
    )
    assert GatewayFiles.beside(WD.gateway.audit) == WD.gateway.files


def test_files_md_lists_every_file_of_a_bureau_and_of_the_gateway() -> None:
    """docs/files.md, which says who may read each file, misses none of them."""
    text = (ROOT / "docs" / "files.md").read_text()
    for relative in NAMED:
        if relative.startswith(("bureaus/", "gateway/")):
            assert f"`{Path(relative).name}`" in text, relative

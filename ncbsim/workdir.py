"""A network's work directory: the one drawing of its layout, and the client commands' way in.

``ncbsim up`` (ncbsim.simulations.network) fills one folder, which is also the PKI folder::

    WORKDIR/network.json               every process: role, bureau, pid, address, log
    WORKDIR/records.json               the seed and counts the bureaus' records were made with
    WORKDIR/ca.crt, ca.key, directory/ the PKI (ncbsim.pki.PkiDir); each party's keys and
                                       certificate are in its folder (operator/, gateway/,
                                       bureaus/FR/)
    WORKDIR/gateway/audit.sqlite       the gateway's metadata-only, hash-chained audit trail
    WORKDIR/gateway/mailbox.sqlite     one-way envelopes the gateway accepted (sealed), their fate
    WORKDIR/gateway/gateway.log        the gateway's JSON log
    WORKDIR/gateway/ready.json         pid and address of a gateway started alone (``--dir``)
    WORKDIR/gateway/attack.json        the attack a classroom-mode gateway applies now (only
                                       under ``ncbsim classroom``; ncbsim.gateway.attacks)
    WORKDIR/gateway/attack-events.jsonl   what that gateway did (metadata only)
    WORKDIR/gateway/attack-capture.jsonl  the answers it relayed, as opaque sealed bytes
    WORKDIR/bureaus/FR/records.sqlite  FR's records
    WORKDIR/bureaus/FR/audit.sqlite    FR's node's hash-chained audit trail
    WORKDIR/bureaus/FR/replay.sqlite   FR's node's replay cache: the message ids it has seen
    WORKDIR/bureaus/FR/hits.sqlite     FR's node's hit notifications (ncbsim.node.hits)
    WORKDIR/bureaus/FR/proofs.sqlite   the checkpoints FR's node verified (ncbsim.node.proofs)
    WORKDIR/bureaus/FR/caps.sqlite     biometric searches each bureau made at FR today (Prüm cap)
    WORKDIR/bureaus/FR/inbox.sqlite    what FR received one-way (decrypted), and its notices
    WORKDIR/bureaus/FR/node.log        the JSON log of FR's host, when FR has a host of its own
    WORKDIR/hosts/host-3.log           the JSON log of host 3, a host of several bureaus
    WORKDIR/run/host-3.spec.json       host 3's spec (ncbsim.node.host)
    WORKDIR/run/host-3.ready.json      host 3's ready file
    WORKDIR/run/host-3.sock            host 3's control socket
    WORKDIR/run/gateway.json           the gateway's ready file
    WORKDIR/run/faultd.json            the ready file of the fault daemon of ``up --faults``
    WORKDIR/run/faultd.log             the fault daemon's log (ncbsim.simulations.faultd)
    WORKDIR/run/faultd.sock            the fault daemon's control socket
    WORKDIR/run/faults.json            the process faults applied live (simulations.live_faults)
    WORKDIR/run/operate.lock           held while a command changes the network

Beside each hash-chained log sits its head (``audit.sqlite.head``), and beside each
database SQLite's ``-wal`` and ``-shm``. A socket whose path would be too long for a Unix
socket goes to a private folder in the temporary directory instead
(ncbsim.simulations.network.socket_path).

:class:`Workdir` names every one of these files; nothing else spells them. A node takes
its bureau's files as one :class:`BureauFiles` value, the gateway its own as one
:class:`GatewayFiles`. Who may read which file: docs/files.md.

``query``, the messaging commands, ``inbox`` and ``receipts`` take ``--workdir``: the
folder ``ncbsim up`` filled (all but ``inbox`` may take ``--gateway`` and ``--pki`` of a
network run elsewhere instead: ncbsim.cli._common.client_network). When it is not
usable, the error says which of three things is wrong: the folder does not exist, it holds
no PKI, or it holds a PKI but no gateway was started there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncbsim.errors import NcbsimError, NetworkError
from ncbsim.pki import PkiDir

__all__ = [
    "MANIFEST",
    "STAMP",
    "BureauDir",
    "BureauFiles",
    "GatewayDir",
    "GatewayFiles",
    "NoGatewayError",
    "Workdir",
    "find_gateway",
    "require_pki",
]

MANIFEST = "network.json"
"""Written by ``ncbsim up`` (simulations/network.py) once every process serves."""
STAMP = "records.json"
"""The seed and counts the bureaus' records were made with (simulations/network.py)."""
_MANIFEST_WHAT = "a network manifest"

_RECORDS = "records.sqlite"
_AUDIT = "audit.sqlite"
_REPLAY = "replay.sqlite"
_HITS = "hits.sqlite"
_PROOFS = "proofs.sqlite"
_CAPS = "caps.sqlite"
_INBOX = "inbox.sqlite"
_MAILBOX = "mailbox.sqlite"


@dataclass(frozen=True, kw_only=True, slots=True)
class BureauFiles:
    """The files a bureau's node opens (ncbsim.node.config.NodeConfig)."""

    records: Path
    audit: Path
    replay: Path
    hits: Path
    inbox: Path
    proofs: Path
    caps: Path

    @classmethod
    def beside(cls, records: Path) -> BureauFiles:
        """A bureau's files in the folder of ``records`` (``ncbsim node --db`` moves them all)."""
        return dataclasses.replace(BureauDir(records.parent).files, records=records)


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayFiles:
    """The files the gateway opens (ncbsim.gateway.config.GatewayConfig)."""

    audit: Path
    mailbox: Path

    @classmethod
    def beside(cls, audit: Path) -> GatewayFiles:
        """The gateway's files in the folder of ``audit`` (``ncbsim gateway --audit``)."""
        return cls(audit=audit, mailbox=audit.with_name(_MAILBOX))


@dataclass(frozen=True, slots=True)
class BureauDir:
    """A bureau's folder, ``WORKDIR/bureaus/XX``: its keys (PKI) and its node's files."""

    root: Path

    @property
    def records(self) -> Path:
        return self.root / _RECORDS

    @property
    def audit(self) -> Path:
        return self.root / _AUDIT

    @property
    def replay(self) -> Path:
        return self.root / _REPLAY

    @property
    def hits(self) -> Path:
        return self.root / _HITS

    @property
    def inbox(self) -> Path:
        return self.root / _INBOX

    @property
    def proofs(self) -> Path:
        return self.root / _PROOFS

    @property
    def caps(self) -> Path:
        return self.root / _CAPS

    @property
    def log(self) -> Path:
        """The log of the bureau's host, when it has a host of its own."""
        return self.root / "node.log"

    @property
    def files(self) -> BureauFiles:
        """What the bureau's node opens."""
        return BureauFiles(
            records=self.records,
            audit=self.audit,
            replay=self.replay,
            hits=self.hits,
            inbox=self.inbox,
            proofs=self.proofs,
            caps=self.caps,
        )


@dataclass(frozen=True, slots=True)
class GatewayDir:
    """The gateway's folder, ``WORKDIR/gateway``: its TLS identity (PKI) and its files."""

    root: Path

    @property
    def audit(self) -> Path:
        return self.root / _AUDIT

    @property
    def mailbox(self) -> Path:
        return self.root / _MAILBOX

    @property
    def log(self) -> Path:
        return self.root / "gateway.log"

    @property
    def ready(self) -> Path:
        """Where ``ncbsim gateway --dir DIR`` writes its pid and address by default."""
        return self.root / "ready.json"

    @property
    def attack_mode(self) -> Path:
        """The mode file of a classroom-mode gateway (``--classroom-attacks``)."""
        return self.root / "attack.json"

    @property
    def attack_events(self) -> Path:
        """What a classroom-mode gateway did, as metadata (ncbsim.gateway.attacks)."""
        return self.root / "attack-events.jsonl"

    @property
    def attack_capture(self) -> Path:
        """The answers a classroom-mode gateway relayed, as opaque bytes, for its replays."""
        return self.root / "attack-capture.jsonl"

    @property
    def files(self) -> GatewayFiles:
        """What the gateway opens."""
        return GatewayFiles(audit=self.audit, mailbox=self.mailbox)


@dataclass(frozen=True, slots=True)
class Workdir:
    """Paths inside a network's work directory (the layout drawn above). Knows the layout;
    creates and reads nothing."""

    root: Path

    @property
    def pki(self) -> PkiDir:
        return PkiDir(self.root)

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def stamp(self) -> Path:
        return self.root / STAMP

    @property
    def bureaus(self) -> Path:
        """The folder of every bureau's folder."""
        return self.root / "bureaus"

    def bureau(self, code: str) -> BureauDir:
        return BureauDir(self.bureaus / code)

    @property
    def gateway(self) -> GatewayDir:
        return GatewayDir(self.root / "gateway")

    @property
    def hosts(self) -> Path:
        """Logs of the hosts of several bureaus."""
        return self.root / "hosts"

    def host_log(self, index: int) -> Path:
        """The log of host ``index`` when it serves several bureaus."""
        return self.hosts / f"host-{index}.log"

    @property
    def run(self) -> Path:
        """Specs, ready files and control sockets of the running processes."""
        return self.root / "run"

    def host_spec(self, index: int) -> Path:
        return self.run / f"host-{index}.spec.json"

    def host_ready(self, index: int) -> Path:
        return self.run / f"host-{index}.ready.json"

    def host_socket(self, index: int) -> Path:
        """Host ``index``'s control socket (ncbsim.simulations.network.socket_path may move it)."""
        return self.run / f"host-{index}.sock"

    @property
    def gateway_ready(self) -> Path:
        """The ready file of the gateway ``ncbsim up`` starts."""
        return self.run / "gateway.json"

    @property
    def faultd_ready(self) -> Path:
        return self.run / "faultd.json"

    @property
    def faultd_log(self) -> Path:
        return self.run / "faultd.log"

    @property
    def faultd_socket(self) -> Path:
        """The fault daemon's control socket (``socket_path`` of ncbsim.simulations.network
        may move it)."""
        return self.run / "faultd.sock"

    @property
    def live_faults(self) -> Path:
        """The process faults applied live (ncbsim.simulations.live_faults): they end with
        the network."""
        return self.run / "faults.json"

    @property
    def operate_lock(self) -> Path:
        """Held while a command changes the network (ncbsim.simulations.operate.locked)."""
        return self.run / "operate.lock"


def require_pki(workdir: Path) -> PkiDir:
    """The PKI in ``workdir``, or NcbsimError saying what ``workdir`` is instead."""
    if not workdir.exists():
        raise NcbsimError(f"no such work directory: {workdir}")
    if not workdir.is_dir():
        raise NcbsimError(f"not a directory: {workdir}; give the --workdir of `ncbsim up`")
    pki = PkiDir(workdir)
    if not pki.ca_cert.is_file():
        raise NcbsimError(
            f"{workdir} is not a network's work directory (it holds no PKI, no ca.crt); "
            "give the --workdir of `ncbsim up`, or start a network in a new folder with "
            "`ncbsim up SCENARIO --workdir DIR --detach`"
        )
    return pki


class NoGatewayError(NetworkError):
    """The work directory holds a PKI, but no gateway was started there (no manifest, no
    ready file). Other failures of :func:`find_gateway` (a corrupt file) are not this."""


def find_gateway(workdir: Path, bureau: str | None = None) -> str:
    """The gateway address of the network in ``workdir``: from ``network.json`` (written by
    ``ncbsim up``), else from the gateway's ready file (``ncbsim gateway --dir``).

    With ``bureau``, the way that bureau reaches it: its fault proxy, under ``up --faults``.
    Raises :class:`NoGatewayError` if neither file exists, and NcbsimError saying what is
    wrong, in words, if one exists but does not name the address.
    """
    require_pki(workdir)
    manifest = Workdir(workdir).manifest
    if bureau is not None and manifest.exists():
        links = _json_object(manifest, _MANIFEST_WHAT).get("links", {})
        if not isinstance(links, dict):
            raise _not(manifest, _MANIFEST_WHAT, "links is not an object")
        link = links.get(bureau)
        if link is not None:  # absent: this bureau reaches the gateway directly
            if not isinstance(link, dict) or "to_gateway" not in link:
                raise _not(manifest, _MANIFEST_WHAT, f"links.{bureau} has no to_gateway")
            return _address(
                manifest, _MANIFEST_WHAT, link["to_gateway"], f"links.{bureau}.to_gateway"
            )
    for path, key, what in (
        (manifest, "gateway", _MANIFEST_WHAT),
        (Workdir(workdir).gateway.ready, "address", "a gateway ready file"),
    ):
        if not path.exists():
            continue
        data = _json_object(path, what)
        if key not in data:
            raise _not(path, what, f"it has no {key}")
        return _address(path, what, data[key], key)
    raise NoGatewayError(
        f"no gateway is running in {workdir} (it holds a PKI, but no {MANIFEST} or "
        f"gateway/ready.json); start the network with `ncbsim up SCENARIO --workdir "
        f"{workdir} --detach`, or its gateway alone with `ncbsim gateway --dir {workdir}`"
    )


def _not(path: Path, what: str, problem: str) -> NcbsimError:
    return NcbsimError(f"{path}: not {what} ({problem})")


def _json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, or NcbsimError saying in words why there is none."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise NcbsimError(f"cannot read {path}: {exc.strerror or 'unreadable'}") from None
    except ValueError:  # not UTF-8 (UnicodeDecodeError) or not JSON
        raise _not(path, what, "not JSON") from None
    if not isinstance(data, dict):
        raise _not(path, what, "not a JSON object")
    return data


def _address(path: Path, what: str, value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _not(path, what, f"{field} is not an address")
    return value

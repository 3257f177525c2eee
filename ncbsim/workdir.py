"""A network's work directory as the client commands find it, with a hint that is right.

``query``, the messaging commands, ``inbox`` and ``receipts`` take ``--workdir``: the
folder ``ncbsim up`` filled with the PKI, the bureaus' files and ``network.json``. When
it is not usable, the error says which of three things is wrong: the folder does not
exist, it holds no PKI, or it holds a PKI but no gateway was started there.
"""

from __future__ import annotations

import json
from pathlib import Path

from ncbsim.errors import NcbsimError
from ncbsim.pki import PkiDir

__all__ = ["MANIFEST", "find_gateway", "gateway_ready_file", "require_pki"]

MANIFEST = "network.json"
"""Written by ``ncbsim up`` (simulations/network.py) once every process serves."""


def gateway_ready_file(directory: Path) -> Path:
    """Where ``ncbsim gateway --dir DIR`` writes its pid and address by default."""
    return directory / "gateway" / "ready.json"


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


def find_gateway(workdir: Path, bureau: str | None = None) -> str:
    """The gateway address of the network in ``workdir``: from ``network.json`` (written by
    ``ncbsim up``), else from the gateway's ready file (``ncbsim gateway --dir``).

    With ``bureau``, the way that bureau reaches it: its fault proxy, under ``up --faults``.
    """
    require_pki(workdir)
    manifest = workdir / MANIFEST
    if bureau is not None and manifest.exists():
        try:
            link = json.loads(manifest.read_text()).get("links", {}).get(bureau)
        except (OSError, ValueError, AttributeError) as exc:
            raise NcbsimError(f"{manifest} is not a network manifest ({exc!r})") from None
        if link:
            return str(link["to_gateway"])
    for path, key in ((workdir / MANIFEST, "gateway"), (gateway_ready_file(workdir), "address")):
        if not path.exists():
            continue
        try:
            return str(json.loads(path.read_text())[key])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NcbsimError(f"{path} does not name the gateway's address ({exc!r})") from None
    raise NcbsimError(
        f"no gateway is running in {workdir} (it holds a PKI, but no {MANIFEST} or "
        f"gateway/ready.json); start the network with `ncbsim up SCENARIO --workdir "
        f"{workdir} --detach`, or its gateway alone with `ncbsim gateway --dir {workdir}`"
    )

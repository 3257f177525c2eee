"""A network's work directory as the client commands find it, with a hint that is right.

``query``, the messaging commands, ``inbox`` and ``receipts`` take ``--workdir``: the
folder ``ncbsim up`` filled with the PKI, the bureaus' files and ``network.json``. When
it is not usable, the error says which of three things is wrong: the folder does not
exist, it holds no PKI, or it holds a PKI but no gateway was started there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ncbsim.errors import NcbsimError, NetworkError
from ncbsim.pki import PkiDir

__all__ = ["MANIFEST", "NoGatewayError", "find_gateway", "gateway_ready_file", "require_pki"]

MANIFEST = "network.json"
"""Written by ``ncbsim up`` (simulations/network.py) once every process serves."""
_MANIFEST_WHAT = "a network manifest"


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
    manifest = workdir / MANIFEST
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
        (gateway_ready_file(workdir), "address", "a gateway ready file"),
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

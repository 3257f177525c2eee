"""Bundles: the PKI cut into per-pod slices, read raw or base64-wrapped, unpacked with the
right modes; a gateway and a host run from unpacked slices alone answer a query."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from spawned import spawn, stop, wait_ready
from support import document_query

from ncbsim import pki
from ncbsim.client import BureauClient, Outcome
from ncbsim.errors import ConfigError
from ncbsim.node import datagen
from ncbsim.simulations.deploy import bundle


def _bundle(files: dict[str, bytes], version: int = 1) -> bytes:
    encoded = {k: base64.b64encode(v).decode() for k, v in files.items()}
    return json.dumps({"version": version, "files": encoded}).encode()


def test_read_bundle_takes_raw_or_base64_wrapped_json() -> None:
    """A bundle reads the same raw and base64-wrapped (how podman 4.3 mounts a Secret)."""
    data = _bundle({"ca.crt": b"root", "bureaus/FR/tls.key": b"key"})
    wrapped = base64.encodebytes(data)  # with line breaks, as some tools write it
    assert bundle.read_bundle(data) == bundle.read_bundle(wrapped)
    assert bundle.read_bundle(wrapped)["bureaus/FR/tls.key"] == b"key"


@pytest.mark.parametrize(
    ("files", "version", "message"),
    [
        ({"/etc/passwd": b"x"}, 1, "not relative"),
        ({"../ca.key": b"x"}, 1, ". or .."),
        ({"bureaus/../../x": b"x"}, 1, ". or .."),
        ({"bureaus//x": b"x"}, 1, "empty part"),
        ({"ca.crt": b"x"}, 2, "unknown version 2"),
    ],
)
def test_read_bundle_refuses_escapes_and_unknown_versions(
    files: dict[str, bytes], version: int, message: str
) -> None:
    """An absolute path, ``..``, an empty part or an unknown version is refused."""
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        bundle.read_bundle(_bundle(files, version))


def test_read_bundle_refuses_what_is_not_a_bundle() -> None:
    """Text neither JSON nor base64 of JSON is one clear error."""
    for data in (b"not a bundle!", base64.b64encode(b"[1, 2]"), b"{broken"):
        with pytest.raises(ConfigError, match="bundle"):
            bundle.read_bundle(data)


def test_unpack_gives_private_and_public_modes(tmp_path: Path) -> None:
    """Folders 0700, private files 0600, public ones 0644, even under umask 0."""
    source = tmp_path / "b.json"
    source.write_bytes(
        _bundle({"ca.crt": b"root", "directory/FR.entry": b"e", "bureaus/FR/tls.key": b"k"})
    )
    old = os.umask(0)
    try:
        assert bundle.unpack([source], tmp_path / "pki") == 3
    finally:
        os.umask(old)
    mode = {
        p.relative_to(tmp_path / "pki").as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "pki").rglob("*")
    }
    assert mode == {
        "ca.crt": 0o644,
        "directory": 0o700,
        "directory/FR.entry": 0o644,
        "bureaus": 0o700,
        "bureaus/FR": 0o700,
        "bureaus/FR/tls.key": 0o600,
    }


def test_unpack_refuses_two_bundles_disagreeing(tmp_path: Path) -> None:
    """The same path in two bundles must hold the same bytes."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_bytes(_bundle({"ca.crt": b"one"}))
    b.write_bytes(_bundle({"ca.crt": b"two"}))
    with pytest.raises(ConfigError, match="differs"):
        bundle.unpack([a, b], tmp_path / "pki")


def test_slices_hold_no_root_key_and_no_users_ca_key(tmp_path: Path) -> None:
    """No slice holds ca.key, a bureau's users' CA key or a user's key; a group holds
    exactly its bureaus' four key files."""
    directory = pki.init(tmp_path / "pki", ["FR", "DE", "IT"])
    from ncbsim import users

    users.issue_user(directory, "FR", "pros", "investigator", now_ms=int(time.time() * 1000))
    root = directory.root
    slices = {role: bundle.slice_paths(root, role, ["FR", "DE"]) for role in bundle.ROLES}
    every = [p for paths in slices.values() for p in paths]
    assert "ca.key" not in every
    assert not [p for p in every if p.endswith("/ca.key") or "/users/" in p]
    assert slices["gateway"] == ["gateway/tls.crt", "gateway/tls.key"]
    assert sorted(slices["group"]) == sorted(
        f"bureaus/{c}/{f}" for c in ("FR", "DE") for f in bundle.PARTY_FILES
    )
    assert "users/FR/pros.entry" in slices["public"]
    assert all(bundle.is_public(p) for p in slices["public"])
    with pytest.raises(ConfigError, match="not a bureau"):
        bundle.slice_paths(root, "group", ["NL"])


def _unpacked(tmp_path: Path, root: Path, name: str, role: str, codes: list[str]) -> Path:
    files = []
    for part, paths in (
        ("public", bundle.slice_paths(root, "public")),
        (role, bundle.slice_paths(root, role, codes)),
    ):
        path = tmp_path / "bundles" / f"{name}-{part}.json"
        path.parent.mkdir(exist_ok=True)
        data = bundle.make_bundle(root, paths)
        # As podman 4.3 mounts a Secret: base64-wrapped.
        path.write_bytes(base64.b64encode(data) if part != "public" else data)
        files.append(path)
    dest = tmp_path / name
    bundle.unpack(files, dest)
    return dest


@pytest.mark.integration
def test_gateway_and_host_run_from_their_slices_alone(tmp_path: Path) -> None:
    """A gateway, a host of FR and DE and a requester AD, each with only its unpacked
    slice (no root key, no users' CA key), answer AD's queries with hits."""
    directory = pki.init(tmp_path / "operator", ["FR", "DE"])
    pki.add_bureau(directory, "AD", requester_only=True)
    root = directory.root
    gateway_pki = _unpacked(tmp_path, root, "gateway", "gateway", [])
    host_pki = _unpacked(tmp_path, root, "host", "group", ["DE", "FR"])
    client_pki = _unpacked(tmp_path, root, "client", "load", ["AD"])
    for folder in (gateway_pki, host_pki, client_pki):
        assert not (folder / "ca.key").exists()
        assert not list(folder.glob("bureaus/*/ca.key"))
    assert not (host_pki / "gateway").exists()
    assert not (gateway_pki / "bureaus").exists()
    data = tmp_path / "data"
    for code in ("FR", "DE"):
        (data / code).mkdir(parents=True)
        datagen.generate(
            data / code / "records.sqlite", code, seed=3, documents=60, persons=10, vehicles=10
        )
    run = tmp_path / "run"
    run.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        glog = run / "gateway.log"
        gateway = spawn(
            [
                "gateway",
                "--dir",
                str(gateway_pki),
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(run / "gateway.json"),
            ],
            glog,
        )
        procs.append(gateway)
        address = wait_ready(gateway, run / "gateway.json", glog)["address"]
        spec = {
            "gateway": address,
            "bureaus": [
                {"bureau": c, "db": str(data / c / "records.sqlite"), "listen": "127.0.0.1:0"}
                for c in ("DE", "FR")
            ],
        }
        (run / "spec.json").write_text(json.dumps(spec))
        hlog = run / "host.log"
        host = spawn(
            [
                "host",
                "--dir",
                str(host_pki),
                "--spec",
                str(run / "spec.json"),
                "--ready-file",
                str(run / "host.json"),
            ],
            hlog,
        )
        procs.append(host)
        wait_ready(host, run / "host.json", hlog)

        async def ask() -> list[Outcome]:
            outcomes = []
            async with BureauClient.open(pki.PkiDir(client_pki), "AD", address) as client:
                for code in ("DE", "FR"):
                    with sqlite3.connect(data / code / "records.sqlite") as conn:
                        number, issuer = conn.execute(
                            "select number, issuer from documents limit 1"
                        ).fetchone()
                    answer = await client.query(document_query(number, issuer), code)
                    outcomes.append(answer.outcome)
            return outcomes

        assert asyncio.run(ask()) == [Outcome.HIT, Outcome.HIT]
    finally:
        for proc in reversed(procs):
            stop(proc, timeout_s=15)

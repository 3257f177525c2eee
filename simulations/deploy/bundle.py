"""Bundles: a slice of the PKI as one JSON document, the value of one Secret or ConfigMap.

A pod receives exactly the files it reads, found by running the programs on a PKI holding
only their slice (tests/deploy/test_bundle.py does it again):

- ``public`` (ConfigMap ``ncbsim-public``, every pod): ``ca.crt``, ``suite``,
  ``directory/*.entry``, ``revocations.list``, ``users/XX/*.entry`` and ``*.revoked``.
- ``gateway``: ``gateway/tls.{crt,key}``. No bureau's key: it relays sealed envelopes.
- ``group`` (a pod of bureaus): each bureau's ``tls.{crt,key}``, ``signing.key``,
  ``encryption.key`` and ``previous/*.key`` (kept through a rotation's grace period).
  Not ``bureaus/XX/ca.key``: issuing users is the operator's act, on the operator's
  machine; not its users' keys, which belong to the users' own machines.
- ``load``: the requesters' keys, the same four files each.

The root key (``ca.key``) and the operator's key are in no bundle. A bundle is
``{"version": 1, "files": {"RELATIVE/PATH": "BASE64", ...}}``. Podman 4.3 hands a Secret's
value to the container base64-encoded (containers/podman#16625), so :func:`read_bundle`
takes it raw or base64-wrapped: JSON starts with ``{``, base64 text never does.
:func:`unpack` writes files with the modes of docs/files.md (folders 0700, private files
0600, public ones 0644).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path, PurePosixPath

from ncbsim import private
from ncbsim.errors import ConfigError

VERSION = 1
ROLES = ("public", "gateway", "group", "load")
PARTY_FILES = ("tls.crt", "tls.key", "signing.key", "encryption.key")
"""What a bureau's node (or a requester's client) reads from its folder."""


def is_public(path: str) -> bool:
    """Whether a PKI file is public (0644 on disk): the root certificate, the suite, the
    signed directory, revocations and user entries. Everything else is private."""
    parts = PurePosixPath(path).parts
    if path in ("ca.crt", "suite", "revocations.list"):
        return True
    return parts[0] in ("directory", "users")


def _public_paths(root: Path) -> list[str]:
    found = [name for name in ("ca.crt", "suite", "revocations.list") if (root / name).is_file()]
    found += [f"directory/{p.name}" for p in sorted((root / "directory").glob("*.entry"))]
    users = sorted([*root.glob("users/*/*.entry"), *root.glob("users/*/*.revoked")])
    found += [p.relative_to(root).as_posix() for p in users]
    return found


def _party_paths(root: Path, code: str) -> list[str]:
    folder = root / "bureaus" / code
    missing = [name for name in PARTY_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"{folder}: missing {', '.join(missing)} (not a bureau of this PKI?)")
    paths = [f"bureaus/{code}/{name}" for name in PARTY_FILES]
    paths += [p.relative_to(root).as_posix() for p in sorted(folder.glob("previous/*.key"))]
    return paths


def slice_paths(pki_root: Path, role: str, bureaus: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The PKI files (relative paths) a pod of ``role`` needs: ``public``, ``gateway``,
    ``group`` (the keys of ``bureaus``) or ``load`` (the keys of the requesters
    ``bureaus``). See the module docstring for what each holds and why."""
    if role == "public":
        if not (pki_root / "ca.crt").is_file():
            raise ConfigError(f"{pki_root}: no ca.crt (not a PKI folder)")
        return _public_paths(pki_root)
    if role == "gateway":
        return ["gateway/tls.crt", "gateway/tls.key"]
    if role in ("group", "load"):
        if not bureaus:
            raise ConfigError(f"a {role} bundle needs bureaus")
        return [path for code in bureaus for path in _party_paths(pki_root, code)]
    raise ConfigError(f"unknown bundle role {role!r}; choose {', '.join(ROLES)}")


def make_bundle(pki_root: Path, paths: list[str]) -> bytes:
    """The bundle (JSON bytes) of ``paths`` under ``pki_root``, in a stable order so that a
    re-render of unchanged keys writes the same bytes."""
    files = {}
    for path in sorted(paths):
        _check_path(path)
        files[path] = base64.b64encode((pki_root / path).read_bytes()).decode("ascii")
    return json.dumps({"version": VERSION, "files": files}, indent=1).encode() + b"\n"


def _check_path(path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or "\\" in path or "\x00" in path:
        raise ConfigError(f"bundle: refused path {path!r} (not relative)")
    if any(part in ("..", ".", "") for part in path.split("/")):
        raise ConfigError(f"bundle: refused path {path!r} (. or .. or an empty part)")
    return path


def read_bundle(data: bytes) -> dict[str, bytes]:
    """The files of a bundle, by relative path. Takes the JSON raw or base64-wrapped;
    refuses an absolute path, ``..``, an unknown version or a malformed document."""
    text = data.strip()
    if not text.startswith(b"{"):
        try:
            text = base64.b64decode(b"".join(text.split()), validate=True).strip()
        except (binascii.Error, ValueError):
            raise ConfigError("bundle: neither JSON nor base64-wrapped JSON") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError("bundle: not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ConfigError(f"bundle: unknown version {version!r} (this ncbsim reads {VERSION})")
    files = doc.get("files")
    if not isinstance(files, dict):
        raise ConfigError("bundle: no files object")
    out = {}
    for path, value in files.items():
        _check_path(path)
        if not isinstance(value, str):
            raise ConfigError(f"bundle: {path}: expected base64 text")
        try:
            out[path] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"bundle: {path}: not base64") from None
    return out


def unpack(bundles: list[Path], dest: Path) -> int:
    """Write the files of every bundle under ``dest`` (a PKI folder); the number written.

    Folders are made 0700 and files 0600, public ones 0644 (docs/files.md); a file is
    replaced atomically. Two bundles may hold the same path only with the same bytes.
    """
    merged: dict[str, bytes] = {}
    for path in bundles:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            files = read_bundle(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for name, content in files.items():
            if merged.get(name, content) != content:
                raise ConfigError(f"{path}: {name} differs from another bundle's")
            merged[name] = content
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    private.private_folder(dest)
    for name, content in sorted(merged.items()):
        target = dest / name
        for parent in reversed(target.relative_to(dest).parents[:-1]):
            folder = dest / parent
            folder.mkdir(exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.tmp")
        mode = 0o644 if is_public(name) else 0o600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.chmod(tmp, mode)  # the umask may have narrowed it; a public file must be 0644
        os.replace(tmp, target)
    return len(merged)

"""Build the ncbsim container image from Debian packages and PyPI alone (``make image``).

No base image is pulled and no registry is used:

1. a wheel of this checkout (``pip wheel --no-deps``) and every dependency as a binary
   wheel for the image's platform (CPython 3.11, manylinux, glibc 2.36), at the versions
   this checkout's venv holds (``pip freeze`` as constraints), cached in build/image/wheels;
2. a root filesystem from ``mmdebstrap`` (bookworm, the ``essential`` variant, smaller
   than ``minbase``: no apt) with Debian's python3 and no docs, man pages or locales;
   its customize hooks make a venv in /opt/ncbsim and install the wheels with a pip run
   from its own wheel (so neither pip nor setuptools is left in the image), add the user
   ``ncbsim`` (uid/gid 10001) and its folders /var/lib/ncbsim and /run/ncbsim, and drop
   the wheelhouse, test suites of dependencies, logs and caches;
3. ``podman import`` of that tarball with USER, WORKDIR, ENV, ENTRYPOINT and the OCI
   labels, tagged ``localhost/ncbsim:<version>`` and ``:latest``, then
   ``podman save --format oci-archive`` to build/image/ncbsim-<version>.oci.tar;
4. checks in throw-away containers (read-only root, no network): ``--help`` runs, the user
   is 10001, no C compiler, ``import ncbsim, grpc, faiss`` works.

A stamp (build/image/stamp.json) holds a digest of what goes into the image (the sources
the wheel is built from, the pinned dependencies and this script); when it matches and
the image and archive are still there, nothing is rebuilt unless ``--force`` (FORCE=1).
Needs root (mmdebstrap's root mode, rootful podman) and Debian's mmdebstrap and podman.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ncbsim import __version__
from ncbsim.errors import NcbsimError
from ncbsim.simulations.deploy.podman import (
    IMAGE_NAME,
    containers_conf,
    image_ref,
    podman_env,
    require_binaries,
    require_podman,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "ncbsim", "node", "gateway", "simulations", "load")
"""What the wheel is built from (the same list tests/test_packaging.py copies)."""
IGNORED = ("__pycache__", ".pyc", ".egg-info")
SUITE = "bookworm"
PYTHON_TAG = "3.11"
GLIBC_MINOR = 36  # bookworm's glibc 2.36: manylinux wheels up to manylinux_2_36 run there
VENV = "/opt/ncbsim"
UID = 10001
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",  # licences stay
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/lib/*/gconv/*",  # glibc's iconv charsets (8 MB): Python never uses them
)
PRECOMPILE = '''"""Import every ncbsim module once: the image then holds the bytecode of exactly
the modules ncbsim uses (its root filesystem is read-only at run time: nothing is cached)."""
import importlib, pkgutil, ncbsim
failed = []
for module in pkgutil.walk_packages(ncbsim.__path__, "ncbsim."):
    if not module.name.endswith("__main__"):
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed.append(f"{module.name}: {exc!r}")
if failed:
    raise SystemExit("cannot import: " + "; ".join(failed))
'''
"""Run in the image at build time (pip installs with --no-compile): bytecode only for what
ncbsim imports, not for every module of every dependency."""
SLIM = (
    # Test suites that dependencies ship inside their packages (numpy, gevent, psutil, ...):
    # nothing imports them at run time.
    f"find $1{VENV} -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {{}} +",
    "rm -rf $1/tmp/wheels $1/tmp/mpl $1/var/cache/debconf/*-old $1/var/lib/dpkg/*-old $1/var/log/*",
    "rm -rf $1/var/cache/ldconfig/aux-cache $1/root/.cache",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Stamp:
    """What the last build made, as kept in build/image/stamp.json."""

    digest: str
    """The digest of the image's inputs (:func:`inputs_digest`)."""
    ref: str
    """The image reference it was tagged with."""
    archive: str
    """The file name of the OCI archive, in the stamp's folder."""

    @classmethod
    def read(cls, path: Path) -> Stamp | None:
        """The stamp at ``path``, or None when it is missing or unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fields = {name: str(data[name]) for name in ("digest", "ref", "archive")}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(**fields)

    def write(self, path: Path) -> None:
        """Write the stamp (after a build has succeeded)."""
        text = json.dumps({"digest": self.digest, "ref": self.ref, "archive": self.archive})
        path.write_text(text + "\n", encoding="utf-8")


def _tree_files(root: Path, names: Iterable[str]) -> list[Path]:
    """Every file under the named paths (links recorded as links, not followed), sorted."""
    files: list[Path] = []
    for name in names:
        top = root / name
        if top.is_symlink() or top.is_file():
            files.append(top)
            continue
        for folder, dirs, entries in os.walk(top):
            dirs[:] = [d for d in dirs if not d.endswith(IGNORED)]
            here = Path(folder)
            files.extend(here / e for e in entries if not e.endswith(IGNORED))
            files.extend(here / d for d in dirs if (here / d).is_symlink())
    return sorted(files)


def inputs_digest(root: Path, names: Iterable[str], extra: Sequence[bytes] = ()) -> str:
    """A SHA-256 over the relative path and content of every file under ``names`` (a link
    counts as its target's text), then each ``extra`` blob: what the image is built from."""
    digest = hashlib.sha256()
    for path in _tree_files(root, names):
        rel = path.relative_to(root).as_posix().encode()
        body = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        for part in (rel, body):
            digest.update(len(part).to_bytes(8, "big") + part)
    for blob in extra:
        digest.update(len(blob).to_bytes(8, "big") + blob)
    return digest.hexdigest()


def needs_build(
    stamp: Stamp | None, *, digest: str, ref: str, image_present: bool, archive_present: bool,
    force: bool,
) -> str | None:  # fmt: skip
    """Why the image must be built (the first reason that applies), or None when the last
    build still stands."""
    if stamp is None:
        return "forced (FORCE=1)" if force else "no earlier build"
    reasons = (
        (force, "forced (FORCE=1)"),
        (stamp.digest != digest, "sources, dependencies or recipe changed"),
        (stamp.ref != ref, f"the version changed ({stamp.ref} -> {ref})"),
        (not image_present, f"{ref} is not in podman's storage"),
        (not archive_present, f"{stamp.archive} is missing"),
    )
    return next((reason for applies, reason in reasons if applies), None)


def constraints(freeze: str) -> str:
    """Pins for the image from ``pip freeze`` output: name==version lines only (editable
    and direct-URL installs, such as ncbsim itself, are left out)."""
    keep = [line for line in freeze.splitlines() if "==" in line and " @ " not in line]
    return "\n".join(sorted(keep, key=str.lower)) + "\n"


def wheel_platforms(machine: str = "") -> list[str]:
    """The manylinux platform tags whose wheels run in the image (the builder's architecture,
    glibc 2.36 down to 2.5): pip does not widen a ``--platform`` tag by itself."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine) or platform.machine()
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(GLIBC_MINOR, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def mmdebstrap_argv(
    *, rootfs: Path, wheels: Path, pip_wheel: str, version: str, sources: Sequence[Path],
) -> list[str]:  # fmt: skip
    """The mmdebstrap command that writes the image's root filesystem as a tarball."""
    inside = "chroot $1 env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 PIP_CONFIG_FILE=/dev/null"
    inside += " MPLCONFIGDIR=/tmp/mpl"
    install = (
        f"{inside} {VENV}/bin/python /tmp/wheels/{pip_wheel}/pip install --quiet --no-index"
        " --find-links /tmp/wheels --constraint /tmp/wheels/constraints.txt --no-cache-dir"
        f" --disable-pip-version-check --no-warn-script-location --no-compile ncbsim=={version}"
    )
    precompile = f"{inside} {VENV}/bin/python /tmp/wheels/precompile.py"
    account = (
        f"echo 'ncbsim:x:{UID}:{UID}:ncbsim:/var/lib/ncbsim:/usr/sbin/nologin' >> $1/etc/passwd"
        f" && echo 'ncbsim:x:{UID}:' >> $1/etc/group"
        f" && install -d -m 0750 -o {UID} -g {UID} $1/var/lib/ncbsim $1/run/ncbsim"
    )
    hooks = [
        f"copy-in {wheels} /tmp",
        f"{inside} python3 -m venv --without-pip {VENV}",
        install,
        precompile,
        account,
        *SLIM,
    ]
    # merged /usr from mmdebstrap's hook (with usr-is-merged): else apt satisfies
    # init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which pulls in perl
    argv = ["mmdebstrap", "--variant=essential", "--include=python3,libstdc++6", "--quiet"]
    argv += ["--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
    argv += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    return [*argv, SUITE, str(rootfs), *map(str, sources)]


def import_changes(*, version: str, source: str, revision: str, created: str) -> list[str]:
    """The ``podman import --change`` instructions: user, folders, environment, entry point
    and the OCI labels."""
    labels = {
        "org.opencontainers.image.title": "ncbsim",
        "org.opencontainers.image.description": "ncbsim: a simulated I-24/7 style police network",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
    }
    changes = [f"USER {UID}", "WORKDIR /var/lib/ncbsim", f"ENV PATH={PATH}"]
    changes += ["ENV HOME=/var/lib/ncbsim", "ENV LANG=C.UTF-8", "ENV PYTHONUNBUFFERED=1"]
    changes += ["ENV PYTHONDONTWRITEBYTECODE=1"]  # compiled at build; the root is read-only
    changes += [f'ENTRYPOINT ["{VENV}/bin/ncbsim"]', 'CMD ["--help"]']
    # podman takes a LABEL's value as written (spaces included; double quotes are dropped)
    changes += [f"LABEL {key}={value}" for key, value in labels.items()]
    return changes


def apt_sources() -> list[Path]:
    """This machine's apt sources (one-line and deb822 files), which mmdebstrap reads."""
    etc = Path("/etc/apt")
    found = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    found += sorted(etc.glob("sources.list.d/*.list"))
    found += sorted(etc.glob("sources.list.d/*.sources"))
    return [path for path in found if path.stat().st_size > 0]


def human(size: int) -> str:
    """A size in MB (10^6 bytes), as podman prints them."""
    return f"{size / 1e6:.1f} MB"


def _run(
    argv: Sequence[str], *, env: dict[str, str] | None = None, quiet: bool = False,
    check: bool = True,
) -> str:  # fmt: skip
    """Run a step (echoed unless quiet) and return its stdout when ``quiet``; a failing
    step ends the build with its status, unless ``check`` is false."""
    if not quiet:
        print("+", shlex.join(argv) if len(argv) < 12 else f"{shlex.join(argv[:3])} ...")
        sys.stdout.flush()
    result = subprocess.run(argv, env=env, text=True, capture_output=quiet, check=False)
    if check and result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout + result.stderr)
        sys.exit(f"build_image: {Path(argv[0]).name} {argv[1]} failed (exit {result.returncode})")
    return result.stdout if quiet and result.returncode == 0 else ""


def build_wheel(out: Path) -> Path:
    """The ncbsim wheel, built from a copy of the sources so the checkout stays clean."""
    for old in out.glob("ncbsim-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        for name in SOURCES:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
            else:
                shutil.copy2(path, src / name)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--quiet", "--wheel-dir", str(out), str(src)])  # fmt: skip
    (wheel,) = out.glob("ncbsim-*.whl")
    return wheel


def download_wheels(wheels: Path, wheel: Path) -> str:
    """Every dependency of ``wheel`` as a binary wheel for the image, and pip's own wheel
    (to install with, never installed); pip's wheel file name."""
    target = ["--only-binary=:all:", "--python-version", PYTHON_TAG, "--implementation", "cp"]
    target += ["--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    target += [flag for tag in wheel_platforms() for flag in ("--platform", tag)]
    pip = [sys.executable, "-m", "pip", "download", "-qq", "--dest", str(wheels)]
    _run([*pip, *target, "--constraint", str(wheels / "constraints.txt"), str(wheel)])
    version = _run([sys.executable, "-m", "pip", "--version"], quiet=True).split()[1]
    _run([*pip, "--no-deps", *target, f"pip=={version}"])
    return f"pip-{version}-py3-none-any.whl"


def unpacked_size(tarball: Path) -> int:
    """The bytes of the files in a tarball (the image's unpacked size)."""
    with tarfile.open(tarball) as tar:
        return sum(member.size for member in tar if member.isfile())


def gzip_size(path: Path) -> int:
    """The size of ``path`` gzip-compressed (level 6, as registries store layers)."""
    packer, total = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            total += len(packer.compress(chunk))
    return total + len(packer.flush())


def _git(*args: str) -> str:
    """A git query about this checkout ("" when git or the answer is missing)."""
    git = shutil.which("git")
    return _run([git, "-C", str(ROOT), *args], quiet=True, check=False).strip() if git else ""


def check_image(podman: str, ref: str, env: dict[str, str]) -> None:
    """Run the image's checks in throw-away containers (read-only root, no network)."""
    run = [podman, "run", "--rm", "--read-only", "--network", "none"]
    usage = _run([*run, ref, "--help"], env=env, quiet=True)
    if not usage.startswith("usage: ncbsim"):
        sys.exit(f"build_image: --help printed {usage[:200]!r}")
    uid = _run([*run, "--entrypoint", "id", ref, "-u"], env=env, quiet=True).strip()
    if uid != str(UID):
        sys.exit(f"build_image: the image runs as uid {uid}, not {UID}")
    probe = "for c in gcc cc c++ clang; do command -v $c; done; exit 0"
    compilers = _run([*run, "--entrypoint", "sh", ref, "-c", probe], env=env, quiet=True)
    if compilers.strip():
        sys.exit(f"build_image: compilers in the image: {compilers.split()}")
    imports = "import ncbsim, grpc, faiss; print(ncbsim.__version__)"
    version = _run([*run, "--entrypoint", "python", ref, "-c", imports], env=env, quiet=True)
    print(f"checks passed: --help, uid {uid}, no compiler, import ncbsim {version.strip()}")


def build(podman: str, env: dict[str, str], *, out: Path, pins: str, why: str) -> Path:
    """Build the image, tag it and save its archive; the archive's path."""
    print(f"building {image_ref()}: {why}", flush=True)
    wheels, rootfs = out / "wheels", out / "rootfs.tar"
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / "constraints.txt").write_text(pins, encoding="utf-8")
    (wheels / "precompile.py").write_text(PRECOMPILE, encoding="utf-8")
    wheel = build_wheel(wheels)
    pip_wheel = download_wheels(wheels, wheel)
    rootfs.unlink(missing_ok=True)
    _run(mmdebstrap_argv(rootfs=rootfs, wheels=wheels, pip_wheel=pip_wheel,
                         version=__version__, sources=apt_sources()))  # fmt: skip
    ref = image_ref()
    old = _run([podman, "image", "inspect", "--format", "{{.Id}}", ref], env=env, quiet=True,
               check=False).strip()  # fmt: skip
    source = _git("config", "--get", "remote.origin.url") or ROOT.as_uri()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    revision = _git("describe", "--always", "--dirty", "--abbrev=40")
    changes = import_changes(version=__version__, source=source, revision=revision, created=created)
    flags = [flag for change in changes for flag in ("--change", change)]
    message = f"ncbsim {__version__} from {wheel.name}"
    _run([podman, "import", "--quiet", *flags, "--message", message, str(rootfs), ref], env=env)
    _run([podman, "tag", ref, f"{IMAGE_NAME}:latest"], env=env)
    if old:  # the previous build, unless something still holds it (a tag or a container)
        _run([podman, "rmi", old], env=env, quiet=True, check=False)
    archive = out / f"ncbsim-{__version__}.oci.tar"
    archive.unlink(missing_ok=True)
    _run([podman, "save", "--quiet", "--format", "oci-archive", "-o", str(archive), ref], env=env)
    check_image(podman, ref, env)
    unpacked, layer = unpacked_size(rootfs), gzip_size(rootfs)
    rootfs.unlink()
    print(f"  unpacked {human(unpacked)}; archive {human(archive.stat().st_size)};"
          f" its layer gzip-compressed {human(layer)}")  # fmt: skip
    return archive


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or find up to date) the image, save its archive, print sizes and time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "image")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        require_binaries("mmdebstrap")
        podman = require_podman()
    except NcbsimError as exc:
        sys.exit(f"build_image: {exc}")
    if os.geteuid() != 0:
        sys.exit("build_image: run it as root (mmdebstrap's root mode, rootful podman)")
    out: Path = args.out
    env = podman_env(containers_conf(out / "podman"))
    ref, archive, stamp_path = (
        image_ref(),
        out / f"ncbsim-{__version__}.oci.tar",
        out / "stamp.json",
    )
    pins = constraints(
        _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], quiet=True)
    )
    digest = inputs_digest(ROOT, SOURCES, [Path(__file__).read_bytes(), pins.encode()])
    exists = subprocess.run([podman, "image", "exists", ref], env=env, check=False)
    why = needs_build(
        Stamp.read(stamp_path), digest=digest, ref=ref, force=args.force,
        image_present=exists.returncode == 0, archive_present=archive.is_file(),
    )  # fmt: skip
    if why is not None:
        stamp_path.unlink(missing_ok=True)
        build(podman, env, out=out, pins=pins, why=why)
        Stamp(digest=digest, ref=ref, archive=archive.name).write(stamp_path)
    size = _run([podman, "image", "inspect", "--format", "{{.Size}}", ref], env=env, quiet=True)
    state = "built" if why else "up to date (FORCE=1 rebuilds it)"
    print(f"{ref} {state} in {time.monotonic() - started:.1f} s: podman size {human(int(size))},"
          f" archive {archive} {human(archive.stat().st_size)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

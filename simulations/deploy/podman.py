"""Podman on this machine: the containers.conf it needs, its environment, the image's name.

Rootful Podman 4.3.1 (Debian bookworm) on a machine without systemd and without crun
needs a ``containers.conf`` saying so: the ``runc`` runtime, the ``cgroupfs`` cgroup
manager, events in a file rather than the journal, and default ulimits no higher than the
hard limits of the calling process (a container asking for more fails to start with
"error setting rlimit"). :func:`containers_conf` writes one into a folder of the caller's,
and :func:`podman_env` points ``CONTAINERS_CONF`` at it, so nothing under /etc is touched.

Used by ``scripts/build_image.py`` (``make image``) and by the containers smoke test.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from pathlib import Path

from ncbsim import __version__
from ncbsim.errors import NcbsimError

IMAGE_NAME = "localhost/ncbsim"
"""The image's repository: ``localhost/`` because it is built here and never pulled."""

APT_PACKAGES = (
    "podman",
    "runc",
    "catatonit",
    "fuse-overlayfs",
    "mmdebstrap",
    "uidmap",
    "netavark",
    "aardvark-dns",
)
"""The Debian packages the image build and the smoke test need (what ``.ci/run`` installs)."""

PODMAN_BINARIES = ("podman", "runc", "catatonit")
"""Podman itself, the runtime the conf names, and the init podman builds its pause image from."""

ULIMIT_CAPS = {"nofile": 65536, "nproc": 32768}
"""The most a container is given even where the hard limit is higher (or unlimited). Podman
4.3.1 runs with an nproc hard limit of 32768 (measured here: its own process and conmon's,
under a shell allowed 96367), and runc cannot give a container more than that."""

PID_MAX = Path("/proc/sys/kernel/pid_max")

_RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}


def image_ref(version: str = __version__) -> str:
    """The image this checkout builds and the manifests run: ``localhost/ncbsim:<version>``."""
    return f"{IMAGE_NAME}:{version}"


def ulimits() -> dict[str, int]:
    """Each container ulimit: the caller's hard limit, capped by :data:`ULIMIT_CAPS` (and
    nproc by the kernel's pid_max)."""
    limits = {}
    for name, which in _RLIMITS.items():
        _soft, hard = resource.getrlimit(which)
        cap = ULIMIT_CAPS[name]
        limits[name] = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    with contextlib.suppress(OSError, ValueError):  # no more processes than pids
        limits["nproc"] = min(limits["nproc"], int(PID_MAX.read_text(encoding="ascii")))
    return limits


def render_conf(limits: dict[str, int]) -> str:
    """The text of the containers.conf for these ulimits (soft = hard = the given value)."""
    quoted = ", ".join(f'"{name}={value}:{value}"' for name, value in sorted(limits.items()))
    return (
        "# Written by ncbsim (simulations/deploy/podman.py) for rootful podman without\n"
        "# systemd: runc, cgroupfs, file events, ulimits within the caller's hard limits.\n"
        "[containers]\n"
        f"default_ulimits = [{quoted}]\n"
        "\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def containers_conf(folder: Path) -> Path:
    """Write ``folder/containers.conf`` (the folder is created) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "containers.conf"
    path.write_text(render_conf(ulimits()), encoding="utf-8")
    return path


def podman_env(conf: Path) -> dict[str, str]:
    """This process's environment with ``CONTAINERS_CONF`` set to ``conf``."""
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def require_binaries(*names: str) -> dict[str, str]:
    """The path of each named program, or an NcbsimError naming every one missing and the
    apt line that installs them."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise NcbsimError(
            f"{', '.join(missing)} not found on PATH; install them with: "
            f"apt-get install --no-install-recommends {' '.join(APT_PACKAGES)}"
        )
    return {name: path for name, path in found.items() if path is not None}


def require_podman() -> str:
    """The path of ``podman``, once podman, runc and catatonit are all found (else an
    NcbsimError naming what is missing and the apt line)."""
    return require_binaries(*PODMAN_BINARIES)["podman"]

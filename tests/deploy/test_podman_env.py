"""simulations/deploy/podman.py: the containers.conf rootful podman needs here, the
environment that points podman at it, the check for podman's binaries, the image name."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ncbsim import __version__
from ncbsim.errors import NcbsimError
from ncbsim.simulations.deploy import podman


def _ulimits(conf: Path) -> dict[str, tuple[int, int]]:
    data = tomllib.loads(conf.read_text(encoding="utf-8"))
    limits = {}
    for entry in data["containers"]["default_ulimits"]:
        name, values = entry.split("=")
        soft, hard = values.split(":")
        limits[name] = (int(soft), int(hard))
    return limits


def test_the_conf_names_runc_cgroupfs_and_file_events(tmp_path: Path) -> None:
    """The written conf is TOML that selects runc, cgroupfs and file events (no systemd)."""
    conf = podman.containers_conf(tmp_path / "podman")
    assert conf == tmp_path / "podman" / "containers.conf"
    engine = tomllib.loads(conf.read_text(encoding="utf-8"))["engine"]
    assert engine == {"runtime": "runc", "cgroup_manager": "cgroupfs", "events_logger": "file"}


def test_the_ulimits_stay_within_this_process_hard_limits(tmp_path: Path) -> None:
    """nofile and nproc are both given, none above the hard limit of the calling process
    (runc fails with "error setting rlimit" otherwise), nor above podman's nproc cap."""
    limits = _ulimits(podman.containers_conf(tmp_path))
    assert set(limits) == {"nofile", "nproc"}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = limits[name]
        assert 0 < soft <= hard <= podman.ULIMIT_CAPS[name]
        process_hard = resource.getrlimit(which)[1]
        if process_hard != resource.RLIM_INFINITY:
            assert hard <= process_hard


def _lower_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 1000))


def test_a_lowered_hard_limit_is_followed(tmp_path: Path) -> None:
    """A caller whose hard nofile limit is 1000 writes nofile=1000:1000."""
    code = (
        "import sys; from pathlib import Path;"
        "from ncbsim.simulations.deploy.podman import containers_conf;"
        "containers_conf(Path(sys.argv[1]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        preexec_fn=_lower_nofile, check=True, timeout=60,
    )  # fmt: skip
    assert _ulimits(tmp_path / "containers.conf")["nofile"] == (1000, 1000)


def test_podman_env_adds_containers_conf_and_keeps_the_rest(tmp_path: Path) -> None:
    """The environment is this process's, plus CONTAINERS_CONF naming the conf."""
    conf = podman.containers_conf(tmp_path)
    env = podman.podman_env(conf)
    assert env["CONTAINERS_CONF"] == str(conf)
    assert {k: v for k, v in env.items() if k != "CONTAINERS_CONF"} == {
        k: v for k, v in os.environ.items() if k != "CONTAINERS_CONF"
    }


def test_require_podman_names_every_missing_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing on PATH the error names podman, runc and catatonit and the apt line."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NcbsimError) as caught:
        podman.require_podman()
    message = str(caught.value)
    assert message.startswith("podman, runc, catatonit not found on PATH")
    assert "apt-get install --no-install-recommends podman runc catatonit" in message


def test_require_podman_names_only_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With podman and runc on PATH (presence is all it checks), only catatonit is named;
    with all three, podman's path is returned."""
    target = Path(os.path.realpath("/bin/sh"))
    for name in ("podman", "runc"):
        (tmp_path / name).symlink_to(target)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NcbsimError, match=r"^catatonit not found on PATH"):
        podman.require_podman()
    (tmp_path / "catatonit").symlink_to(target)
    assert podman.require_podman() == str(tmp_path / "podman")


def test_image_ref_is_the_local_name_with_the_package_version() -> None:
    """The image is localhost/ncbsim:<version>, never a registry's."""
    assert podman.image_ref() == f"localhost/ncbsim:{__version__}"
    assert podman.image_ref("9.9.9") == "localhost/ncbsim:9.9.9"

"""The built wheel installs one top-level name, ``ncbsim``: the repository's top folders
node/, gateway/, simulations/ and load/ enter it as ``ncbsim.node`` and so on, so they can
never collide with another installed package called ``node`` or ``load``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDERS = ("node", "gateway", "simulations", "load")
SOURCES = ("pyproject.toml", "README.md", "ncbsim", *TOP_FOLDERS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the links in ncbsim/ kept as links), so
    the build leaves nothing in the repository."""
    source = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("ncbsim-*.whl")
    return built


def test_the_wheel_has_one_top_level_name(wheel: Path) -> None:
    """Everything the wheel installs sits under ncbsim/ (and its dist-info)."""
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"ncbsim", f"{wheel.name.split('-py')[0]}.dist-info"}


def test_every_top_folder_module_and_data_file_is_in_the_wheel(wheel: Path) -> None:
    """Each module of the top folders, and the scenario and SLO files, install under
    ncbsim/<folder>/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"ncbsim/{path.relative_to(ROOT).as_posix()}"
        for folder in TOP_FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts
    }
    assert expected - names == set()
    assert "ncbsim/simulations/scenarios/quickstart.toml" in names
    assert "ncbsim/load/slo.toml" in names


def test_the_installed_wheel_imports_as_ncbsim_only(wheel: Path, tmp_path: Path) -> None:
    """Installed on its own, the wheel's programs import as ncbsim.node and friends, and
    no bare ``node``, ``gateway``, ``simulations`` or ``load`` comes with it."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
         str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == [
        "bin",
        "ncbsim",
    ]
    probe = (
        "import importlib.util, ncbsim.node.server, ncbsim.gateway.server, "
        "ncbsim.simulations.network, ncbsim.load.runner, ncbsim.cli\n"
        "print(ncbsim.node.server.__file__)\n"
        "print([n for n in ('node', 'gateway', 'simulations', 'load') "
        "if importlib.util.find_spec(n) is not None])\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{probe}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    where, bare = done.stdout.splitlines()
    assert Path(where).is_relative_to(site / "ncbsim" / "node")
    assert bare == "[]"

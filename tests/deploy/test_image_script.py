"""scripts/build_image.py's pure parts: the digest of the image's inputs and the stamp that
decides whether ``make image`` rebuilds, and the commands it builds (no image is built here;
the containers smoke test runs the image itself)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build_image.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The build script, imported as a module (its main() is not run)."""
    spec = importlib.util.spec_from_file_location("build_image", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree shaped like the checkout: a package with a linked folder."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "server.py").write_text("print('node')\n", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "node").symlink_to("../node")
    return tmp_path


NAMES = ("pyproject.toml", "pkg", "node")


def test_the_digest_is_stable_and_follows_every_input(script: ModuleType, tree: Path) -> None:
    """The same tree gives the same digest; editing, adding or renaming a file, relinking a
    folder or changing an extra input (pins, recipe) each change it."""
    first = script.inputs_digest(tree, NAMES, [b"pins"])
    assert first == script.inputs_digest(tree, NAMES, [b"pins"])
    assert first != script.inputs_digest(tree, NAMES, [b"other pins"])
    seen = {first}

    def changed() -> None:
        digest = script.inputs_digest(tree, NAMES, [b"pins"])
        assert digest not in seen
        seen.add(digest)

    (tree / "node" / "server.py").write_text("print('changed')\n", encoding="utf-8")
    changed()
    (tree / "pkg" / "new.py").write_text("", encoding="utf-8")
    changed()
    (tree / "pkg" / "new.py").rename(tree / "pkg" / "renamed.py")
    changed()
    (tree / "pkg" / "node").unlink()
    (tree / "pkg" / "node").symlink_to("../elsewhere")
    changed()
    (tree / "pyproject.toml").write_text("[project]\nname = 'y'\n", encoding="utf-8")
    changed()


def test_caches_and_build_leftovers_do_not_change_the_digest(
    script: ModuleType, tree: Path
) -> None:
    """Bytecode caches and egg-info (not in the wheel) leave the digest as it was."""
    before = script.inputs_digest(tree, NAMES)
    (tree / "node" / "__pycache__").mkdir()
    (tree / "node" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0")
    (tree / "node" / "stray.pyc").write_bytes(b"\0")
    (tree / "pkg" / "x.egg-info").mkdir()
    (tree / "pkg" / "x.egg-info" / "PKG-INFO").write_text("x", encoding="utf-8")
    assert script.inputs_digest(tree, NAMES) == before


def test_the_real_checkout_digest_covers_the_packaged_sources(script: ModuleType) -> None:
    """The checkout's digest is computed over the folders the wheel is built from."""
    files = script._tree_files(ROOT, script.SOURCES)
    rels = {path.relative_to(ROOT).as_posix() for path in files}
    assert {"pyproject.toml", "README.md", "node/server.py", "ncbsim/node"} <= rels
    assert not any("__pycache__" in rel for rel in rels)


def test_needs_build_says_why_or_none(script: ModuleType) -> None:
    """No stamp, a changed digest or version, a missing image or archive, or FORCE each
    trigger a build with their reason; a matching stamp with both present does not."""
    stamp = script.Stamp(digest="d1", ref="localhost/ncbsim:1.0", archive="ncbsim-1.0.oci.tar")
    same = {"digest": "d1", "ref": "localhost/ncbsim:1.0", "force": False}
    present = {"image_present": True, "archive_present": True}
    assert script.needs_build(stamp, **same, **present) is None
    assert script.needs_build(None, **same, **present) == "no earlier build"
    assert script.needs_build(stamp, **{**same, "force": True}, **present) == "forced (FORCE=1)"
    assert "changed" in script.needs_build(stamp, **{**same, "digest": "d2"}, **present)
    version = script.needs_build(stamp, **{**same, "ref": "localhost/ncbsim:2.0"}, **present)
    assert version == "the version changed (localhost/ncbsim:1.0 -> localhost/ncbsim:2.0)"
    gone = script.needs_build(stamp, **same, image_present=False, archive_present=True)
    assert gone == "localhost/ncbsim:1.0 is not in podman's storage"
    lost = script.needs_build(stamp, **same, image_present=True, archive_present=False)
    assert lost == "ncbsim-1.0.oci.tar is missing"


def test_the_stamp_round_trips_and_a_bad_one_reads_as_none(
    script: ModuleType, tmp_path: Path
) -> None:
    """A written stamp reads back equal; a missing, truncated or incomplete one is None
    (so the next run rebuilds rather than failing)."""
    path = tmp_path / "stamp.json"
    assert script.Stamp.read(path) is None
    stamp = script.Stamp(digest="ab" * 32, ref="localhost/ncbsim:0.1.0", archive="a.oci.tar")
    stamp.write(path)
    assert script.Stamp.read(path) == stamp
    path.write_text('{"digest": "x"', encoding="utf-8")
    assert script.Stamp.read(path) is None
    path.write_text('{"digest": "x", "ref": "y"}', encoding="utf-8")
    assert script.Stamp.read(path) is None


def test_constraints_pin_released_versions_only(script: ModuleType) -> None:
    """pip freeze lines become sorted name==version pins; editable and direct-URL installs
    (ncbsim itself) are left out."""
    freeze = (
        "numpy==2.3.1\n-e /work/ncbsim\nFaker==40.1.0\n"
        "ncbsim @ file:///work/dist/ncbsim-0.1.0-py3-none-any.whl\ngrpcio==1.85.4\n"
    )
    assert script.constraints(freeze) == "Faker==40.1.0\ngrpcio==1.85.4\nnumpy==2.3.1\n"


def test_wheel_platforms_go_from_bookworm_glibc_down(script: ModuleType) -> None:
    """The wheels asked for run on glibc 2.36 (bookworm): manylinux_2_36 down to
    manylinux1, with the legacy aliases, and nothing newer."""
    tags = script.wheel_platforms("amd64")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags
    assert script.wheel_platforms("arm64")[0] == "manylinux_2_36_aarch64"


def test_the_mmdebstrap_command(script: ModuleType, tmp_path: Path) -> None:
    """Bookworm's essential set with python3, no docs or locales, merged /usr without perl,
    the wheels installed by a pip run from its wheel, user 10001 and its folders; the apt
    sources given last."""
    sources = [Path("/etc/apt/sources.list.d/debian.sources")]
    argv = script.mmdebstrap_argv(
        rootfs=tmp_path / "rootfs.tar", wheels=tmp_path / "wheels",
        pip_wheel="pip-26.3-py3-none-any.whl", version="0.1.0", sources=sources,
    )  # fmt: skip
    assert argv[0] == "mmdebstrap"
    assert argv[-3:] == ["bookworm", str(tmp_path / "rootfs.tar"), str(sources[0])]
    assert "--variant=essential" in argv
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    assert "--dpkgopt=path-exclude=/usr/share/locale/*" in argv
    hooks = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--customize-hook=")]
    assert hooks[0] == f"copy-in {tmp_path / 'wheels'} /tmp"
    install = next(hook for hook in hooks if " install " in hook)
    assert "/tmp/wheels/pip-26.3-py3-none-any.whl/pip install" in install
    assert "--no-index" in install
    assert install.endswith("ncbsim==0.1.0")
    assert any("ncbsim:x:10001:10001:" in hook for hook in hooks)
    assert any("-o 10001 -g 10001 $1/var/lib/ncbsim $1/run/ncbsim" in hook for hook in hooks)
    assert "rm -rf $1/tmp/wheels" in hooks[-2]


def test_the_import_changes(script: ModuleType) -> None:
    """The image runs as 10001 in /var/lib/ncbsim with the venv on PATH, ncbsim as its
    entry point, and the OCI labels (as written: podman keeps spaces in a value)."""
    changes = script.import_changes(
        version="0.1.0", source="file:///work/x", revision="abc", created="2030-01-01T00:00:00Z"
    )
    assert "USER 10001" in changes
    assert "WORKDIR /var/lib/ncbsim" in changes
    assert 'ENTRYPOINT ["/opt/ncbsim/bin/ncbsim"]' in changes
    (path,) = [c for c in changes if c.startswith("ENV PATH=")]
    assert path.removeprefix("ENV PATH=").split(":")[0] == "/opt/ncbsim/bin"
    assert "LABEL org.opencontainers.image.version=0.1.0" in changes
    assert "LABEL org.opencontainers.image.source=file:///work/x" in changes
    assert "LABEL org.opencontainers.image.description=ncbsim: a simulated" in " ".join(changes)


def test_the_precompile_helper_is_valid_python(script: ModuleType) -> None:
    """The helper run inside the image at build time compiles (it is a string here)."""
    code = compile(script.PRECOMPILE, "precompile.py", "exec")
    assert "walk_packages" in code.co_names

"""The floors of docs/architecture.md: every import points down a floor, never up.

    4  ncbsim.cli                       the command line
    3  ncbsim.load                      load test and benchmark (drive simulations)
    2  ncbsim.simulations               networks, scenarios, faults
    1  ncbsim.node | ncbsim.gateway     the two programs; neither imports the other
    0  ncbsim.*                         the shared core (envelope, PKI, client, stubs ...)

The test reads every module's source (``ast``, without importing it) and checks every
import in it, lazy ones inside functions and ``TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("node", "gateway")
FLOORS = {"cli": 4, "load": 3, "simulations": 2, "node": 1, "gateway": 1}
"""The packages above the core, by the name of their folder under ``ncbsim``."""
TOP_FOLDERS = ("node", "gateway", "simulations", "load")
"""Folders at the top of the repository that install only as ``ncbsim.<name>``."""


def package_of(module: str) -> str:
    """``cli``, ``load``, ``simulations``, ``node``, ``gateway``, or ``core``."""
    if module == "ncbsim.__main__":  # `python -m ncbsim`: the command line's entry
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "ncbsim" and parts[1] in FLOORS:
        return parts[1]
    return "core"


def floor(module: str) -> int:
    return FLOORS.get(package_of(module), 0)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the ``ncbsim`` package under ``root``, by its dotted name, found
    through the links in ncbsim/ as Python finds them; generated stubs left out."""
    found: dict[str, Path] = {}
    package = root / "ncbsim"
    paths = [
        Path(folder, name)
        for folder, _, names in os.walk(package, followlinks=True)
        for name in names
        if name.endswith(".py")
    ]
    for path in sorted(paths):
        relative = path.relative_to(package).with_suffix("")
        if relative.parts[0] in ("v2", "vendor"):
            continue
        parts = [p for p in relative.parts if p != "__init__"]
        found[".".join(["ncbsim", *parts])] = path
    return found


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations(root: Path) -> list[str]:
    """Every import under ``root`` that points up a floor, across between the two
    programs, or at a top folder's bare name (``import node``)."""
    found: list[str] = []
    for module, path in modules(root).items():
        where = path.relative_to(root)
        mine = package_of(module)
        for line, target in imports(module, path):
            head = target.split(".")[0]
            if head in TOP_FOLDERS:
                found.append(f"{where}:{line}: imports {target}; use ncbsim.{target}")
                continue
            if head != "ncbsim":
                continue
            theirs = package_of(target)
            if floor(target) > floor(module):
                found.append(
                    f"{where}:{line}: {module} (floor {floor(module)}) imports {target} "
                    f"(floor {floor(target)}), up a floor"
                )
            elif mine in PROGRAMS and theirs in PROGRAMS and mine != theirs:
                found.append(f"{where}:{line}: {mine} imports {target}; the programs are apart")
    return found


def test_no_import_points_up_a_floor() -> None:
    """Every import in the package points down a floor: the core imports no program, the
    node and the gateway never import each other, only the command line imports it all."""
    assert violations(ROOT) == []


def test_the_walk_sees_every_package_through_its_link() -> None:
    """The walk reaches node, gateway, simulations and load through ncbsim/'s links, so a
    module there cannot escape the check."""
    seen = {package_of(m) for m in modules(ROOT)}
    assert seen == {"core", *FLOORS}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("pki.py", "def f():\n    from ncbsim.node import store\n", "up a floor"),
        ("node/x.py", "from ncbsim.gateway.limits import RateLimiter\n", "programs are apart"),
        ("gateway/x.py", "import ncbsim.node.store\n", "programs are apart"),
        ("simulations/x.py", "from ncbsim.load import runner\n", "up a floor"),
        ("load/x.py", "from ncbsim.cli import main\n", "up a floor"),
        ("node/x.py", "from . import store\nfrom ..cli import main\n", "up a floor"),
        ("load/x.py", "import simulations.network\n", "use ncbsim.simulations"),
    ],
)
def test_an_upward_import_is_reported(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    """An import up a floor, from one program into the other, or by a bare top-folder
    name is named with its file and line."""
    package = tmp_path / "ncbsim"
    for name in ("node", "gateway", "simulations", "load", "cli"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    path = package / module
    path.write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1
    assert expected in found[0]
    assert found[0].startswith(f"ncbsim/{module}:")


def test_a_downward_import_is_not_reported(tmp_path: Path) -> None:
    """The command line may import every floor, and a program the core."""
    package = tmp_path / "ncbsim"
    for name in ("node", "cli"):
        (package / name).mkdir(parents=True)
    (package / "cli" / "x.py").write_text("from ncbsim.node import store\nimport ncbsim.pki\n")
    (package / "node" / "x.py").write_text("from ncbsim.envelope import seal\n")
    assert violations(tmp_path) == []

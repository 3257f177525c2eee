"""docs/security-tests.md and docs/threat-model.md agree with the attack tests in the suite."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_security_tests.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_security_tests", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_security_tests_doc_matches_the_suite() -> None:
    """Adding, removing or rewording an attack test without regenerating fails here."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_adversary_is_attacked_by_some_test() -> None:
    gen = _generator()
    covered = {a.adversary for a in gen.attacks()}
    assert covered == set(gen.ADVERSARIES)


def _test_functions() -> set[str]:
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(f"{path.relative_to(ROOT)}::{node.name}")
    return names


def test_threat_model_cites_only_tests_that_exist() -> None:
    """Each `tests/...::test_name` the threat model names is a test in the suite."""
    text = (ROOT / "docs" / "threat-model.md").read_text()
    cited = set(re.findall(r"tests/[\w/]+\.py::\w+", text))
    assert cited, "the threat model cites no tests"
    missing = sorted(cited - _test_functions())
    assert not missing, f"docs/threat-model.md cites tests that do not exist: {missing}"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('attack("x", adversary="the butler", expect="y")', "unknown adversary"),
        ('attack(NAME, adversary="replayer", expect="y")', "string literals"),
        ('attack("x", adversary="replayer")', "use attack("),
    ],
)
def test_malformed_markers_are_refused(tmp_path: Path, marker: str, message: str) -> None:
    """The generator refuses a marker it could not render faithfully."""
    (tmp_path / "test_x.py").write_text(
        f"import pytest\n\n@pytest.mark.{marker}\ndef test_x():\n    pass\n"
    )
    gen = _generator()
    gen.ROOT = tmp_path
    with pytest.raises(gen.MarkerError, match=re.escape(message)):
        gen.attacks(tmp_path)

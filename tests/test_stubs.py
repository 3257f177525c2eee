"""The committed gRPC stubs are exactly what scripts/gen_protos.py generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stubs_match_the_generator(tmp_path: Path) -> None:
    """Editing a .proto without regenerating (or editing a stub by hand) fails here."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        timeout=120,
    )
    generated = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py*")}
    committed = {  # every stub under ncbsim/, so a stale one (an old package's) fails too
        p.relative_to(ROOT): p.read_bytes()
        for p in (ROOT / "ncbsim").rglob("*_pb2*.py*")
        if "__pycache__" not in p.parts
    }
    assert generated, "the generator produced nothing"
    assert sorted(generated) == sorted(committed)
    stale = [str(path) for path, data in generated.items() if committed[path] != data]
    assert not stale, f"stubs differ from proto/: {stale}; run `make stubs`"

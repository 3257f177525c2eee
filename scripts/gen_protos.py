"""Regenerate the gRPC/protobuf stubs from proto/ into ncbsim/v2/.

Usage: python scripts/gen_protos.py [--out DIR]

The stubs are committed. tests/test_stubs.py runs this script into a temporary
directory and fails if the result differs from the committed files, so edit the
.proto files and rerun this script rather than touching the generated code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[Path]:
    """Every .proto file under proto/, in a stable order."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc for every proto file, writing _pb2, .pyi and _pb2_grpc modules under out."""
    out.mkdir(parents=True, exist_ok=True)
    rel = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *rel,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

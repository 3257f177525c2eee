"""Regenerate the gRPC/protobuf stubs from proto/ into ncbsim/v2/ and ncbsim/vendor/.

Usage: python scripts/gen_protos.py [--out DIR]

The stubs are committed. tests/test_stubs.py runs this script into a temporary
directory and fails if the result differs from the committed files, so edit the
.proto files and rerun this script rather than touching the generated code.

A proto under proto/ generates modules at the same path (proto/ncbsim/v2/x.proto:
ncbsim/v2/x_pb2.py), except the protos we vendor from elsewhere (:data:`VENDORED`):
their package path would put the modules inside another distribution's package
(grpc.reflection.v1 is in grpcio's ``grpc``), so they go under ncbsim/vendor/ and their
imports are rewritten to match. Their descriptors keep the canonical file and package
names, which is what a client sees over the wire.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"

VENDORED = {"grpc/reflection/v1": "ncbsim/vendor/grpc_reflection_v1"}
"""Folders of vendored protos under proto/, and where their modules go instead."""


def proto_files() -> list[Path]:
    """Every .proto file under proto/, in a stable order."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _placed(rel: Path, text: bytes) -> tuple[Path, bytes]:
    """Where a generated module goes, and its text with vendored imports rewritten."""
    for folder, target in VENDORED.items():
        if rel.parent == Path(folder):
            old, new = folder.replace("/", "."), target.replace("/", ".")
            # `from grpc.reflection.v1 import x_pb2` and the builder's 'grpc.reflection.v1.x_pb2';
            # service names such as 'grpc.reflection.v1.ServerReflection' stay as they are.
            pattern = rf"\b{re.escape(old)}(?= import |\.\w+_pb2\b)".encode()
            return Path(target) / rel.name, re.sub(pattern, new.encode(), text)
    return rel, text


def generate(out: Path) -> None:
    """Run protoc for every proto file, writing _pb2, .pyi and _pb2_grpc modules under out."""
    rel = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *rel,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                target, text = _placed(path.relative_to(tmp), path.read_bytes())
                (out / target).parent.mkdir(parents=True, exist_ok=True)
                (out / target).write_bytes(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

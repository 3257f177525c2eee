"""Stubs generated from protos we vendor rather than write (scripts/gen_protos.py)."""

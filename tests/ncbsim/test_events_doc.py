"""docs/events.md documents exactly the event kinds of ncbsim.events.KINDS, each with
exactly the view keys it may carry: a kind or key added on one side only fails here."""

from __future__ import annotations

import re
from pathlib import Path

from ncbsim.events import KINDS, SCHEMA_VERSION

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
_KIND = re.compile(r"^#### `([a-z_]+\.[a-z_]+)`\s*$")
_KEY = re.compile(r"^\| `([a-z_]+)` \|")


def documented() -> dict[str, list[str]]:
    """Each kind's heading (``#### `kind```) and the keys of the table under it."""
    kinds: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = _KIND.match(line)
            current = kinds.setdefault(match.group(1), []) if match else None
        elif current is not None and (key := _KEY.match(line)):
            current.append(key.group(1))
    return kinds


def test_every_kind_is_documented_and_nothing_else() -> None:
    """The kinds documented are the kinds of KINDS, in both directions."""
    assert sorted(documented()) == sorted(KINDS)


def test_every_view_key_is_documented_and_nothing_else() -> None:
    """Each kind's table lists exactly its view keys, once each."""
    doc = documented()
    for kind, keys in KINDS.items():
        assert sorted(doc[kind]) == sorted(keys), kind


def test_the_doc_states_the_schema_version() -> None:
    """The page names the schema version the code writes."""
    assert f"## The schema (version {SCHEMA_VERSION})" in DOC.read_text(encoding="utf-8")

"""Option helpers shared by several command groups of the ``ncbsim`` command line."""

from __future__ import annotations

__all__ = ["codes"]


def codes(text: str) -> list[str]:
    """Bureau codes from a comma-separated option, upper case, blanks dropped."""
    return [c.strip().upper() for c in text.split(",") if c.strip()]

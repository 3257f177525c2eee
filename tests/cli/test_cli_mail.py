"""What the one-way commands read from their options and how they print what was received."""

from __future__ import annotations

import pytest
from rich.console import Console

from ncbsim import envelope
from ncbsim.cli import mail, mail_views
from ncbsim.errors import ConfigError
from ncbsim.v2 import messages_pb2


def test_inbox_shows_sender_text_literally() -> None:
    """Rich markup in a received text is printed as written, never interpreted."""
    body = messages_pb2.Diffusion(subject="[red]x[/red]", text="[link=http://evil]y[/link]")
    console = Console(record=True, width=80, color_system=None)
    console.print(mail_views.body_text(body))
    shown = console.export_text()
    assert "[red]x[/red]" in shown
    assert "[link=http://evil]y[/link]" in shown


@pytest.mark.parametrize(
    ("text", "expected"), [("90s", 90_000), ("2h", 7_200_000), ("24h", envelope.MAX_TTL_MS)]
)
def test_ttl_option(text: str, expected: int) -> None:
    """--ttl takes a duration up to 24 h, in milliseconds."""
    assert mail.ttl_ms(text) == expected


def test_ttl_option_over_a_day_is_refused() -> None:
    """--ttl beyond 24 h is a usage error."""
    with pytest.raises(ConfigError, match="at most 24h"):
        mail.ttl_ms("25h")

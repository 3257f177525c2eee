"""Helpers of the load tests: reading locust's HTML report with the standard library."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest


class ReportTables(HTMLParser):
    """The text of every row of every table with an id, and every script's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.section_ids: list[str] = []
        self.scripts: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a table, row, cell or script."""
        ident = dict(attrs).get("id")
        if tag == "section" and ident:
            self.section_ids.append(ident)
        elif tag == "table" and ident:
            self._table = ident
            self.tables[ident] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in {"td", "th"} and self._row is not None:
            self._cell = []
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        """Close what the start tag opened."""
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._table and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag in {"td", "th"} and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        """Collect text of the open cell or script."""
        if self._cell is not None:
            self._cell.append(data)
        if self._in_script:
            self.scripts[-1] += data

    def locust_host(self) -> str:
        """The "Target Host" locust's report shows: ``host`` of its template arguments."""
        (script,) = [s for s in self.scripts if s.strip().startswith("window.templateArgs")]
        data = script.split("window.templateArgs =", 1)[1].split("window.theme", 1)[0]
        host: str = json.loads(data)["host"]
        return host


def _read(path: Path) -> ReportTables:
    parser = ReportTables()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture
def read_html() -> Callable[[Path], ReportTables]:
    """Parse an HTML report with the standard library's parser into its tables."""
    return _read

"""A deployed bureau's records: made once on its volume, then reused, never silently remade."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from ncbsim.errors import ConfigError
from ncbsim.simulations.deploy.records import RecordCounts, ensure_records, holds

COUNTS = RecordCounts(seed=5, documents=60, persons=30, vehicles=20, biometrics=4)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_records_are_made_once_then_reused_unchanged(tmp_path: Path) -> None:
    folders = {"FR": tmp_path / "FR", "DE": tmp_path / "DE"}
    assert ensure_records(folders, COUNTS) == {"DE": "generated", "FR": "generated"}
    made = {code: _digest(folder / "records.sqlite") for code, folder in folders.items()}
    assert (tmp_path / "FR").stat().st_mode & 0o777 == 0o700

    assert ensure_records(folders, COUNTS) == {"DE": "reused", "FR": "reused"}
    assert {code: _digest(f / "records.sqlite") for code, f in folders.items()} == made


def test_the_same_counts_give_the_same_records_in_one_process_or_two(tmp_path: Path) -> None:
    one = {"FR": tmp_path / "one" / "FR", "DE": tmp_path / "one" / "DE"}
    two = {"FR": tmp_path / "two" / "FR", "DE": tmp_path / "two" / "DE"}
    ensure_records(one, COUNTS, processes=1)
    ensure_records(two, COUNTS, processes=2)
    for code, folder in one.items():
        assert _digest(folder / "records.sqlite") == _digest(two[code] / "records.sqlite")


def test_a_volume_made_with_other_counts_is_refused(tmp_path: Path) -> None:
    folders = {"FR": tmp_path / "FR"}
    ensure_records(folders, COUNTS)
    other = dataclasses.replace(COUNTS, documents=61)
    with pytest.raises(ConfigError, match="documents 60 \\(not 61\\); delete the volume"):
        ensure_records(folders, other)


def test_records_of_unknown_origin_are_refused(tmp_path: Path) -> None:
    (tmp_path / "FR").mkdir()
    (tmp_path / "FR" / "records.sqlite").write_bytes(b"")
    with pytest.raises(ConfigError, match="records of unknown origin"):
        ensure_records({"FR": tmp_path / "FR"}, COUNTS)


def test_a_generation_cut_short_starts_over(tmp_path: Path) -> None:
    folder = tmp_path / "FR"
    folder.mkdir()
    (folder / "records.sqlite.partial").write_bytes(b"half a database")
    assert ensure_records({"FR": folder}, COUNTS) == {"FR": "generated"}
    assert not (folder / "records.sqlite.partial").exists()
    assert (folder / "records.sqlite").stat().st_size > 0


def test_holds_tells_made_from_missing_from_something_else(tmp_path: Path) -> None:
    folder = tmp_path / "FR"
    assert holds(folder, "FR", COUNTS) is False
    ensure_records({"FR": folder}, COUNTS)
    assert holds(folder, "FR", COUNTS) is True
    assert holds(folder, "FR", dataclasses.replace(COUNTS, seed=6)) is None
    assert holds(folder, "DE", COUNTS) is None

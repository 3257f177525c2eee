"""A node learns that a bureau revoked one of its users from the revocation file, and drops
the user from its directory (so its sessions end at the sweep)."""

from __future__ import annotations

import time

import pytest

from ncbsim import pki
from ncbsim.directory import Directory
from ncbsim.errors import DirectoryError
from ncbsim.node.user_revocations import UserRevocations
from ncbsim.users import issue_user, revoke_user


@pytest.fixture(scope="module")
def pki_bureaus() -> list[str]:
    return ["FR", "DE"]


def test_a_revocation_file_drops_the_user_once(pki_dir: pki.PkiDir) -> None:
    """FR/a is dropped when FR's revocation appears; FR/b and FR stay; a file already
    applied is not read again, and a tampered one is refused."""
    now = int(time.time() * 1000)
    issue_user(pki_dir, "FR", "a", "border", now_ms=now)
    issue_user(pki_dir, "FR", "b", "investigator", now_ms=now)
    directory = Directory.from_pki(pki_dir)
    watch = UserRevocations(pki_dir, directory)
    assert watch.check() == 0
    assert "FR/a" in directory
    revoke_user(pki_dir, "FR", "a", now_ms=now)
    assert watch.check() == 1
    assert "FR/a" not in directory
    with pytest.raises(DirectoryError, match="revoked"):
        directory.get("FR/a")
    assert directory.get("FR/b").rights is not None
    assert directory.get("FR").rights is None
    assert watch.check() == 0  # nothing new
    forged = pki_dir.user_revocation_path("FR/b")
    other = pki_dir.user_revocation_path("FR/a").read_bytes()
    forged.write_bytes(other[:-1] + bytes([other[-1] ^ 1]))  # a bad signature
    assert watch.check() == 0
    assert "FR/b" in directory

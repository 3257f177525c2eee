"""A bureau's proof log: the signed checkpoints over the format-2 queries it received.

Each checkpoint a node verified (docs/protocol.md §15.6) is one row of its own
hash-chained SQLite file, ``WORKDIR/bureaus/XX/proofs.sqlite`` (WAL; the same chain as
the audit logs, see :mod:`ncbsim.auditlog`, so ``ncbsim audit verify`` checks it): when,
the sender, the session, the checkpoint's first and last seq, the SignedCheckpoint
bytes, and for each covered request the node received its seq, message id, header and
the SHA-256 of its ciphertext. Never a plaintext, never a key: the header is what the
gateway saw too, and the ciphertext is kept only as its digest.

:meth:`ProofLog.record` is one row per checkpoint (one every 32 queries or so of a busy
session), awaited until committed through the log's group-commit writer thread: the
event loop only queues the row. :func:`prove` (``ncbsim audit prove``) turns a message
id into a proof, which it checks before handing it out. :func:`find_request` (and
:meth:`ProofLog.find`) reads the file, read-only, from any process, and returns what
:func:`ncbsim.proof.build` needs.
Finding a message id scans the ``message_ids`` column (an auditor's occasional look-up,
not a hot path); rows are small, the headers and checkpoint being stored after it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ncbsim import proof
from ncbsim.auditlog import TABLE, ChainedLog
from ncbsim.errors import NcbsimError, PkiError
from ncbsim.pki import PkiDir
from ncbsim.proof import LoggedRequest
from ncbsim.session import Covered, CoveredRequest

__all__ = ["PROOF_COLUMNS", "ProofLog", "find_request", "prove"]

log = structlog.get_logger()

PROOF_COLUMNS = (
    ("at_ms", "INTEGER"),
    ("sender", "TEXT"),
    ("session_id", "TEXT"),  # hex
    ("first_seq", "INTEGER"),
    ("last_seq", "INTEGER"),
    ("message_ids", "TEXT"),  # the covered requests' ids, hex, space-separated
    ("requests", "TEXT"),  # JSON [[seq, message id, header, sealed SHA-256], ...], hex
    ("checkpoint", "TEXT"),  # the SignedCheckpoint, hex
)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class ProofLog:
    """A bureau's verified checkpoints: an append-only, hash-chained SQLite table (WAL)."""

    def __init__(
        self,
        path: Path,
        *,
        now_ms: Callable[[], int] = _wall_ms,
        batch_wait_s: float = 0.05,
    ) -> None:
        self.path = Path(path)
        self._now_ms = now_ms
        self._log = ChainedLog(
            self.path,
            PROOF_COLUMNS,
            indexes=(("at_ms",), ("sender", "at_ms")),
            batch_wait_s=batch_wait_s,
        )

    @classmethod
    def open(cls, path: Path, *, now_ms: Callable[[], int] = _wall_ms) -> ProofLog:
        """The proof log at ``path``, created if missing; ``now_ms`` dates its rows."""
        return cls(path, now_ms=now_ms)

    async def record(self, covered: Covered) -> None:
        """Write one verified checkpoint; returns once its row is committed.

        Raises :class:`ncbsim.auditlog.AuditWriteError` if it could not be written.
        """
        await self._log.commit(self._row(covered))
        log.debug(
            "checkpoint_recorded",
            sender=covered.sender,
            session_id=covered.session_id.hex()[:16],
            first_seq=covered.first_seq,
            last_seq=covered.last_seq,
            requests=len(covered.requests),
        )

    def _row(self, covered: Covered) -> tuple[int, str, str, int, int, str, str, str]:
        requests = [
            [r.seq, r.message_id.hex(), r.header.hex(), r.sealed_sha256.hex()]
            for r in covered.requests
        ]
        return (
            self._now_ms(),
            covered.sender,
            covered.session_id.hex(),
            covered.first_seq,
            covered.last_seq,
            " ".join(r.message_id.hex() for r in covered.requests),
            json.dumps(requests, separators=(",", ":")),
            covered.signed_checkpoint.hex(),
        )

    def find(self, message_id: bytes) -> LoggedRequest | None:
        """The committed request with ``message_id`` and its checkpoint (:func:`find_request`)."""
        return find_request(self.path, message_id)

    def close(self) -> None:
        """Write every checkpoint recorded so far, then stop the writer."""
        self._log.close()


def find_request(path: Path, message_id: bytes) -> LoggedRequest | None:
    """The request with ``message_id`` in the proof log at ``path``, with the checkpoint
    that covers it; None if no checkpoint covers it (yet), or if there is no log.

    Read-only, so it runs beside the node that writes the log. The newest checkpoint
    wins if two ever named the same id. Raises NcbsimError if the file is not a proof log.
    """
    path = Path(path)
    if not path.is_file() or not message_id:
        return None
    wanted = message_id.hex()
    sql = (
        f"SELECT at_ms, sender, session_id, first_seq, last_seq, requests, checkpoint "
        f"FROM {TABLE} WHERE instr(message_ids, ?) > 0 ORDER BY seq DESC"
    )
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            for at_ms, sender, session_id, first, last, requests, checkpoint in conn.execute(
                sql, (wanted,)
            ):
                for seq, mid, header, digest in json.loads(requests):
                    if mid == wanted:
                        return LoggedRequest(
                            recorded_at_ms=int(at_ms),
                            sender=str(sender),
                            session_id=bytes.fromhex(session_id),
                            first_seq=int(first),
                            last_seq=int(last),
                            signed_checkpoint=bytes.fromhex(checkpoint),
                            request=CoveredRequest(
                                seq=int(seq),
                                message_id=message_id,
                                header=bytes.fromhex(header),
                                sealed_sha256=bytes.fromhex(digest),
                            ),
                        )
    except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
        raise NcbsimError(f"{path} is not a proof log: {exc}") from None
    return None


def prove(pki: PkiDir, path: Path, message_id: bytes) -> dict[str, Any]:
    """The proof (:func:`ncbsim.proof.build`) that the request ``message_id`` logged in the
    proof log at ``path`` came from its sender, checked against ``pki``'s root first.

    The sender's entry is its current one in ``pki``'s directory, which certifies its
    current signing key and the one it rotated out last. Raises NcbsimError ``no proof
    for message HEX: WHY`` when there is none to give.
    """

    def none(why: str) -> NcbsimError:
        return NcbsimError(f"no proof for message {message_id.hex()}: {why}")

    if not path.is_file():
        raise none(f"there is no proof log at {path}")
    row = find_request(path, message_id)
    if row is None:
        raise none(
            f"no checkpoint in {path} covers it (yet: its sender covers a request within "
            "32 requests or 1 s of session traffic, or when it closes the session)"
        )
    try:
        entry = pki.entry_path(row.sender).read_bytes()
    except (OSError, PkiError):
        raise none(f"{pki.directory} holds no directory entry for {row.sender}") from None
    made = proof.build(row, entry)
    try:
        proof.check(made, pki.root_public_key())
    except PkiError:
        raise
    except NcbsimError as exc:
        raise none(str(exc)) from None
    return made

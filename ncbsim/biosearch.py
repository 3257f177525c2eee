"""Build biometric queries: a 1:N search with a probe, and the confirmation of a candidate.

A biometric search goes through the same query path as any other (``BureauClient.query``,
sessions, format 2): these helpers only make its ``Query`` body. The probe is the int8
template a capture gives (:func:`ncbsim.biometrics.encode`); the owner decodes and checks
it, and refuses a malformed one (INVALID_ARGUMENT). :func:`read_probe` reads a probe file
as ``ncbsim record probe`` writes it and checks its size first, so a CLI user learns of a
wrong file before anything is sent.
"""

from __future__ import annotations

from pathlib import Path

from ncbsim import biometrics
from ncbsim.client import Answer
from ncbsim.errors import ConfigError
from ncbsim.v2 import query_pb2

__all__ = ["candidates", "confirm", "read_probe", "search"]


_WIRE = {
    biometrics.FINGERPRINT: query_pb2.MODALITY_FINGERPRINT,
    biometrics.FACE: query_pb2.MODALITY_FACE,
}


def _wire(modality: str) -> query_pb2.Modality:
    biometrics.to_wire(modality)  # QueryError for an unknown modality
    return _WIRE[modality]


def search(modality: str, probe: bytes, max_candidates: int = 0) -> query_pb2.Query:
    """A 1:N search of the owner's ``modality`` collection with ``probe`` (step 1);
    ``max_candidates`` 0 asks for the owner's default."""
    return query_pb2.Query(
        biometric=query_pb2.BiometricQuery(
            modality=_wire(modality),
            template=probe,
            max_candidates=max_candidates,
        )
    )


def confirm(ref: str, modality: str, probe: bytes) -> query_pb2.Query:
    """The hit confirmation (step 2) of candidate ``ref`` with ``probe``."""
    return query_pb2.Query(
        confirm=query_pb2.ConfirmQuery(ref=ref, modality=_wire(modality), template=probe)
    )


def candidates(answer: Answer) -> list[query_pb2.Candidate]:
    """The candidate list of an answer to a search, best first (empty for any other)."""
    if answer.response is None or not answer.response.HasField("candidates"):
        return []
    return list(answer.response.candidates.candidates)


def read_probe(path: Path, modality: str, option: str = "--probe") -> bytes:
    """The probe in ``path``: exactly the modality's dimension in int8 bytes, not all zero.

    ConfigError naming ``option`` otherwise (a missing file, another size).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None
    dims = biometrics.DIMS[modality]
    if len(data) != dims:
        raise ConfigError(
            f"{option}: a {modality} probe is {dims} bytes (int8, as `ncbsim record probe` "
            f"writes it), {path} has {len(data)}"
        )
    if not any(data):
        raise ConfigError(f"{option}: {path} is all zero: not a probe")
    return data

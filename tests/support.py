"""Helpers several test folders share: query builders, generated records, and the PIDs a
run left. Import them as ``from support import ...``.

They live here, not in ``conftest.py``: with several ``conftest.py`` files (tests/,
tests/fuzz/, tests/load/), ``from conftest import ...`` gets whichever one pytest
imported last, not the one beside this file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ncbsim.node import admin, datagen
from ncbsim.node.store import NO_CONTROL, Document, RecordStore
from ncbsim.v2 import query_pb2


def ncbsim_pids(workdir: Path) -> list[int]:
    """PIDs of the ncbsim processes whose command line names ``workdir``: what a run left."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ncbsim" in cmdline and os.fsencode(str(workdir)) in cmdline:
            found.append(int(entry.name))
    return found


def document_query(number: str, issuer: str, *, response_key: bytes = b"") -> query_pb2.Query:
    """Step 1 for a travel document: its number and issuing country (alpha-2, or as typed)."""
    query = query_pb2.Query(document=query_pb2.DocumentQuery(number=number, issuer=issuer))
    if response_key:
        query.response_key = response_key
    return query


def query_for(doc: Document) -> query_pb2.Query:
    """Step 1 for a document a store holds, as a requester who knows it would ask."""
    return document_query(doc.number, doc.issuer)


def person_query(
    surname: str, *, given_names: str = "", date_of_birth: str = ""
) -> query_pb2.Query:
    """Step 1 for a person: surname, and given names and date of birth when known."""
    return query_pb2.Query(
        person=query_pb2.PersonQuery(
            surname=surname, given_names=given_names, date_of_birth=date_of_birth
        )
    )


def fetch_query(ref: str) -> query_pb2.Query:
    """Step 2: the record behind a reference a hit returned."""
    return query_pb2.Query(fetch=query_pb2.FetchQuery(ref=ref))


def generate_records(
    workdir: Path,
    bureau: str,
    *,
    seed: int,
    documents: int,
    persons: int,
    vehicles: int,
    workers: int | None = None,
) -> Path:
    """Generate ``bureau``'s records where a network under ``workdir`` keeps them (as
    ``ncbsim up`` lays them out); the database's path."""
    path = admin.records_path(workdir, bureau)
    path.parent.mkdir(parents=True, exist_ok=True)
    datagen.generate(
        path,
        bureau,
        seed=seed,
        documents=documents,
        persons=persons,
        vehicles=vehicles,
        workers=workers,
    )
    return path


def uncontrolled_documents(store: RecordStore, n: int, *, sample: int, seed: int) -> list[Document]:
    """``n`` of ``sample`` documents drawn with ``seed`` that carry no owner control yet
    (so each test sets its own)."""
    docs = store.sample("document", sample, random.Random(seed))
    return [d for d in docs if store.control(d.ref) == NO_CONTROL][:n]

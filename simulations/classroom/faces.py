"""The classroom's free-play face search: a border camera's search of another bureau's
faces, and step 2 on candidate 1, drawn for the page.

No camera is in the room, so the server plays it, as ``ncbsim record probe`` does: it
picks one of the owner's enrolled subjects at random and captures a new probe of it at
the ``border`` quality (:mod:`ncbsim.simulations._demo_bio`, the lesson's own camera).
The requesting bureau then sends the search and the confirmation of candidate 1 through
the gateway's real RPCs, like any query of the page (the demo's
:class:`~ncbsim.simulations._demo_observer.Observer`). The page gets both exchanges;
each carries the candidate list (refs, scores, ranks, the threshold and the cap) and
the confirmation, never the probe's bytes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from ncbsim import biometrics, biosearch
from ncbsim.simulations._demo_bio import camera, pick_subject
from ncbsim.simulations.classroom import inputs, views
from ncbsim.simulations.classroom.room import Classroom


class FaceSearch:
    """``POST /api/face`` on ``room``'s network."""

    def __init__(self, room: Classroom) -> None:
        self.room = room
        self._rng = random.Random()

    async def search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``{"from": "FR", "to": "DE"}``: FR searches DE's faces with a fresh capture of
        one of DE's enrolled subjects, then confirms candidate 1; the exchange record of
        the last step sent (the confirmation, or the search if it listed nobody)."""
        room = self.room
        asker = inputs.bureau(body, "from", room.bureaus)
        owner = inputs.bureau(body, "to", room.bureaus)
        if asker == owner:
            raise inputs.InputError(f"to: {asker} cannot search its own faces here", "to")
        modality = biometrics.FACE
        obs = room.observer(asker)
        store = obs.store(owner)
        subject = pick_subject(store, owner, modality, self._rng)
        if subject is None:
            raise inputs.InputError(
                f"to: {owner} has enrolled no faces (the scenario's records.biometrics)", "to"
            )
        people = {ref: person for ref, person, _, _ in store.enrolled()}
        probe = camera(subject, np.random.default_rng(), modality=modality)
        async with room.lock:
            search = biosearch.search(modality, probe)
            ex = await obs.exchange(search, owner)
            listed = biosearch.candidates(ex.answer)
            first = listed[0].ref if listed else ""
            record = obs.record(owner, people.get(first, ""))
            drawn = room.publish_exchange(asker, owner, search, ex, record=record or None)
            if not first:  # nobody listed, or a hit-only answer: no step 2
                return drawn
            confirm = biosearch.confirm(first, modality, probe)
            ex2 = await obs.exchange(confirm, owner)
            block = {**drawn["biometric"], **(views.biometric_view(confirm, ex2.answer) or {})}
            return room.publish_exchange(
                asker, owner, confirm, ex2, record=record or None, biometric=block
            )

"""THE lesson script: the steps of ``ncbsim demo`` and of the classroom's lesson mode.

One script, read by both, so the terminal narration and the page's captions never drift:
each :class:`LessonStep` has a title, a caption (what the room reads: a template whose
``{fields}`` the step fills from what really happened) and what the trainer says at that
step. The demo runs the steps (``ncbsim.simulations._demo_steps``); the classroom shows
the same ones. Pure data and two small helpers: no I/O.

A step may need something of the network (:data:`NEEDS`): a General Secretariat node for
notices (``gs``), a classroom-mode gateway for attacks (``attacks``), enrolled faces for
the face search (``biometrics``); without it the step is skipped, neither passed nor
failed.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

__all__ = ["LESSON", "NEEDS", "LessonStep", "caption", "fields", "index_of", "trainer_guide"]

NEEDS = {
    "gs": "the scenario has no GS node",
    "attacks": "no classroom-mode gateway: attacks need `ncbsim classroom`",
    "biometrics": "the scenario enrols no faces (its records.biometrics is 0)",
}
"""What a step may need, and the reason it is skipped without it."""
NEED_NAMES = {
    "gs": "a GS node",
    "attacks": "a classroom-mode gateway",
    "biometrics": "enrolled faces",
}
"""What a step may need, in words (the trainer's guide)."""

MAX_CAPTION = 320
"""The longest caption a projector shows well, in characters once filled."""


@dataclass(frozen=True, slots=True)
class LessonStep:
    """One step of the lesson."""

    key: str
    """Its name: ``document``, ``notice``, ``attack:replay`` ..."""
    title: str
    """One line: ``Passport check: a stolen document``."""
    caption: str
    """What the room reads (the terminal prints it): a template with named ``{fields}``,
    filled by :func:`caption` with what the step really did."""
    say: str
    """One or two sentences for the trainer to say at this step (docs/classroom.md)."""
    needs: frozenset[str] = frozenset()
    """Of :data:`NEEDS`: what the network must have for the step to run."""

    def __post_init__(self) -> None:
        unknown = self.needs - NEEDS.keys()
        if unknown:
            raise ValueError(f"lesson step {self.key!r}: unknown needs {sorted(unknown)}")
        if not self.key or not self.title or not self.caption or not self.say:
            raise ValueError(f"lesson step {self.key!r}: key, title, caption and say are required")
        fields(self)  # a malformed template fails at import, not in front of the room

    @property
    def attack(self) -> str | None:
        """The attack's name (``replay``) for an ``attack:*`` step, else None."""
        prefix, _, name = self.key.partition(":")
        return name if prefix == "attack" and name else None


def fields(step: LessonStep) -> frozenset[str]:
    """The names of the ``{fields}`` in ``step``'s caption."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(step.caption):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"lesson step {step.key!r}: caption field {{{name}}} must be a plain name"
            )
        names.add(name)
    return frozenset(names)


def caption(step: LessonStep, **values: object) -> str:
    """``step``'s caption filled with ``values``; ValueError if a field is missing, or a
    value names no field (a step and its caption out of step)."""
    wanted = fields(step)
    missing = wanted - values.keys()
    extra = values.keys() - wanted
    if missing or extra:
        raise ValueError(
            f"lesson step {step.key!r}: caption fields missing {sorted(missing)}, "
            f"not in the caption {sorted(extra)}"
        )
    return step.caption.format_map(values)


def index_of(key: str) -> int:
    """The position of the step ``key`` in :data:`LESSON`; KeyError if there is none."""
    for i, step in enumerate(LESSON):
        if step.key == key:
            return i
    raise KeyError(f"the lesson has no step {key!r}")


def trainer_guide() -> str:
    """The lesson as Markdown, for the trainer's guide (docs/classroom.md): per step its
    title, what it needs, what the room reads (fields in italics) and what to say."""
    out = []
    for number, step in enumerate(LESSON, 1):
        shown = step.caption.format_map({name: f"*{name}*" for name in fields(step)})
        wanted = " and ".join(sorted(NEED_NAMES[n] for n in step.needs))
        needs = f" (needs {wanted})" if wanted else ""
        out += [f"{number}. **{step.title}**{needs}", f"   - On the screen: {shown}"]
        out.append(f"   - Say: {step.say}")
    return "\n".join(out) + "\n"


_GS = frozenset({"gs"})
_FACES = frozenset({"biometrics"})
_ATTACKS = frozenset({"attacks"})

LESSON: tuple[LessonStep, ...] = (
    LessonStep(
        "document",
        "Passport check: a stolen document",
        "A border officer of {asker} checks a passport issued by {issuer}. {asker} asks "
        "{to}, whose database lists it as stolen.",
        "Every query is sealed for one bureau and signed by the asker. Watch the gateway's "
        "view: it routes the envelope but cannot read the passport number.",
    ),
    LessonStep(
        "person",
        "Person search with a fuzzy name",
        "An officer of {asker} types the name '{typed}' without accents and with two "
        "letters swapped. {to}'s record says '{surname}'. Names are matched fuzzily, so it "
        "still hits, with a score.",
        "Officers mistype names all the time. The answering bureau matches names fuzzily "
        "and says how close the match is; the officer decides.",
    ),
    LessonStep(
        "biometric",
        "Border camera: a face search and its confirmation",
        "A border camera photographs a traveller and {asker} searches {owner}'s faces. "
        "{owner} returns {count}, best first: candidate 1 is {ref}, score {score}. "
        "Step 2 sends the photo back for a 1:1 check: {owner} {confirmed} and releases "
        "{person}.",
        "Under the Prüm rules a candidate is only a reference until its owner confirms it, "
        "and the owner caps both the list and each bureau's daily searches. The gateway "
        "relays a 1,024-byte sealed request and never sees the face.",
        _FACES,
    ),
    LessonStep(
        "restricted",
        "Step-2 fetch denied by the owner's restriction",
        "{owner} restricts its record {ref}: every bureau but {asker} may see it (the "
        "same code path as `ncbsim record restrict`). Its node reads the control from its "
        "database at every query, so {asker} now gets nothing, exactly as if the record "
        "did not exist.",
        "The bureau that owns a record decides who sees it. A denied bureau cannot even "
        "tell that the record exists: same answer, same size, as for a made-up reference.",
    ),
    LessonStep(
        "down",
        "Multi-bureau query with one bureau down",
        "{asker} asks every other bureau at once, with a {deadline} s deadline. {down}'s "
        "node is frozen (SIGSTOP pid {pid}), as if its server hung. The merged reply lists "
        "every bureau: the others answer, the frozen one is no-answer.",
        "One slow bureau never holds up the others. The reply lists every bureau, and a "
        "silent one is no-answer, never a false no-hit.",
    ),
    LessonStep(
        "tampered",
        "A tampered envelope is refused",
        "Someone on the path flips one bit of a sealed query from {asker} to {to}. The "
        "gateway sees a well-formed header and relays it. The signature covers the "
        "ciphertext, so {to}'s node refuses it and writes why in its own audit log.",
        "Nobody between the two bureaus can change a query unnoticed, not even the "
        "gateway: one flipped bit and the recipient refuses it.",
    ),
    LessonStep(
        "diffusion",
        "A diffusion to every bureau",
        "{asker} alerts every bureau at once: '{subject}'. The gateway stores one sealed "
        "copy per bureau ({copies} in all) and delivers each; every bureau signs a receipt "
        "that {asker} can check.",
        "A diffusion is a one-way alert. The gateway keeps each copy until the bureau's "
        "node takes it, even if that node is down for a while, and cannot fake a receipt.",
        _GS,
    ),
    LessonStep(
        "notice",
        "A red notice: requested, reviewed, published",
        "{asker} asks the General Secretariat ({gs}) for a red notice on {name}, born "
        "{born}. {gs} reviews it, numbers it {reference} and publishes it: every bureau "
        "now holds {name} as a wanted person.",
        "Only the General Secretariat publishes notices, after a review. Once published, "
        "the subject is in every bureau's own records: no central database is asked.",
        _GS,
    ),
    LessonStep(
        "border-check",
        "Border check: the notice's subject hits",
        "Later, a border officer of {checker} checks a traveller, {name}, against {to}'s "
        "records. {to} got the red notice from {gs}, so the check is a hit: {reference}.",
        "This is what the notice is for: any bureau's ordinary person check now finds the "
        "fugitive, wherever the check is made.",
        _GS,
    ),
    LessonStep(
        "withdraw",
        "The notice is withdrawn: no hit any more",
        "{asker} withdraws notice {reference} ({reason}). {gs} publishes the withdrawal, "
        "every bureau deletes the record, and {checker}'s same border check at {to} is a "
        "no-hit again.",
        "A withdrawn notice disappears everywhere: nobody is stopped on a notice that no "
        "longer stands.",
        _GS,
    ),
    LessonStep(
        "attack:replay",
        "Attack: the gateway replays an envelope",
        "The gateway sends {asker}'s query to {to} a second time. {to}'s node has seen its "
        "message id before and refuses the copy: the replay is caught at the recipient.",
        "A copied envelope is worthless: each one carries a unique id and an expiry, and "
        "the recipient remembers the ids it has seen.",
        _ATTACKS,
    ),
    LessonStep(
        "attack:swap-key",
        "Attack: the gateway swaps a bureau's key",
        "The gateway hands {asker} a forged key for {to} in the directory. The entry is "
        "not signed by the directory authority, so {asker} refuses to seal anything to "
        "it: caught at the requester.",
        "The gateway serves the directory but cannot forge it: every key is signed, and "
        "each bureau checks the signature before it uses a key.",
        _ATTACKS,
    ),
    LessonStep(
        "attack:redirect",
        "Attack: the gateway redirects a query",
        "The gateway delivers {asker}'s query for {to} to another bureau instead. That "
        "bureau cannot open it, since it was sealed for {to} alone: the misrouting is "
        "caught where it lands.",
        "Routing is the gateway's only job, and even a wrong route leaks nothing: only the "
        "intended bureau holds the key that opens the envelope.",
        _ATTACKS,
    ),
    LessonStep(
        "attack:drop-answer",
        "Attack: the gateway drops an answer",
        "{to} answers {asker}, but the gateway throws the answer away. {asker} sees "
        "no-answer, never a false no-hit: a lost answer cannot pass for 'nothing found'.",
        "Silence is not a clean record. The officer is told the check could not be "
        "completed and can try again.",
        _ATTACKS,
    ),
    LessonStep(
        "attack:spoof-sender",
        "Attack: a bureau pretends to be another",
        "A bureau sends a query to {to} in {asker}'s name. The gateway checks the name "
        "against the caller's TLS certificate and refuses it: caught at the gateway, and "
        "{to} never sees it.",
        "Every message is signed with the sender's own key, and the connection proves who "
        "is calling: nobody can ask in another bureau's name.",
        _ATTACKS,
    ),
)
"""The lesson, in order: the query steps (a biometric search after the document and
person checks), then diffusion, red notice, border check,
withdrawal, then the attacks (the bit flip is the ``tampered`` step)."""

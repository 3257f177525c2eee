"""A scenario's ``[[users]]``: their keys and rights, the timeline's queries from users and
posts to them, the report paths that count them, how a refusal is counted, and the users
the prepared network issues."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import load_scenario

from ncbsim import pki
from ncbsim.client import Answer, Outcome
from ncbsim.rights import DIFFUSION, MESSAGE
from ncbsim.simulations import paths as report_paths
from ncbsim.simulations import report as reports
from ncbsim.simulations import scenario
from ncbsim.simulations.outcomes import AnswerRecord, QueryRecord, Sent, outcome_of
from ncbsim.simulations.prepare import issue_users
from ncbsim.simulations.run_checks import planted_summary
from ncbsim.simulations.scenario import ScenarioError, UserSpec
from ncbsim.simulations.traffic import Planned
from ncbsim.v2 import query_pb2, users_pb2

HEAD = 'bureaus = ["NG", "GH", "SN"]\n[traffic]\nduration_s = 20\n'
USERS = (
    '[[users]]\nbureau = "NG"\nname = "prosecutor-lagos"\nrole = "investigator"\n'
    'kinds = ["person", "document"]\n'
    '[[users]]\nbureau = "NG"\nname = "ngo-lagos"\nrole = "partner"\n'
)


def _error(tmp_path: Path, text: str) -> str:
    """The ScenarioError message for ``text``, with the file named 'sim.toml'."""
    path = tmp_path / "sim.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        scenario.load(str(path))
    return "sim.toml: " + str(info.value).removeprefix(f"{path}: ")


def _event(body: str) -> str:
    return f"[[events]]\nat_s = 1\n{body}\n"


# ---------------------------------------------------------------- [[users]]


def test_users_are_read_with_their_roles_rights_and_kinds(tmp_path: Path) -> None:
    """Each user has its principal and its role's rights, with ``kinds`` laid over them."""
    loaded = load_scenario(tmp_path, HEAD + USERS)
    prosecutor, ngo = loaded.users
    assert (prosecutor.principal, ngo.principal) == ("NG/prosecutor-lagos", "NG/ngo-lagos")
    assert prosecutor.rights().query_kinds == {"person", "document"}
    assert prosecutor.rights().full_records  # the investigator's default stays
    assert ngo.kinds is None
    assert ngo.rights().query_kinds == frozenset()
    assert ngo.rights().receive_kinds == {DIFFUSION, MESSAGE}
    assert UserSpec(bureau="NG", name="x", role="partner", kinds=[]).rights().query_kinds == set()  # type: ignore[arg-type]


def test_a_scenario_without_users_has_none(tmp_path: Path) -> None:
    """No [[users]]: an empty tuple."""
    assert load_scenario(tmp_path, HEAD).users == ()


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        (
            '[[users]]\nbureau = "FR"\nname = "x"\nrole = "partner"\n',
            "users[0].bureau: 'FR' is not one of the scenario's bureaus",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "Lagos Desk"\nrole = "partner"\n',
            "users[0].name: not a user name: 'Lagos Desk'",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "prosecutor"\n',
            "users[0].role: expected one of 'border', 'investigator', 'partner', got 'prosecutor'",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "border"\nkinds = ["dna"]\n',
            "users[0].kinds: expected one of 'document', 'person', 'vehicle', 'fingerprint',"
            " 'face', got 'dna'",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "border"\nkinds = "face"\n',
            "users[0].kinds: expected a list such as",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "border"\nkinds = ["face", "face"]\n',
            "users[0].kinds: a kind appears twice",
        ),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "partner"\n'
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "border"\n',
            "users[1].name: 'NG/x' is declared twice",
        ),
        ('[[users]]\nbureau = "NG"\nrole = "partner"\n', "users[0].name: required"),
        (
            '[[users]]\nbureau = "NG"\nname = "x"\nrole = "partner"\nrate = 3\n',
            "users[0].rate: unknown key; expected one of bureau, name, role, kinds",
        ),
        ('users = "NG/x"\n', "users: expected an array of tables ([[users]])"),
    ],
    ids=[
        "foreign-bureau", "bad-name", "bad-role", "bad-kind", "kinds-not-list", "kind-twice",
        "declared-twice", "no-name", "unknown-key", "not-array",
    ],
)  # fmt: skip
def test_invalid_users_are_refused_naming_the_key(
    tmp_path: Path, users: str, expected: str
) -> None:
    """A user of another bureau, a bad name, role or kind, or a principal declared twice,
    is refused with the key and what was expected."""
    text = HEAD + users if users.startswith("[[") else users + HEAD
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


# ---------------------------------------------------------------- the timeline


def test_a_user_may_query_and_be_posted_to(tmp_path: Path) -> None:
    """A query from a declared user expecting a refusal, and a diffusion to bureaus and
    users, load."""
    text = HEAD + USERS
    text += _event(
        'id = "ngo"\nquery = { from = "NG/ngo-lagos", to = ["GH"], kind = "person" }\n'
        'expect = "refused"'
    )
    text += _event('id = "alert"\ndiffusion = { from = "NG", to = ["GH", "NG/ngo-lagos"] }')
    text += _event('id = "note"\nmessage = { from = "NG/prosecutor-lagos", to = ["GH"] }')
    loaded = load_scenario(tmp_path, text)
    query = loaded.event("ngo")
    assert isinstance(query, scenario.QueryEvent)
    assert (query.query.requester, query.expect) == ("NG/ngo-lagos", "refused")
    alert = loaded.event("alert")
    assert isinstance(alert, scenario.PostEvent)
    assert alert.post.to == ("GH", "NG/ngo-lagos")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            'query = { from = "NG/judge", to = ["GH"], kind = "person" }',
            "events[0].query.from: 'NG/judge' is not one of the scenario's users ([[users]]:"
            " NG/prosecutor-lagos, NG/ngo-lagos)",
        ),
        (
            'query = { from = "NG/ngo-lagos", to = ["NG"], kind = "person" }',
            "events[0].query.to: a user queries other bureaus, not its own ('NG')",
        ),
        (
            'query = { from = "GH", to = ["NG/ngo-lagos"], kind = "person" }',
            "events[0].query.to: a query goes to bureaus; users answer none ('NG/ngo-lagos')",
        ),
        (
            'diffusion = { from = "NG", to = ["GH/desk"] }',
            "events[0].diffusion.to: 'GH/desk' is not one of the scenario's users",
        ),
        (
            'message = { from = "SN/desk", to = ["GH"] }',
            "events[0].message.from: 'SN/desk' is not one of the scenario's users",
        ),
        (
            'notice = { from = "NG/prosecutor-lagos" }',
            "events[0].notice.from: 'NG/prosecutor-lagos' is a user; only bureaus go here",
        ),
        (
            'query = { from = "GH", to = ["NG"], kind = "person" }\nexpect = "denied"',
            "events[0].expect: expected one of 'hit', 'no_hit', 'no_answer', 'record',"
            " 'not_found', 'refused', got 'denied'",
        ),
    ],
    ids=[
        "undeclared-user", "own-bureau", "query-to-user", "post-to-undeclared",
        "post-from-undeclared", "notice-from-user", "unknown-expect",
    ],
)  # fmt: skip
def test_timeline_parties_must_be_the_scenarios(tmp_path: Path, event: str, expected: str) -> None:
    """A query or post naming an undeclared user, a query to a user or to the requesting
    user's own bureau, and a notice from a user, are refused at load."""
    text = HEAD.replace('"SN"]', '"SN", "GS"]') + USERS + _event(event)
    assert _error(tmp_path, text).startswith(f"sim.toml: {expected}")


# ---------------------------------------------------------------- report paths


def test_users_paths_exist_only_with_users_and_roles_only_for_declared_ones(
    tmp_path: Path,
) -> None:
    """users.*, roles.<role>.* and messages.users.* are check paths of a scenario with
    users (roles it declares only); without users, a check naming them says why."""
    post = _event('id = "alert"\ndiffusion = { from = "NG", to = ["GH", "NG/ngo-lagos"] }')
    loaded = load_scenario(tmp_path, HEAD + USERS + post)
    paths = report_paths.check_paths(loaded)
    assert "users.queries.refused" in paths
    assert "roles.partner.queries.refused" in paths
    assert "roles.investigator.requests" in paths
    assert not any(p.startswith("roles.border.") for p in paths)
    assert "messages.users.delivered" in paths
    with pytest.raises(report_paths.PathError, match="not a role of the scenario's users"):
        report_paths.check_path(("roles", "border", "requests"), loaded)
    bare = load_scenario(tmp_path, HEAD)
    with pytest.raises(report_paths.PathError, match=r"declares no users \(\[\[users\]\]\)"):
        report_paths.check_path(("users", "queries", "refused"), bare)


def _query(label: str, requester: str, *outcomes: tuple[str, str]) -> QueryRecord:
    answers = tuple(AnswerRecord(bureau, outcome, 5.0) for bureau, outcome in outcomes)
    return QueryRecord(label, "person", requester, 0.0, 0.1, 5.0, answers)


def test_report_counts_users_with_their_bureau_by_role_and_refusals_apart() -> None:
    """A user's queries count in its bureau's as_requester, in users and in their role;
    a refused pair is counted refused, not failed."""
    queries = [
        _query("a", "NG", ("GH", "hit")),
        _query("b", "NG/ngo-lagos", ("GH", "refused")),
        _query("c", "NG/prosecutor-lagos", ("GH", "no_hit"), ("SN", "failed")),
    ]
    users = {"NG/ngo-lagos": "partner", "NG/prosecutor-lagos": "investigator"}
    report = reports.build(
        scenario="s", bureaus=["NG", "GH", "SN"], queries=queries, faults=[], run_end_s=1.0,
        timings={}, extra={}, users=users,
    )  # fmt: skip
    assert report["queries"]["refused"] == 1
    assert report["queries"]["failed"] == 1
    assert report["per_bureau"]["NG"]["as_requester"]["requests"] == 3
    assert report["users"]["requests"] == 2
    assert report["users"]["queries"]["refused"] == 1
    assert report["roles"]["partner"]["queries"] == {
        "sent": 1, "answered": 0, "hit": 0, "no_hit": 0, "no_answer": 0, "failed": 0,
        "refused": 1,
    }  # fmt: skip
    assert report["roles"]["investigator"]["queries"]["answered"] == 1
    assert list(report["roles"]) == ["investigator", "partner"]
    plain = reports.build(
        scenario="s", bureaus=["NG", "GH"], queries=queries[:1], faults=[], run_end_s=1.0,
        timings={}, extra={},
    )  # fmt: skip
    assert "users" not in plain
    assert "roles" not in plain


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer("GH", Outcome.FAILED, None, "session not opened: PERMISSION_DENIED: x"), "refused"),
        (Answer("GH", Outcome.FAILED, None, "PERMISSION_DENIED"), "refused"),
        (Answer("GH", Outcome.FAILED, None, "INVALID_ARGUMENT: bad"), "failed"),
        (Answer("GH", Outcome.NO_ANSWER, None, "UNAVAILABLE: down"), "no_answer"),
        (Answer("GH", Outcome.HIT, query_pb2.Answer()), "hit"),
    ],
)
def test_a_permission_denied_failure_is_a_refusal(answer: Answer, expected: str) -> None:
    """Only a call that failed PERMISSION_DENIED (gateway or owner) counts as refused."""
    assert outcome_of(answer) == expected


# ---------------------------------------------------------------- prepare


def test_users_are_issued_once_and_again_when_their_rights_change(tmp_path: Path) -> None:
    """The prepared PKI holds each user's entry, signed by its bureau; preparing again
    issues nobody, and a user whose kinds changed gets the next serial."""
    directory = pki.init(tmp_path / "pki", ["NG", "GH"])
    specs = (
        UserSpec(bureau="NG", name="ngo-lagos", role="partner"),
        UserSpec(bureau="GH", name="prosecutor-accra", role="investigator", kinds=("person",)),
    )
    assert issue_users(directory, specs) == ["NG/ngo-lagos", "GH/prosecutor-accra"]
    assert issue_users(directory, specs) == []

    def entry(user: str) -> users_pb2.UserEntry:
        signed = users_pb2.SignedUserEntry.FromString(directory.user_entry_path(user).read_bytes())
        return users_pb2.UserEntry.FromString(signed.entry)

    assert list(entry("GH/prosecutor-accra").rights.query_kinds) == ["person"]
    changed = (
        specs[0],
        UserSpec(bureau="GH", name="prosecutor-accra", role="investigator", kinds=("document",)),
    )
    assert issue_users(directory, changed) == ["GH/prosecutor-accra"]
    assert entry("GH/prosecutor-accra").serial == entry("NG/ngo-lagos").serial + 1
    assert list(entry("GH/prosecutor-accra").rights.query_kinds) == ["document"]


def _answered(ref: str, outcome: Outcome = Outcome.HIT) -> Sent:
    """NG/border's query to GH for planted record GH-P-1, answered with one match ``ref``."""
    planned = Planned("q", "NG/border", ["GH"], query_pb2.Query(), {"GH": "GH-P-1"}, kind="person")
    hits = query_pb2.Answer(hits=query_pb2.Hits(matches=[query_pb2.Match(ref=ref)]))
    return Sent(planned, [Answer("GH", outcome, hits)])


def test_a_hit_only_users_hit_counts_as_the_planted_record_found() -> None:
    """A hit whose references are withheld (a hit-only user) found the planted record; a
    hit on another reference did not."""
    summary = planted_summary([_answered(""), _answered("GH-P-1"), _answered("GH-P-2")])
    assert summary == {"queries": 3, "hit": 2, "missed": 1, "unanswered": 0}

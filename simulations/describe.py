"""``ncbsim simulate --validate``: what a valid scenario would run, without starting it.

:func:`validate` loads the scenario, which checks every key and every check's report
paths (simulations/scenario/, simulations/paths.py), and describes it in plain lines:
the bureaus, the records, the traffic, the messages, the users, the timeline and the
checks.
"""

from __future__ import annotations

from ncbsim.simulations import scenario as scenarios
from ncbsim.simulations import schema

__all__ = ["describe", "validate"]

_MAX_CODES = 12


def _codes(codes: tuple[str, ...]) -> str:
    shown = ", ".join(codes[:_MAX_CODES])
    return shown + (f", +{len(codes) - _MAX_CODES} more" if len(codes) > _MAX_CODES else "")


def _event(e: scenarios.Event) -> str:
    head = f"{e.at_s:g} s  {e.id}: "
    if isinstance(e, scenarios.FaultEvent):
        span = f" for {e.duration_s:g} s" if e.duration_s is not None else ""
        params = "".join(f" {k}={v:g}" for k, v in e.params.items())
        return head + f"{e.fault} of {', '.join(e.targets)}{params}{span}"
    if isinstance(e, scenarios.HealEvent):
        return head + f"heal {e.heal}"
    if isinstance(e, scenarios.QueryEvent):
        q = e.query
        expect = f", expect {e.expect}" if e.expect else ""
        fetch = " with a fetch" if q.fetch else ""
        return head + f"{q.kind} query {q.requester} -> {', '.join(q.to)}{fetch}{expect}"
    if isinstance(e, scenarios.PostEvent):
        post = e.post
        return head + f"{post.kind} {post.sender} -> {', '.join(post.to)}"
    if isinstance(e, scenarios.NoticeEvent):
        return head + f"{e.notice.color} notice requested by {e.notice.requester}"
    return head + f"withdrawal of notice {e.withdraw.notice}"


def describe(s: scenarios.Scenario) -> list[str]:
    """What running ``s`` would do, one fact a line."""
    t, r, m = s.traffic, s.records, s.messages
    where = "network namespaces" if s.engine.mode == "netns" else "loopback"
    senders = _codes(t.requesters) if t.requesters else "every bureau"
    lines = [
        f"scenario: {s.name}" + (f" ({s.path})" if s.path is not None else ""),
        f"bureaus: {len(s.bureaus)} ({_codes(s.bureaus)}) and a gateway, real processes on {where}",
        f"records per bureau: {r.documents} documents, {r.persons} persons,"
        f" {r.vehicles} vehicles; {r.planted} planted"
        + (f"; {r.biometrics} persons enrolled (fingerprint, face)" if r.biometrics else ""),
        f"traffic: {t.duration_s:g} s at {t.rate_per_s:g} queries/s from {senders};"
        f" kinds {', '.join(schema.kinds(s))}; deadline {t.deadline_ms} ms",
    ]
    if m.rate_per_s:
        weights = ", ".join(f"{k} {w:g}" for k, w in m.mix.weights().items())
        lines.append(
            f"messages: {m.rate_per_s:g} posts/s ({weights}), drained for at most {m.drain_s:g} s"
        )
    elif schema.posts(s):
        lines.append(f"messages: the timeline's posts only, drained for at most {m.drain_s:g} s")
    if s.users:
        roles = {u.role: sum(v.role == u.role for v in s.users) for u in s.users}
        counted = ", ".join(f"{n} {role}" for role, n in roles.items())
        lines.append(f"users: {len(s.users)} ({counted}), each issued by its bureau")
    lines.append(f"events: {len(s.events)}")
    lines += [f"  {_event(e)}" for e in s.events]
    lines.append(f"checks: {len(s.checks)} of the scenario's, and the built-in ones")
    lines += [f"  {c.name}" + (f": {c.expect}" if c.expect != c.name else "") for c in s.checks]
    return lines


def validate(name_or_path: str) -> list[str]:
    """Load and check a scenario (file or built-in name) without starting anything.

    Returns the description of what it would run, ending with ``valid``; raises
    :class:`~ncbsim.simulations.scenario.ScenarioError` (file, key, what was wrong) otherwise.
    """
    return [*describe(scenarios.load(name_or_path)), "valid"]

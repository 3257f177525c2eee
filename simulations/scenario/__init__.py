"""Scenario files: bureaus, data, traffic, a timeline of events and checks. TOML, validated.

docs/scenarios.md documents every key. The package's modules, each one job:

- :mod:`.values`: checking values (numbers, integers, choices, codes, tables);
- :mod:`.events`: the timeline's event types, one per kind (:data:`Event` is their union);
- :mod:`.model`: the scenario and its parts, frozen dataclasses that validate themselves;
- :mod:`.timeline`: rules across a scenario's parts, and the timeline's semantics;
- :mod:`.users`: the users its bureaus issue (``[[users]]``), who may query and be posted to;
- :mod:`.loader`: reading a file or a table into a :class:`Scenario`.

:func:`load` reads a file and :func:`from_dict` validates a table; both raise
:class:`ScenarioError`, whose message names the file, the key and what was expected, e.g.
``sim.toml: traffic.rate_per_s: expected a number > 0, got 'fast'``. Nothing starts until
a scenario is valid. The fault kinds are ncbsim.simulations.faults.registry's; the names below
are the package's API, the fault-kind tables included (what a fault event accepts).
"""

from ncbsim.simulations.faults.registry import (
    FAULT_PARAMS,
    FAULTS,
    INSTANT_FAULTS,
    LINK_FAULTS,
    PROCESS_FAULTS,
    PROXY_FAULTS,
)
from ncbsim.simulations.scenario.events import (
    ALL,
    DIRECTIONS,
    EVENT_KINDS,
    EXPECTS,
    GATEWAY,
    MESSAGE_EVENTS,
    POST_KINDS,
    QUERY_KINDS,
    TARGETS,
    Event,
    ExplicitQuery,
    FaultEvent,
    HealEvent,
    NoticeEvent,
    NoticeSpec,
    Post,
    PostEvent,
    QueryEvent,
    Withdrawal,
    WithdrawEvent,
)
from ncbsim.simulations.scenario.loader import (
    SCENARIOS,
    builtin_names,
    fault_event,
    from_dict,
    load,
    resolve,
)
from ncbsim.simulations.scenario.model import (
    ALL_MEMBERS,
    CheckSpec,
    EngineSettings,
    MessageMix,
    Messages,
    Mix,
    Records,
    Scenario,
    Traffic,
)
from ncbsim.simulations.scenario.users import UserSpec
from ncbsim.simulations.scenario.values import ScenarioError

__all__ = [
    "ALL",
    "ALL_MEMBERS",
    "DIRECTIONS",
    "EVENT_KINDS",
    "EXPECTS",
    "FAULTS",
    "FAULT_PARAMS",
    "GATEWAY",
    "INSTANT_FAULTS",
    "LINK_FAULTS",
    "MESSAGE_EVENTS",
    "POST_KINDS",
    "PROCESS_FAULTS",
    "PROXY_FAULTS",
    "QUERY_KINDS",
    "SCENARIOS",
    "TARGETS",
    "CheckSpec",
    "EngineSettings",
    "Event",
    "ExplicitQuery",
    "FaultEvent",
    "HealEvent",
    "MessageMix",
    "Messages",
    "Mix",
    "NoticeEvent",
    "NoticeSpec",
    "Post",
    "PostEvent",
    "QueryEvent",
    "Records",
    "Scenario",
    "ScenarioError",
    "Traffic",
    "UserSpec",
    "WithdrawEvent",
    "Withdrawal",
    "builtin_names",
    "fault_event",
    "from_dict",
    "load",
    "resolve",
]

"""ncbsim's locust file: requester bureaus sending border-style checks through the gateway.

Run it with ``ncbsim load`` (which brings up or finds the network, issues the
requesters' keys and writes the plan), or by hand with a plan it wrote::

    locust -f load/locustfile.py --headless --plan OUT/plan.json --slo load/slo.toml \\
        -u 10 -r 5 -t 30s

Tasks are weighted the way border traffic is: mostly travel-document checks, then
person searches, vehicle checks, step-2 fetches and multi-bureau checks.
"""

from ncbsim.load.grpc_user import init_gevent

init_gevent()  # gRPC must cooperate with gevent before any channel exists.

import time  # noqa: E402 - after the gevent set-up on purpose
from typing import Any  # noqa: E402

from locust import events, task  # noqa: E402

from ncbsim.load import gate  # noqa: E402
from ncbsim.load.bureau_user import BureauUser, add_arguments, name_target  # noqa: E402


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add_arguments(parser)
    gate.add_arguments(parser)
    parser.add_argument(
        "--user-rate",
        type=float,
        env_var="NCBSIM_LOAD_USER_RATE",
        default=10.0,
        help="mean checks per second of each user, Poisson arrivals (0: back to back)",
    )


events.init.add_listener(gate.check_slo_file)
events.init.add_listener(name_target)
events.quitting.add_listener(gate.judge)


class BorderPost(BureauUser):
    """A bureau's border posts: checks arriving at ``--user-rate`` per user, at random."""

    _next_start: float | None = None

    def wait_time(self) -> float:
        """Poisson arrivals at the configured mean rate; no pause when the rate is 0.

        Travellers do not arrive on a clock. Fixed pacing (locust's constant_throughput)
        lets users fall into step after any hiccup, and then every check arrives in a
        burst with all the others, which measures queueing the load never had.
        """
        rate: float = self.environment.parsed_options.user_rate
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        start = now if self._next_start is None else max(self._next_start, now - 1 / rate)
        self._next_start = start + self.rng.expovariate(rate)
        return max(self._next_start - now, 0.0)

    @task(60)
    def document(self) -> None:
        """Travel document against the owner's SLTD records."""
        self.send_query("document")

    @task(15)
    def person(self) -> None:
        """Person by name and date of birth (wanted and missing persons)."""
        self.send_query("person")

    @task(10)
    def vehicle(self) -> None:
        """Vehicle by VIN or plate."""
        self.send_query("vehicle")

    @task(10)
    def fetch(self) -> None:
        """Step 2: the full record behind a hit's reference."""
        self.send_query("fetch")

    @task(5)
    def multi(self) -> None:
        """One document checked at every bureau at once."""
        self.send_multi()

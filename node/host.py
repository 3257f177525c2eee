"""A host process: many bureau nodes in one asyncio loop (``ncbsim host``).

Each hosted bureau is a full node (ncbsim.node.server.run_node) with its own port, keys,
databases and clock; they only share the process and its event loop. That is what lets
all 196 members run on two cores: a node is idle almost all the time, and a process per
bureau would cost its interpreter and gRPC runtime 196 times over.

The spec (JSON) names the gateway and each bureau::

    {"gateway": "127.0.0.1:7600",
     "bureaus": [{"bureau": "FR", "db": "/net/bureaus/FR/records.sqlite",
                  "listen": "127.0.0.1:0", "advertise": null, "gateway": null,
                  "clock_offset_ms": 0, "clock_skew_ms": 30000}]}

Only ``bureau`` and ``db`` are required; ``advertise`` is the address registered with the
gateway (a fault proxy) and ``gateway`` a per-bureau way to the gateway (null: the
top-level one); ``metrics_listen`` where its Prometheus metrics are served (default the
host's ``--metrics-listen``: each node has an endpoint of its own; ``"off"``: none, say
when ``--pod-metrics-listen`` serves them all). In a pod a bureau says ``"listen":
"0.0.0.0:7700", "advertise": "auto"``: it registers this machine's address toward the
gateway with its bound port (ncbsim.node.advertise); without ``advertise`` a node
registers its bound address as it is, ``0.0.0.0:7700`` included, which only a gateway on
the same machine reaches.

For a pod (node/host_probes.py): ``--health-listen HOST:PORT`` serves a plaintext
``grpc.health.v1.Health`` alone (``""`` once every bureau serves, ``ncbsim.bureau.XX``
each, NOT_SERVING once the host stops);
``--pod-metrics-listen HOST:PORT`` serves every bureau's metrics on one page, labelled
``bureau="XX"``; ``--metrics-any-address`` lets the metrics bind a non-loopback address.
The ready file appears once every bureau serves: ``{"role": "host", "pid": N, "bureaus":
{"FR": "127.0.0.1:port", ...}, "metrics": {"FR": "127.0.0.1:port", ...}, "health":
"HOST:PORT", "pod_metrics": "HOST:PORT"}`` (the last two "" unless asked). If a bureau
cannot start (or fails later), the host stops them all and exits 1, after a log line
naming the bureau and the reason. SIGTERM or SIGINT stops every node cleanly (exit 0).

The control socket (``--control``, a Unix socket removed at exit) takes JSON lines, one
request and one reply a line:

- ``{"op": "clock", "bureau": "FR", "offset_ms": 5000}`` -> ``{"ok": true}``: FR's clock
  now runs 5 s ahead (a clock-skew fault);
- ``{"op": "status"}`` -> ``{"ok": true, "pid": N, "bureaus": {"FR": {"address":
  "127.0.0.1:port", "offset_ms": 0}}}`` (address null until that node serves);
- anything else -> ``{"ok": false, "error": "..."}``; the host carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ncbsim.clock import Clock
from ncbsim.errors import ConfigError, NcbsimError
from ncbsim.node.caps import DEFAULT_DAILY_CAP
from ncbsim.node.config import NodeConfig
from ncbsim.pki import PkiDir
from ncbsim.workdir import BureauFiles

if TYPE_CHECKING:
    from ncbsim.node.host_probes import HostProbes

log = structlog.get_logger()

_BUREAU_KEYS = frozenset(
    {
        "bureau",
        "db",
        "listen",
        "advertise",
        "gateway",
        "clock_offset_ms",
        "clock_skew_ms",
        "metrics_listen",
        "biometric_daily_cap",
    }
)
_CONTROL_LINE_LIMIT = 64 * 1024


def _fail(where: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {json.dumps(got)}")


def _int(item: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = item.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(f"{where}.{key}", "an integer (milliseconds)", value)
    return value


def _text(item: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(f"{where}.{key}", "a non-empty string", value)
    return value


def load_spec(
    path: Path,
    pki: PkiDir,
    *,
    metrics_listen: str = "127.0.0.1:0",
    metrics_any_address: bool = False,
) -> list[NodeConfig]:
    """Read and validate a host spec: one NodeConfig per bureau.

    Raises ConfigError naming the file and the key, and what was expected, for a file
    that is not JSON, a missing or unknown key, a value of the wrong type, a duplicate
    bureau, a bureau the PKI holds no keys for, or a database that does not exist.
    ``metrics_listen`` is where a bureau without ``metrics_listen`` of its own serves
    its metrics (``off``: nowhere); ``metrics_any_address`` allows either on any address.
    """
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the spec: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(str(path), "a JSON object", type(data).__name__)
    unknown = sorted(set(data) - {"gateway", "bureaus"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected gateway, bureaus)")
    gateway = _text(data, "gateway", str(path), required=True)
    bureaus = data.get("bureaus")
    if not isinstance(bureaus, list) or not bureaus:
        raise _fail(f"{path}: bureaus", "a non-empty list", bureaus)
    configs: list[NodeConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(bureaus):
        where = f"{path}: bureaus[{index}]"
        if not isinstance(item, dict):
            raise _fail(where, "an object", item)
        unknown = sorted(set(item) - _BUREAU_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(_BUREAU_KEYS))})"
            )
        code = _text(item, "bureau", where, required=True)
        assert code is not None
        if code in seen:
            raise ConfigError(f"{where}.bureau: {code} is listed twice")
        seen.add(code)
        db = Path(_text(item, "db", where, required=True) or "")
        try:
            config = NodeConfig(
                pki=pki,
                bureau=code,
                files=BureauFiles.beside(db),
                gateway=_text(item, "gateway", where) or gateway or "",
                listen=_text(item, "listen", where) or "127.0.0.1:0",
                advertise=_text(item, "advertise", where),
                clock_offset_ms=_int(item, "clock_offset_ms", where, 0),
                clock_skew_ms=_int(item, "clock_skew_ms", where, 30_000),
                metrics_listen=_text(item, "metrics_listen", where) or metrics_listen,
                metrics_any_address=metrics_any_address,
                biometric_daily_cap=_int(item, "biometric_daily_cap", where, DEFAULT_DAILY_CAP),
            )
        except NcbsimError as exc:  # PkiError for a bad code, ConfigError for the rest
            raise ConfigError(f"{where} ({code}): {exc}") from None
        if not pki.party(code).is_dir():
            raise ConfigError(f"{where}.bureau: {code} is not a bureau of the PKI in {pki.root}")
        if not db.is_file():
            raise ConfigError(f"{where}.db: no such database: {db}")
        configs.append(config)
    return configs


class Host:
    """The bureaus of one host process: their configs, clocks and bound addresses."""

    def __init__(
        self, configs: list[NodeConfig], on_node_ready: Callable[[str], None] | None = None
    ) -> None:
        self.configs = {config.bureau: config for config in configs}
        self._on_node_ready = on_node_ready
        self.clocks = {config.bureau: Clock(offset_ms=config.clock_offset_ms) for config in configs}
        self.addresses: dict[str, str] = {}
        self.metrics: dict[str, str] = {}
        """Each bureau's metrics endpoint ("" if it serves none)."""
        self.all_ready = asyncio.Event()

    def node_ready(self, bureau: str, address: str, metrics: str = "") -> None:
        """Note that ``bureau`` serves on ``address`` (and its metrics on ``metrics``);
        the last one sets ``all_ready``."""
        self.addresses[bureau] = address
        self.metrics[bureau] = metrics
        if self._on_node_ready is not None:
            self._on_node_ready(bureau)
        if len(self.addresses) == len(self.configs):
            self.all_ready.set()

    def status(self) -> dict[str, Any]:
        """The reply to a ``status`` request."""
        return {
            "ok": True,
            "pid": os.getpid(),
            "bureaus": {
                code: {
                    "address": self.addresses.get(code),
                    "metrics": self.metrics.get(code),
                    "offset_ms": clock.offset_ms,
                }
                for code, clock in self.clocks.items()
            },
        }

    def handle(self, line: bytes) -> dict[str, Any]:
        """Answer one control request (a JSON line); never raises."""
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"ok": False, "error": "not a JSON line"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "clock":
            return self._set_clock(request.get("bureau"), request.get("offset_ms"))
        return {"ok": False, "error": f"unknown op {op!r} (expected clock, status)"}

    def _set_clock(self, code: object, offset: object) -> dict[str, Any]:
        """The ``clock`` op: set ``code``'s clock offset to ``offset`` milliseconds."""
        if not isinstance(code, str) or code not in self.clocks:
            return {"ok": False, "error": f"no such bureau in this host: {code!r}"}
        if not isinstance(offset, int) or isinstance(offset, bool):
            return {"ok": False, "error": "offset_ms must be an integer"}
        self.clocks[code].offset_ms = offset
        log.info("clock_set", bureau=code, offset_ms=offset)
        return {"ok": True}

    async def serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One control connection: a reply line for each request line, until EOF."""
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit: answer, then hang up
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    await writer.drain()
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                writer.write(json.dumps(self.handle(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except Exception:  # a control client must never take the host down
            log.exception("control_failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def run_host(
    configs: list[NodeConfig],
    *,
    ready_file: Path | None = None,
    control: Path | None = None,
    stop: asyncio.Event | None = None,
    health_listen: str | None = None,
    pod_metrics_listen: str | None = None,
    metrics_any_address: bool = False,
) -> int:
    """Run every bureau of ``configs`` until ``stop`` is set (default: SIGINT or SIGTERM).

    All nodes start at once. Writes ``ready_file`` when every one serves. Returns 0
    after a clean stop, 1 if a node failed (the others are then stopped too).
    ``health_listen`` and ``pod_metrics_listen`` serve the pod's probe and metrics
    (node/host_probes.py). ConfigError if one of their ports cannot be had.
    """
    from ncbsim.directory import Directory
    from ncbsim.metrics import NodeMetrics
    from ncbsim.node.host_probes import HostProbes
    from ncbsim.node.server import run_node  # gRPC: imported only when a host runs
    from ncbsim.processes import stop_on_signals

    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    metrics = {config.bureau: NodeMetrics(config.bureau) for config in configs}
    probes = HostProbes(metrics)
    host = Host(configs, on_node_ready=probes.bureau_serving)
    try:
        await probes.start(
            stop,
            health_listen=health_listen,
            pod_metrics_listen=pod_metrics_listen,
            any_address=metrics_any_address,
        )
    except BaseException:
        await probes.close()
        raise
    server = None
    if control is not None:
        # Created 0600 under a tight umask: no moment when another user could connect.
        umask = os.umask(0o077)
        try:
            server = await asyncio.start_unix_server(
                host.serve_control, path=str(control), limit=_CONTROL_LINE_LIMIT
            )
        finally:
            os.umask(umask)
    # One verified directory for all the nodes (they share the PKI): each entry is
    # verified once, not once per node, which would cost O(bureaus^2) at start.
    directories = {config.pki.root: Directory.pinned(config.pki) for config in configs}
    nodes = {
        code: asyncio.create_task(
            run_node(
                config,
                stop=stop,
                clock=host.clocks[code],
                on_ready=partial(host.node_ready, code),
                directory=directories[config.pki.root],
                metrics=metrics[code],
            ),
            name=f"node-{code}",
        )
        for code, config in host.configs.items()
    }
    try:
        failed = await _supervise(host, nodes, stop, ready_file, probes)
    finally:
        await probes.close()
        for task in nodes.values():
            task.cancel()
        await asyncio.gather(*nodes.values(), return_exceptions=True)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        if control is not None:
            control.unlink(missing_ok=True)
    log.info("host_stopped", failed=failed)
    return 1 if failed else 0


async def _supervise(
    host: Host,
    nodes: Mapping[str, asyncio.Task[None]],
    stop: asyncio.Event,
    ready_file: Path | None,
    probes: HostProbes,
) -> list[str]:
    """Write the ready file when all nodes serve; stop all when one fails or ``stop`` is
    set. Returns the bureaus that failed, once every node has ended."""
    from ncbsim.serving import write_ready_file

    loop = asyncio.get_running_loop()
    started = loop.time()
    failed: dict[str, BaseException] = {}
    stopping = asyncio.create_task(stop.wait())
    ready = asyncio.create_task(host.all_ready.wait())
    pending: set[asyncio.Future[Any]] = {*nodes.values(), stopping, ready}
    try:
        while not stop.is_set():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if ready in done:
                await probes.all_serving()
                write_ready_file(
                    ready_file,
                    role="host",
                    bureaus=dict(host.addresses),
                    metrics=dict(host.metrics),
                    **probes.addresses(),
                )
                log.info("host_ready", bureaus=len(nodes), seconds=round(loop.time() - started, 3))
            for code, task in nodes.items():
                if task in done:  # a node only ends before ``stop`` by failing
                    failed[code] = task.exception() or RuntimeError("node ended early")
                    stop.set()
    finally:
        stopping.cancel()
        ready.cancel()
    results = await asyncio.gather(*nodes.values(), return_exceptions=True)
    for code, result in zip(nodes, results, strict=True):
        if isinstance(result, BaseException):
            failed.setdefault(code, result)
    for code, exc in failed.items():
        log.error("bureau_failed", bureau=code, reason=str(exc) or repr(exc))
    return sorted(failed)


async def control(sock: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a host's control socket and return its reply."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(sock), limit=_CONTROL_LINE_LIMIT)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    if not line:
        raise ConnectionError(f"{sock}: the host closed the connection without a reply")
    reply: dict[str, Any] = json.loads(line)
    return reply

"""Configuration both programs share: address checks and the log level.

Environment variables are read here and nowhere else (:func:`log_level_from_env`,
:func:`otlp_endpoint_from_env`). Each
program's own configuration, a frozen, keyword-only dataclass that validates itself,
lives next to it: ``ncbsim.gateway.config.GatewayConfig`` and
``ncbsim.node.config.NodeConfig``.
"""

from __future__ import annotations

import ipaddress
import os

from ncbsim.errors import ConfigError
from ncbsim.log import LEVELS


def check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"not a host:port address: {address!r}")


def log_level_from_env(default: str = "info") -> str:
    """The log level from NCBSIM_LOG_LEVEL, if set."""
    level = os.environ.get("NCBSIM_LOG_LEVEL", default).lower()
    if level not in LEVELS:
        raise ConfigError(f"NCBSIM_LOG_LEVEL must be one of {', '.join(LEVELS)}")
    return level


def otlp_endpoint_from_env() -> str | None:
    """Where to export traces over OTLP: the standard OTEL_EXPORTER_OTLP_ENDPOINT, if set
    (the OTLP exporter reads its other standard variables itself)."""
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


METRICS_OFF = "off"
"""``--metrics-listen off``: serve no metrics."""


def metrics_listen_address(listen: str, *, any_address: bool = False) -> tuple[str, int] | None:
    """``--metrics-listen``: ``(host, port)`` to serve on, or None for ``off``.

    ConfigError (one line) for anything but a loopback address: the page tells the
    network's traffic by bureau and method, for the operator of this machine only. With
    ``any_address`` (``--metrics-any-address``, in a pod) any address is allowed: there
    the pod's NetworkPolicy, not the bind address, decides who may scrape.
    """
    if listen.strip().lower() == METRICS_OFF:
        return None
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535 or not host:
        raise ConfigError(f"--metrics-listen: not a HOST:PORT address or 'off': {listen!r}")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback and not any_address:
        raise ConfigError(
            f"--metrics-listen {listen}: metrics are served on loopback only "
            "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT), or 'off'; "
            "--metrics-any-address allows any (in a pod, behind a NetworkPolicy)"
        )
    return host, int(port_text)

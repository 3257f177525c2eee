"""mTLS for every hop: credentials, channels and who the authenticated peer is.

Every server requires a client certificate signed by the pinned root. A peer is
identified by the DNS SAN of its certificate: ``gateway.ncbsim``,
``operator.ncbsim``, ``xx.bureau.ncbsim`` for bureau XX, or ``name.xx.user.ncbsim`` for
user ``XX/name``, whose certificate its bureau's CA issued under the root
(docs/users.md; the CA's name constraints make the handshake refuse any other name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ncbsim.pki import GATEWAY_NAME, TlsFiles, bureau_dns_name, bureau_from_dns_name
from ncbsim.principal import principal_from_dns_name

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_SAN_PROPERTY = "x509_subject_alternative_name"

KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 0),
    # Reconnect back-off (docs/protocol.md §10.5). gRPC's defaults (first retry after 1 s,
    # x1.6 up to 120 s) leave a link that healed after a long fault unused for up to two
    # minutes. Here the first retry comes after 100 ms and the wait grows (x1.6, jitter
    # +-20 %) to at most 1 s, so a healed link or a restarted process is used again
    # within about a second, whatever the fault lasted.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # Despite its name, gRPC core uses this as the minimum time one connection attempt
    # may take (TCP, TLS and HTTP/2 handshakes; default 20 s), not as a back-off. 100 ms
    # would fail every attempt through a fault proxy adding latency, so it stays at 5 s:
    # enough for the handshakes' three round trips at over 1 s of latency each way. An
    # attempt that fails sooner (refused, reset) is retried after the back-off above.
    ("grpc.min_reconnect_backoff_ms", 5_000),
    # Keepalive: ping every 10 s, even with no call in flight, and drop the connection if
    # a ping is not acknowledged within 5 s. A silently dead link (a blackhole, a peer
    # stopped with SIGSTOP or killed without a FIN reaching us) is noticed within 15 s
    # instead of hanging calls until their deadlines forever; the next call reconnects.
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    # By default a client stops pinging after two pings with no data frame in between;
    # 0 lifts that, so an idle channel keeps checking its link.
    ("grpc.http2.max_pings_without_data", 0),
]


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that demand a client certificate from the pinned root."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.root, require_client_auth=True
    )


def server_options() -> list[tuple[str, Any]]:
    """Options shared by every ncbsim server."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        # Accept the clients' keepalive pings (see _CHANNEL_OPTIONS). A server by default
        # counts a ping less than 5 minutes after the last one, or one on a connection
        # with no call, as a "strike" and after two strikes closes the connection with
        # GOAWAY too_many_pings; it would then cut every idle client every 30 s or so.
        # Half the clients' interval leaves room for timer jitter. (The C-core name of
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS has no "recv" in it; a
        # misspelt option is silently ignored, and all-members then saw GOAWAYs.)
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
        ("grpc.http2.max_ping_strikes", 2),
        # The server pings its clients too (default: every 2 hours), so a connection from
        # a client that vanished without a FIN is closed within 15 s, not held open.
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.max_pings_without_data", 0),
    ]


ClientInterceptors = Sequence[grpc.aio.ClientInterceptor]
"""Interceptors of a channel (metrics, traces): the caller's, in call order."""


def secure_channel(
    address: str, tls: TlsFiles, *, peer_name: str, interceptors: ClientInterceptors = ()
) -> grpc.aio.Channel:
    """An asyncio mTLS channel to ``address`` that only accepts a server named ``peer_name``."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root, private_key=tls.key, certificate_chain=tls.cert
    )
    options = [*_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer_name)]
    return grpc.aio.secure_channel(
        address, credentials, options=options, interceptors=list(interceptors) or None
    )


def gateway_channel(
    address: str, tls: TlsFiles, *, interceptors: ClientInterceptors = ()
) -> grpc.aio.Channel:
    """Channel to the gateway."""
    return secure_channel(address, tls, peer_name=GATEWAY_NAME, interceptors=interceptors)


def bureau_channel(
    address: str, tls: TlsFiles, bureau: str, *, interceptors: ClientInterceptors = ()
) -> grpc.aio.Channel:
    """Channel to bureau ``bureau``'s node; the server must hold that bureau's certificate."""
    return secure_channel(
        address, tls, peer_name=bureau_dns_name(bureau), interceptors=interceptors
    )


def peer_names(context: grpc.aio.ServicerContext) -> list[str]:
    """Subject alternative names of the authenticated client certificate (empty if none).

    gRPC makes the SAN list the peer identity whenever the certificate has one, so this
    reads exactly the ``x509_subject_alternative_name`` values through
    ``peer_identities()``. That is about 20 times cheaper per call than
    ``auth_context()``, which copies every property, the whole PEM certificate included.
    A certificate without a SAN has its common name as identity, and names nothing here.
    """
    if context.peer_identity_key() != _SAN_PROPERTY:
        return []
    return [v.decode("ascii", "replace") for v in context.peer_identities() or ()]


def peer_bureau(context: grpc.aio.ServicerContext) -> str | None:
    """The bureau code the mTLS client certificate names, or None."""
    for name in peer_names(context):
        code = bureau_from_dns_name(name)
        if code is not None:
            return code
    return None


def peer_principal(context: grpc.aio.ServicerContext) -> str | None:
    """The principal the mTLS client certificate names: a bureau ``FR`` or a user
    ``FR/name``; None for anyone else (gateway, operator). Only :func:`peer_bureau` may
    Register a node."""
    for name in peer_names(context):
        found = bureau_from_dns_name(name) or principal_from_dns_name(name)
        if found is not None:
            return found
    return None


def peer_certificate_sha256(context: grpc.aio.ServicerContext) -> bytes | None:
    """SHA-256 of the DER encoding of the client's certificate, or None.

    It reads the PEM certificate out of ``auth_context()``, which copies every property:
    call it only when the answer matters (a bureau with a revoked certificate, a user
    whose entry binds its certificate), not on every bureau's request.
    """
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def peer_is(context: grpc.aio.ServicerContext, name: str) -> bool:
    """Whether the mTLS client certificate carries DNS SAN ``name``."""
    return name in peer_names(context)


def channel_options() -> list[tuple[str, Any]]:
    """Options of every ncbsim client channel (the sync load users' channels too)."""
    return list(_CHANNEL_OPTIONS)

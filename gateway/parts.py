"""The parts of a running gateway that every RPC shares, and the steps they all take.

:class:`GatewayParts` holds the configuration, the router, the audit log, the rate
limiters (one for envelopes, one for control calls), the directory and, on a gateway
that stores one-way envelopes, the mailbox and its deliverer. Every RPC checks the
caller's credentials first (:meth:`GatewayParts.check_credentials`) and audits what it
answers (:func:`audit_row`); a refusal is audited, logged once and ended with its
status (:meth:`GatewayParts.refuse`). A call of many envelopes (MultiQuery, Post) is
opened by :meth:`GatewayParts.admit_call`: credentials, parsing, admission or refusal.
The job modules (:mod:`ncbsim.gateway.relay`, :mod:`ncbsim.gateway.posts`,
:mod:`ncbsim.gateway.control`) build on these.

No reply leaves before its audit row is committed (:meth:`ChainedLog.commit`, group
commit: concurrent handlers share one transaction). A refusal carries nothing, so it
still goes out if its row cannot be written (the failure is logged). docs/audit.md has
the details.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import grpc
import structlog

from ncbsim import envelope, transport
from ncbsim.auditlog import AuditWriteError
from ncbsim.errors import (
    DirectoryError,
    IdentityError,
    NcbsimError,
    RevokedError,
    reason_for,
    status_for,
)
from ncbsim.eventbus import EventBus
from ncbsim.gateway import observed
from ncbsim.gateway.admission import id_hex, is_principal, parse, refused_rows
from ncbsim.gateway.audit import AuditLog, AuditRecord
from ncbsim.gateway.config import CONTROL_DAILY_QUOTA, GatewayConfig
from ncbsim.gateway.delivery import Deliverer
from ncbsim.gateway.directory_files import DirectoryFiles
from ncbsim.gateway.limits import BureauLimit, LimitExceeded, RateLimiter
from ncbsim.gateway.mailbox import Mailbox
from ncbsim.gateway.router import Router
from ncbsim.gateway.user_files import UserFiles
from ncbsim.metrics import GatewayMetrics
from ncbsim.principal import is_user
from ncbsim.serving import abort
from ncbsim.v2 import gateway_pb2

log = structlog.get_logger()

Trailers = tuple[tuple[str, str], ...]
_Admitted = TypeVar("_Admitted")


def refusal_status(exc: NcbsimError) -> tuple[grpc.StatusCode, str, Trailers]:
    """Status, client-safe detail and trailing metadata for a refusal."""
    code, detail = status_for(exc)
    return code, detail, exc.trailing_metadata() if isinstance(exc, LimitExceeded) else ()


def _limited(exc: NcbsimError) -> bool:
    """A refusal over a rate limit or daily quota (one that says when to retry)."""
    return isinstance(exc, LimitExceeded) and exc.retry_after_ms is not None


def audit_row(
    rpc: str,
    peer: str,
    request_bytes: int,
    header: envelope.Header | None,
    *,
    outcome: str,
    status: grpc.StatusCode,
    started: float,
    response: envelope.Envelope | None = None,
    response_bytes: int | None = None,
) -> AuditRecord:
    """The audit row of one envelope (or of a request with no envelope to show); the
    answer's size is ``response_bytes`` if given, else that of ``response``."""
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    parties: tuple[str, str, str, str, str, int, int] = ("", "", "", "", "", 0, 0)
    if header is not None:
        ids = header.message_hex, header.correlation_hex
        sender, recipient = header.sender, header.recipient
        if outcome == "refused":  # maybe never admitted: copy only well-formed values
            ids = id_hex(header.message_id), id_hex(header.correlation_id)
            sender = sender if is_principal(sender) else ""
            recipient = recipient if is_principal(recipient) else ""
        parties = (
            *ids,
            sender,
            recipient,
            envelope.kind_name(header.kind),
            header.issued_at_ms,
            header.expires_at_ms,
        )
    return AuditRecord(
        int(time.time() * 1000),
        rpc,
        peer,
        *parties,
        request_bytes,
        response_bytes
        if response_bytes is not None
        else (response.ByteSize() if response is not None else 0),
        outcome,
        status.name,
        elapsed_ms,
    )


class GatewayParts:
    """What every RPC of one gateway works with (see the module docstring)."""

    def __init__(
        self,
        config: GatewayConfig,
        router: Router,
        audit: AuditLog,
        *,
        limiter: RateLimiter | None = None,
        mailbox: Mailbox | None = None,
        deliverer: Deliverer | None = None,
        metrics: GatewayMetrics | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.bus = bus if bus is not None else EventBus("gateway")
        """The gateway's event stream (:mod:`ncbsim.gateway.observed`)."""
        self.router = router
        self.audit = audit
        self.mailbox = mailbox
        self.deliverer = deliverer
        self.directory = DirectoryFiles(
            config.pki,
            refresh_s=config.directory_refresh_ms / 1000,
            metrics=self.metrics,
            bus=self.bus,
        )
        self.users = UserFiles(
            config.pki,
            self.directory,
            refresh_s=config.directory_refresh_ms / 1000,
            on_refused=self._user_entry_refused,
        )
        """The bureaus' users, each verified against its bureau (docs/users.md)."""
        default = BureauLimit(
            rate_per_s=config.rate_per_s, burst=config.burst, daily_quota=config.daily_quota
        )
        self.limiter = limiter or RateLimiter(default, config.bureau_limits)
        """Envelopes sent (Query, MultiQuery, Post), per bureau."""
        self.control_limiter = RateLimiter(
            BureauLimit(
                rate_per_s=config.control_rate_per_s,
                burst=config.control_burst,
                daily_quota=CONTROL_DAILY_QUOTA,
            )
        )
        """Control calls (GetDirectory, Register, Routes, Receipts), per bureau."""
        self.max_bytes = config.max_envelope_bytes
        self._revoked_seen = self.directory.revoked

    def check_credentials(self, peer: str | None, context: grpc.aio.ServicerContext) -> None:
        """RevokedError if the root revoked the certificate ``peer`` calls with.

        The revocation list is looked at within ``directory_refresh_ms``, and a newly
        revoked bureau's route is dropped at once. The certificate itself is read only
        for a bureau with a revoked certificate (that copies the whole auth context), so
        a re-issued certificate is let in again and no one else pays for the check.
        """
        self.directory.refresh()
        revoked = self.directory.revoked
        if revoked is not self._revoked_seen:
            for bureau, certs in revoked.certs.items():
                if certs != self._revoked_seen.certs.get(bureau):
                    self.router.drop(bureau)
            self._revoked_seen = revoked
        if peer is not None and peer in revoked.certs:
            fingerprint = transport.peer_certificate_sha256(context)
            if fingerprint is None or revoked.cert_revoked(peer, fingerprint):
                raise RevokedError(f"the certificate of {peer} is revoked")
        if peer is not None and is_user(peer):
            self._check_user(peer, context)

    def _check_user(self, peer: str, context: grpc.aio.ServicerContext) -> None:
        """A user calls only with a current entry of its bureau (RevokedError once it or
        its bureau is revoked) binding the very certificate it presents."""
        try:
            user = self.users.user(peer)
        except RevokedError:
            raise
        except DirectoryError as exc:
            raise IdentityError(str(exc)) from None
        if transport.peer_certificate_sha256(context) != user.tls_cert_sha256:
            raise IdentityError(f"the certificate of {peer} is not the one its entry binds")

    def _user_entry_refused(self, user: str, reason: str) -> None:
        """Audit a user entry that did not verify against its bureau (never served)."""
        row = AuditRecord(
            int(time.time() * 1000),
            "LoadUsers",
            "",
            "",
            "",
            user if is_principal(user) else "",
            "",
            "user_entry",
            0,
            0,
            0,
            0,
            "user_entry_refused",
            grpc.StatusCode.PERMISSION_DENIED.name,
            0.0,
        )
        self.audit.record(row)
        self.metrics.refusal("LoadUsers", "user_entry_refused", [None], limited=False)

    async def audit_refused(self, rows: Sequence[AuditRecord]) -> None:
        """Commit the rows of a refusal before it is sent; a refusal carries nothing, so
        it still goes out if they cannot be written (the failure is logged)."""
        try:
            await self.audit.commit(*rows)
        except AuditWriteError as exc:
            log.error("audit_not_written", rows=len(rows), error=str(exc))

    async def refuse(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        peer: str | None,
        exc: NcbsimError,
        *,
        started: float,
        refused: Sequence[tuple[int, envelope.Header | None]],
    ) -> NoReturn:
        """Audit each refused (size, header), log once, and end the RPC with exc's status."""
        code, detail, trailers = refusal_status(exc)
        self.metrics.refusal(rpc, reason_for(exc), [h for _, h in refused], limited=_limited(exc))
        rows = [
            audit_row(
                rpc, peer or "", size, header, outcome="refused", status=code, started=started
            )
            for size, header in refused
        ]
        await self.audit_refused(rows)
        for row in rows:
            observed.refused(self.bus, row, exc)
        log.warning("refused", rpc=rpc, peer=peer, status=code.name, reason=detail)
        await abort(context, code, detail, trailers)

    async def observe_denied(self, context: grpc.aio.ServicerContext) -> None:
        """Audit (and tell the operator of) a caller refused ``Observe``: only the
        operator may watch the gateway's event stream."""
        row = audit_row(
            "Observe",
            transport.peer_principal(context) or "",
            0,
            None,
            outcome="refused",
            status=grpc.StatusCode.PERMISSION_DENIED,
            started=time.perf_counter(),
        )
        await self.audit_refused([row])
        observed.refused(self.bus, row, "not_operator")

    async def admit_call(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        request: bytes,
        message: type[gateway_pb2.MultiQueryRequest] | type[gateway_pb2.PostRequest],
        admit: Callable[[str | None, Sequence[envelope.Envelope], int], _Admitted],
        *,
        started: float | None = None,
    ) -> tuple[str | None, _Admitted]:
        """The caller and what ``admit`` (:func:`~ncbsim.gateway.admission.admit_queries`
        or :func:`~ncbsim.gateway.admission.admit_posts`) makes of the envelopes of a call
        of many (MultiQuery, Post), once its credentials are checked and the request
        parsed; or refuse the call, auditing one row per envelope (a single row for a
        request too odd to list). ``started`` is the call's start, if it was taken."""
        started = time.perf_counter() if started is None else started
        peer = transport.peer_principal(context)
        items: Sequence[envelope.Envelope] = ()
        try:
            self.check_credentials(peer, context)
            items = parse(request, message, max_bytes=None).envelopes
            return peer, admit(peer, items, len(request))
        except NcbsimError as exc:
            refused = refused_rows(items, len(request))
            await self.refuse(context, rpc, peer, exc, started=started, refused=refused)

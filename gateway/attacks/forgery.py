"""What the classroom-mode gateway makes up with its own keys: substituted directory
entries, forged answers and forged queries. A mixin of
:class:`~ncbsim.gateway.attacks.service.AttackGateway`, which owns the state.

It holds no bureau's private keys: its own Ed25519 and X25519 keys and a fake root of
its own are all it can sign or seal with (``leaked`` reads a bureau's keys from the PKI
folder, to stand for keys an accomplice stole)."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

from ncbsim import _crypto, envelope
from ncbsim.directory import verify_entry
from ncbsim.gateway.attacks.modes import Mode
from ncbsim.identity import Identity
from ncbsim.pki import PkiDir, sign_entry
from ncbsim.v2 import (
    directory_pb2,
    envelope_pb2,
    query_pb2,
)


class Forger:
    """Forgeries a gateway without any bureau's private keys can attempt."""

    _pki_dir: PkiDir
    _captured: dict[tuple[str, str], deque[envelope.Envelope]]
    signing: Any
    encryption: Any
    fake_root: Any

    def _entry_bytes(self, bureau: str) -> bytes:
        """``bureau``'s root-signed directory entry, as the PKI folder holds it."""
        return self._pki_dir.entry_path(bureau).read_bytes()

    # ------------------------------------------------------------ directory

    def _swapped(self, swap: dict[str, str]) -> directory_pb2.SignedDirectoryEntry:
        """``swap['bureau']``'s entry, substituted the way ``swap['how']`` says."""
        bureau, how = swap["bureau"], swap.get("how", "altered")
        key = swap.get("key", "encryption")
        if how == "stale":  # an older entry it recorded earlier, still root-signed
            return directory_pb2.SignedDirectoryEntry.FromString(bytes.fromhex(swap["entry"]))
        if how in {"relabel", "substitute"}:
            outer = directory_pb2.SignedDirectoryEntry.FromString(self._entry_bytes(swap["source"]))
            if how == "substitute":
                return outer
            entry = directory_pb2.DirectoryEntry.FromString(outer.entry)
            entry.bureau = bureau
            return directory_pb2.SignedDirectoryEntry(
                entry=entry.SerializeToString(), signature=outer.signature
            )
        outer = directory_pb2.SignedDirectoryEntry.FromString(self._entry_bytes(bureau))
        entry = directory_pb2.DirectoryEntry.FromString(outer.entry)
        if key == "signing":
            entry.signing_key = bytes(self.signing.verify_key)
        else:
            entry.encryption_key = _crypto.x25519_public_bytes(self.encryption)
        if how == "fake-root":
            return directory_pb2.SignedDirectoryEntry.FromString(sign_entry(self.fake_root, entry))
        if how != "altered":
            raise ValueError(f"unknown swap {how!r}")
        return directory_pb2.SignedDirectoryEntry(
            entry=entry.SerializeToString(), signature=outer.signature
        )

    def _forged_response(self, header: envelope.Header, variant: str) -> envelope.Envelope | None:
        """A made-up answer "from" the target, the best a gateway without keys can do."""
        if variant == "splice":
            earlier = self._captured.get((header.sender, header.recipient))
            if not earlier:
                return None
            genuine = earlier[-1]
            fields = envelope_pb2.Header.FromString(genuine.header)
            fields.correlation_id = header.message_id
            fields.issued_at_ms = int(time.time() * 1000)
            fields.expires_at_ms = fields.issued_at_ms + envelope.DEFAULT_TTL_MS
            return envelope.Envelope(
                header=fields.SerializeToString(),
                sealed=genuine.sealed,
                signature=genuine.signature,
            )
        target = verify_entry(
            self._pki_dir.root_public_key(),
            self._entry_bytes(header.recipient),
            now_ms=int(time.time() * 1000),
        )
        # It cannot read the query's response key, so it seals to a key of its own.
        guess = _crypto.x25519_generate()
        now = int(time.time() * 1000)
        raw = envelope_pb2.Header(
            version=envelope.VERSION,
            message_id=os.urandom(envelope.MESSAGE_ID_LEN),
            sender=header.recipient,
            recipient=header.sender,
            kind=envelope_pb2.MESSAGE_KIND_QUERY_RESPONSE,
            issued_at_ms=now,
            expires_at_ms=now + envelope.DEFAULT_TTL_MS,
            correlation_id=header.message_id,
            sender_key_id=target.signing_key_id,
            recipient_key_id=_crypto.key_id(_crypto.x25519_public_bytes(guess)),
        ).SerializeToString()
        no_hit = query_pb2.Answer(hits=query_pb2.Hits()).SerializeToString()
        sealed = _crypto.hpke_seal(
            guess.public_key(),
            info=envelope.RESPONSE_INFO + header.message_id,
            aad=raw,
            plaintext=no_hit,
        )
        if variant == "unsigned":
            signature = b""
        elif variant == "own-key":
            signed = envelope.SIGNATURE_CONTEXT + len(raw).to_bytes(4, "big") + raw + sealed
            signature = _crypto.ed25519_sign(self.signing, signed)
        else:
            raise ValueError(f"unknown variant {variant!r}")
        return envelope.Envelope(header=raw, sealed=sealed, signature=signature)

    def _forged_request(self, mode: Mode, target: str) -> envelope.SealedRequest:
        """A query made up by the gateway as bureau ``mode.as_``, signed with its own key."""
        peer = verify_entry(
            self._pki_dir.root_public_key(),
            self._entry_bytes(target),
            now_ms=int(time.time() * 1000),
        )
        key, public = envelope.new_response_key()
        body = query_pb2.Query(
            response_key=public,
            document=query_pb2.DocumentQuery(number="P0000000", issuer=target),
        )
        signing, encryption = self.signing, self.encryption
        if mode.leaked:  # colluding with whoever stole the bureau's (since revoked) keys
            folder = self._pki_dir.party(mode.as_)
            signing = _crypto.signing_key_from_pem((folder / "signing.key").read_bytes())
            encryption = _crypto.x25519_from_pem((folder / "encryption.key").read_bytes())
        return envelope.seal_request(
            body.SerializeToString(),
            sender=Identity.from_keys(mode.as_, signing, encryption),
            recipient=peer,
            response_key=key,
        )

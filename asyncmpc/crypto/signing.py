"""Signatures with a player's certificate key: what lets a server prove what a data owner sent.

A data owner's norm-checked input is bound to one list of digests (``crypto.normproof``); the
owner signs that list, with the round's nonce, using the ECDSA P-256 key of its TLS
certificate (``net.pki``; ECDSA with SHA-256, FIPS 186-5). Every server learns the owner's public
key from its own authenticated TLS handshake with the owner, so a list another server forwards
can be checked without trusting that server: two lists the owner signed for one round are
proof that the owner equivocated, and a list it did not sign is proof that the forwarder lied
(``protocol.normcheck``).

The signed statement is ``statement(...)``: a SHA-256 digest of a fixed label, the session,
the round, the owner, the round's nonce (16 random bytes the model owner draws for each round:
a list signed for an earlier epoch's round of the same number is not this round's), the input
id (part of the proof's context) and the digests.

Servers sign what they open the same way (``opened_statement``), so a server that receives
values unlike its own on a component both hold can show the model owner the other's signed
values beside the component the owner signed for: proof of which server lied
(``protocol.normcourt``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from asyncmpc.errors import ConfigError

__all__ = [
    "NONCE_BYTES",
    "SIGNATURE_BYTES",
    "Signer",
    "opened_statement",
    "public_key_of",
    "read_key",
    "statement",
    "verify",
]

NONCE_BYTES = 16
"""The round nonce's length."""
SIGNATURE_BYTES = 80
"""The longest signature taken (a DER-encoded P-256 ECDSA signature has at most 72 bytes)."""
_LABEL = b"asyncmpc norm digests v2"
_OPENED = b"asyncmpc norm opened v1"


def _hash(label: bytes, parts: tuple[bytes, ...]) -> bytes:
    h = hashlib.sha256(label)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def statement(
    session: str, round_no: int, owner: str, nonce: bytes, input_id: bytes, digests: tuple[bytes, ...]
) -> bytes:
    """What an owner signs for its input to round ``round_no`` of ``session``: its digests, and
    the input id its proof's context holds."""
    return _hash(_LABEL, (session.encode(), round_no.to_bytes(8, "big"), owner.encode(), nonce, input_id, *digests))


def opened_statement(
    session: str, round_no: int, server: str, nonce: bytes, owner: str, statement_signed: bytes, *values: bytes
) -> bytes:
    """What a server signs of its ``NormOpened``: the owner's statement (``statement``) it
    opened under, and each array of values it opened (as its shape and bytes, each part
    length-prefixed: values regrouped or reshaped are another statement)."""
    parts = (session.encode(), round_no.to_bytes(8, "big"), server.encode(), nonce, owner.encode(), statement_signed)
    return _hash(_OPENED, (*parts, *values))


class Signer:
    """Signs with an elliptic-curve private key (a player's TLS key)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    @classmethod
    def load(cls, path: str | Path) -> Signer:
        """The key in PEM file ``path`` (``read_key``)."""
        return cls(read_key(path))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self) -> bytes:
        """The public key, DER SubjectPublicKeyInfo (as ``public_key_of`` gives it)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def read_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """The private key in PEM file ``path``; ConfigError if it is missing or not an EC key."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: not an elliptic-curve key")
    return key


def public_key_of(certificate_der: bytes) -> bytes:
    """The public key of a DER certificate (a TLS peer's), DER SubjectPublicKeyInfo."""
    cert = x509.load_der_x509_certificate(certificate_der)
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is an ECDSA-SHA256 signature of ``data`` under ``public_key``."""
    if not signature or len(signature) > SIGNATURE_BYTES:
        return False
    key = serialization.load_der_public_key(public_key)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True

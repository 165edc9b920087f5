"""TLS 1.3 with mutual authentication, and the deployment CA that makes it possible.

``make_certs`` creates a deployment CA and, for every player of a hosts.toml, a key and a
certificate whose subject common name and DNS subject-alternative name are the player's name,
signed by that CA (ECDSA P-256, via the ``cryptography`` package). Keys are written with
owner-only permissions. ``tls_contexts`` builds the server and client ``ssl.SSLContext`` of one
player: TLS 1.3 only, the peer's certificate required and checked against the deployment CA,
and the dialled peer's certificate checked against the name it was dialled as. The runtime
also binds the certificate to the name a peer claims in its ``Hello`` (``verify_peer``).

Files in the TLS folder: ``ca.pem``, and ``NAME.pem`` / ``NAME.key`` for each player.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asyncmpc.config import Config
from asyncmpc.errors import ConfigError, RemoteProtocolError

__all__ = ["TlsContexts", "make_certs", "tls_contexts", "verify_peer"]

_VALID_DAYS = 365


@dataclass(frozen=True)
class TlsContexts:
    """How a node speaks TLS: contexts for both directions and a certificate-to-name check."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    verify_peer: Callable[[dict[str, Any] | None, str], None]
    """Raises RemoteProtocolError unless the certificate names the player."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def make_certs(config: Config, directory: str | Path, *, days: int = _VALID_DAYS) -> Path:
    """Create a fresh CA and one key and certificate per player of ``config`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"asyncmpc deployment CA ({config.session})")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (out / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for player in config.players.values():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(player.name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(player.name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(out / f"{player.name}.key", key)
        (out / f"{player.name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def verify_peer(cert: dict[str, Any] | None, claimed: str) -> None:
    """Raise RemoteProtocolError unless the (CA-verified) certificate names ``claimed``."""
    if not cert:
        raise RemoteProtocolError("presented no certificate", peer=claimed)
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
    if claimed not in names:
        shown = ", ".join(sorted(names)) or "nobody"
        raise RemoteProtocolError(f"claims to be {claimed!r} but its certificate names {shown}", peer=claimed)


def tls_contexts(config: Config, name: str) -> TlsContexts:
    """Server and client contexts for player ``name``; ConfigError naming any missing file."""
    folder = config.tls_dir
    if folder is None:
        raise ConfigError(f"{config.path}: [tls] dir: missing (plaintext is false, so TLS needs its files)")
    ca, cert, key = Path(folder) / "ca.pem", Path(folder) / f"{name}.pem", Path(folder) / f"{name}.key"
    for path in (ca, cert, key):
        if not path.is_file():
            raise ConfigError(f"{config.path}: [tls] dir: {path} is missing (create the files with asyncmpc certs)")
    contexts = []
    for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=str(ca))
            ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{config.path}: [tls] dir: cannot load {name}'s TLS files: {exc}") from exc
        if purpose == ssl.PROTOCOL_TLS_CLIENT:
            ctx.check_hostname = True  # the dialled peer's certificate must name that player
        contexts.append(ctx)
    return TlsContexts(server=contexts[0], client=contexts[1], verify_peer=verify_peer)

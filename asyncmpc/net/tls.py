"""TLS 1.3 with mutual authentication.

``tls_contexts`` builds the server and client ``ssl.SSLContext`` of one player, after checking
its own files (``pki.own_certificate``): TLS 1.3 only, the peer's certificate required and
checked against the deployment CA, and the dialled peer's certificate checked against the name
it was dialled as. The runtime also binds the certificate to the name a peer claims in its
``Hello`` (``verify_peer``). The certificates themselves are ``pki``'s.

Files a player needs in its TLS folder: ``ca.pem``, and its own ``NAME.pem`` and ``NAME.key``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncmpc.config import Config
from asyncmpc.crypto.signing import Signer
from asyncmpc.errors import ConfigError, RemoteProtocolError
from asyncmpc.net.pki import CertInfo, own_certificate

__all__ = ["TlsContexts", "certificate_signer", "tls_contexts", "verify_peer"]


@dataclass(frozen=True)
class TlsContexts:
    """How a node speaks TLS: contexts for both directions and a certificate-to-name check."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    verify_peer: Callable[[dict[str, Any] | None, str], None]
    """Raises RemoteProtocolError unless the certificate names the player."""
    own: CertInfo | None = None
    """The player's own certificate (its expiry, for the start-up log)."""


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
            raise ConfigError(f"{config.path}: [tls] dir: {path} is missing: {_missing(path, name)}")
    try:
        own = own_certificate(ca, cert, key, name)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: [tls] dir: {exc}") from None
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
    return TlsContexts(server=contexts[0], client=contexts[1], verify_peer=verify_peer, own=own)


def certificate_signer(config: Config, name: str) -> Signer | None:
    """Player ``name``'s certificate key as a signer (``crypto.signing``: norm digests, norm
    values); None without TLS. ConfigError if the key file is missing or not an EC key."""
    if config.protocol.plaintext or config.tls_dir is None:
        return None
    return Signer.load(Path(config.tls_dir) / f"{name}.key")


def _missing(path: Path, name: str) -> str:
    """What to do about a missing TLS file of player ``name``."""
    if path.name == "ca.pem":
        return "copy the deployment's ca.pem from the CA host"
    request = path.with_name(f"{name}.csr")
    if path.suffix == ".pem" and request.is_file():
        return f"have the CA host sign {request} (`asyncmpc certs sign {request.name}`) and put {name}.pem here"
    return (
        f"make the key here with `asyncmpc certs request --name {name} --dir {path.parent}` and have the CA host "
        "sign the request; or, for a deployment on one host, `asyncmpc certs` makes every file"
    )

"""The deployment's certificates: a CA, keys made where they are used, requests, signing, and
the checks a player makes of its own files.

A deployment has one CA (``ca.pem``, and ``ca.key`` which only the CA host keeps, to be taken
offline). Every player has an ECDSA P-256 key and a certificate whose subject common name and
DNS subject-alternative name are its name, signed by the CA. For players run by separate
organisations no private key need leave the host that uses it: the host makes its key and a
certificate signing request (PKCS #10, RFC 2986: ``make_request``), the CA host signs the
request (``sign_request``, which takes only the public key and the name from it and sets every
extension itself), and hands back the certificate and ``ca.pem``. ``make_certs`` does all of it
on one machine, for a deployment run by one organisation or on one host.

Nothing is ever overwritten unless asked (``force``): a new CA would cut every player off.
Private keys are written owner-only (0600), in a folder made owner-only (0700) when it is new.

``own_certificate`` is what every player checks at start (``tls.tls_contexts``): its
certificate is signed by the deployment CA, names it, is valid now, and matches its key.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asyncmpc.config import Config
from asyncmpc.config.settings import PLAYER_NAME
from asyncmpc.crypto.signing import read_key
from asyncmpc.errors import ConfigError

__all__ = [
    "DAYS",
    "MAX_DAYS",
    "WARN_DAYS",
    "CertInfo",
    "make_ca",
    "make_certs",
    "make_request",
    "own_certificate",
    "read_certificate",
    "sign_request",
]

DAYS = 365
"""Default validity of the CA and of player certificates (``asyncmpc certs --days``)."""
MAX_DAYS = 36500
"""The longest validity ``--days`` may ask for."""
WARN_DAYS = 30
"""A certificate this close to expiring is warned about (``check``, and at a player's start)."""
_BACKDATE = datetime.timedelta(minutes=5)
"""Certificates start this much before now, for hosts whose clocks differ a little."""


@dataclass(frozen=True)
class CertInfo:
    """What a person needs to know about one certificate file."""

    path: Path
    names: frozenset[str]
    not_after: datetime.datetime

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400

    def expiry(self, now: datetime.datetime | None = None) -> str:
        """``expires 2027-12-05 (365 days)``, with a warning inside ``WARN_DAYS``."""
        left = self.days_left(now)
        when = self.not_after.strftime("%Y-%m-%d")
        if left < 0:
            return f"EXPIRED on {when}"
        note = " - renew it soon" if left < WARN_DAYS else ""
        return f"expires {when} ({round(left)} days){note}"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _refuse_existing(paths: list[Path], force: bool) -> None:
    if force:
        return
    there = [str(p) for p in paths if p.exists()]
    if there:
        raise ConfigError(
            f"{there[0]} exists already{f' (and {len(there) - 1} more)' if len(there) > 1 else ''}; "
            "nothing was written (--force replaces it, which cuts off every player holding the old files)"
        )


def _folder(directory: str | Path) -> Path:
    """The folder, made owner-only (0700) if this creates it; one that exists keeps its mode
    (it may be a home folder), and the keys in it are owner-only anyway."""
    out = Path(directory)
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
        os.chmod(out, 0o700)  # mkdir's mode is masked by the umask
    return out


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate ({exc})") from None


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(directory: str | Path, title: str, *, days: int = DAYS, force: bool = False) -> Path:
    """Write ``ca.pem`` and ``ca.key`` (0600) in ``directory``; ConfigError if either exists
    and not ``force``."""
    out = _folder(directory)
    _refuse_existing([out / "ca.pem", out / "ca.key"], force)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"asyncmpc deployment CA ({title})")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(out / "ca.key", key)
    (out / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out / "ca.pem"


def make_request(directory: str | Path, name: str, *, force: bool = False) -> Path:
    """Write ``NAME.key`` (0600) and ``NAME.csr`` (a signing request naming ``name``) in
    ``directory``: the key never leaves this host. The request's path."""
    if not PLAYER_NAME.fullmatch(name) or name == "ca":
        raise ConfigError(f"{name!r} is not a player's name (letters, digits, '.', '_' and '-', not 'ca')")
    out = _folder(directory)
    key_path, csr_path = out / f"{name}.key", out / f"{name}.csr"
    _refuse_existing([key_path, csr_path], force)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(name))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return csr_path


def _requested_name(csr: x509.CertificateSigningRequest, path: Path) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) or not names[0].value:
        raise ConfigError(f"{path}: the request names no player (one subject common name expected)")
    return names[0].value


def sign_request(
    ca_dir: str | Path,
    request: str | Path,
    *,
    players: frozenset[str],
    out: str | Path | None = None,
    days: int = DAYS,
    force: bool = False,
) -> Path:
    """Sign the request at ``request`` with the CA in ``ca_dir``: write ``NAME.pem`` in ``out``
    (default: beside the request). Only the request's public key and common name are used,
    after its signature is checked (it proves the requester holds the key), and only for one
    of ``players`` (the deployment's names, which are also safe file names) whose name the
    request's file bears. The certificate's path."""
    path = Path(request)
    try:
        csr = x509.load_pem_x509_csr(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate signing request ({exc})") from None
    if not csr.is_signature_valid:
        raise ConfigError(f"{path}: the request's signature does not verify (damaged, or not made with its key)")
    name = _requested_name(csr, path)
    if name not in players:
        raise ConfigError(f"{path}: requests a certificate for {name!r}, which is not a player of the deployment")
    if path.stem != name:  # so that an operator signs what the file name says
        raise ConfigError(f"{path}: requests a certificate for {name!r}, not {path.stem!r}: rename it if that is meant")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path}: the request's key is not an elliptic-curve key")
    folder = Path(ca_dir)
    ca_key, ca_cert = read_key(folder / "ca.key"), _read_cert(folder / "ca.pem")
    _check_ca(ca_cert, folder / "ca.pem")
    target = Path(out) if out is not None else path.parent
    cert_path = target / f"{name}.pem"
    _refuse_existing([cert_path], force)
    target.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(_issue(ca_key, ca_cert, name, public, days).public_bytes(serialization.Encoding.PEM))
    return cert_path


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    public: ec.EllipticCurvePublicKey,
    days: int,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def make_certs(config: Config, directory: str | Path, *, days: int = DAYS, force: bool = False) -> list[str]:
    """A CA and every player's key and certificate, all in ``directory`` (one organisation).
    With the CA there already (``ca.pem`` and ``ca.key``), only players whose files are
    missing are added, with it; ConfigError if a file to write exists and not ``force``, or
    if there is nothing to add. The names written (``ca`` first when the CA is new)."""
    out = _folder(directory)
    written = []
    if force or not (out / "ca.pem").exists():
        make_ca(out, config.session, days=days, force=force)
        written.append("ca")
    players = list(config.players)
    if not force and not written:
        players = [n for n in players if not (out / f"{n}.key").exists() and not (out / f"{n}.pem").exists()]
        if not players:
            raise ConfigError(
                f"{out}: the CA and every player's files are there already; nothing was written "
                "(--force makes a new CA and keys, which cuts off every player holding the old files)"
            )
    for name in players:
        _refuse_existing([out / f"{name}.key", out / f"{name}.pem"], force)
    ca_key, ca_cert = read_key(out / "ca.key"), _read_cert(out / "ca.pem")
    for name in players:
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(out / f"{name}.key", key)
        cert = _issue(ca_key, ca_cert, name, key.public_key(), days)
        (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return written + players


def _names(cert: x509.Certificate) -> frozenset[str]:
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    with contextlib.suppress(x509.ExtensionNotFound):
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= set(alternative.get_values_for_type(x509.DNSName))
    return frozenset(names)


def read_certificate(path: str | Path) -> CertInfo:
    """The names and expiry of the certificate at ``path`` (ConfigError if unreadable)."""
    cert = _read_cert(Path(path))
    return CertInfo(Path(path), _names(cert), cert.not_valid_after_utc)


def _check_ca(cert: x509.Certificate, path: Path) -> None:
    """ConfigError unless ``cert`` is a CA certificate valid now."""
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(f"{path} is not a CA certificate (is it a player's?); copy the deployment's ca.pem here")
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(
            f"{path}: the deployment CA is {CertInfo(path, frozenset(), cert.not_valid_after_utc).expiry()}"
        )


def own_certificate(ca: Path, cert_path: Path, key_path: Path, name: str) -> CertInfo:
    """Check player ``name``'s own files before it starts: the certificate is signed by the
    CA in ``ca``, names ``name``, is valid now, and belongs to the key. ConfigError in one line
    saying which does not hold."""
    ca_cert, cert = _read_cert(ca), _read_cert(cert_path)
    _check_ca(ca_cert, ca)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"{cert_path} is not signed by the deployment CA in {ca} (a certificate from another CA, "
            "or another deployment's ca.pem); have the CA host sign this player's request"
        ) from None
    info = CertInfo(cert_path, _names(cert), cert.not_valid_after_utc)
    if name not in info.names:
        shown = ", ".join(sorted(info.names)) or "nobody"
        raise ConfigError(f"{cert_path} names {shown}, not {name} (is it another player's certificate?)")
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        when = f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
        raise ConfigError(f"{cert_path} is valid {when}, not now; have the CA host sign a new request")
    if cert.public_key() != read_key(key_path).public_key():
        raise ConfigError(f"{key_path} is not the key of {cert_path} (the pair comes from two requests)")
    return info

"""The deployment's certificates (``net.pki``): CA, requests, signing, and a player's check of
its own files."""

from __future__ import annotations

import datetime
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from asyncmpc.errors import ConfigError
from asyncmpc.net.pki import make_ca, make_certs, make_request, own_certificate, read_certificate, sign_request
from tests.helpers import loopback_config

PLAYERS = frozenset({"server-0", "server-1"})


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_request_signed_by_the_ca_passes_the_players_own_check_and_its_key_stays_home(tmp_path: Path) -> None:
    make_ca(tmp_path / "ca", "test")
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600 and _mode(tmp_path / "ca") == 0o700
    csr = make_request(tmp_path / "host", "server-1")
    assert _mode(tmp_path / "host" / "server-1.key") == 0o600
    cert = sign_request(tmp_path / "ca", csr, players=PLAYERS, out=tmp_path / "signed", days=30)
    assert not (tmp_path / "signed" / "server-1.key").exists()  # signing needs only the request
    info = own_certificate(tmp_path / "ca" / "ca.pem", cert, tmp_path / "host" / "server-1.key", "server-1")
    assert info.names == {"server-1"} and 29 < info.days_left() <= 30
    assert read_certificate(cert).not_after == info.not_after


def test_a_folder_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    make_request(home, "server-0")
    assert _mode(home) == 0o755 and _mode(home / "server-0.key") == 0o600
    make_request(tmp_path / "new" / "certs", "server-0")
    assert _mode(tmp_path / "new" / "certs") == 0o700


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    make_ca(tmp_path, "test")
    before = (tmp_path / "ca.pem").read_bytes()
    with pytest.raises(ConfigError, match=r"ca\.pem exists already"):
        make_ca(tmp_path, "test")
    make_request(tmp_path, "server-0")
    with pytest.raises(ConfigError, match=r"server-0\.key exists already"):
        make_request(tmp_path, "server-0")
    sign_request(tmp_path, tmp_path / "server-0.csr", players=PLAYERS)
    with pytest.raises(ConfigError, match=r"server-0\.pem exists already"):
        sign_request(tmp_path, tmp_path / "server-0.csr", players=PLAYERS)
    assert (tmp_path / "ca.pem").read_bytes() == before
    make_ca(tmp_path, "test", force=True)
    assert (tmp_path / "ca.pem").read_bytes() != before


def test_make_certs_adds_only_the_missing_players_with_the_kept_ca(tmp_path: Path) -> None:
    config = loopback_config()
    written = make_certs(config, tmp_path)
    assert written == ["ca", *config.players]
    ca, server = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "server-0.pem").read_bytes()
    (tmp_path / "data-owner-1.pem").unlink()
    (tmp_path / "data-owner-1.key").unlink()
    assert make_certs(config, tmp_path) == ["data-owner-1"]
    assert (tmp_path / "ca.pem").read_bytes() == ca and (tmp_path / "server-0.pem").read_bytes() == server
    own_certificate(tmp_path / "ca.pem", tmp_path / "data-owner-1.pem", tmp_path / "data-owner-1.key", "data-owner-1")
    with pytest.raises(ConfigError, match=r"every player's files are there already; nothing was written"):
        make_certs(config, tmp_path)


def test_signing_refuses_a_stranger_a_forged_request_and_ignores_what_a_request_asks_for(tmp_path: Path) -> None:
    make_ca(tmp_path, "test")
    make_request(tmp_path / "h", "mallory")
    with pytest.raises(ConfigError, match=r"'mallory', which is not a player"):
        sign_request(tmp_path, tmp_path / "h" / "mallory.csr", players=PLAYERS)
    # a request that asks for a CA certificate gets a player's
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-0")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    csr = builder.sign(key, hashes.SHA256())
    (tmp_path / "h" / "server-0.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    cert_path = sign_request(tmp_path, tmp_path / "h" / "server-0.csr", players=PLAYERS)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # a request whose file says another player than it asks for, or a name that is not a player
    shutil.copy(tmp_path / "h" / "server-0.csr", tmp_path / "h" / "server-1.csr")
    with pytest.raises(ConfigError, match=r"requests a certificate for 'server-0', not 'server-1': rename it"):
        sign_request(tmp_path, tmp_path / "h" / "server-1.csr", players=PLAYERS, out=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"'\.\./escaped' is not a player's name"):
        make_request(tmp_path / "h", "../escaped")
    assert not (tmp_path / "escaped.key").exists()
    forged = bytearray(csr.public_bytes(serialization.Encoding.DER))
    forged[-3] ^= 1  # the signature no longer verifies
    forged_csr = x509.load_der_x509_csr(bytes(forged))
    (tmp_path / "h" / "server-1.csr").write_bytes(forged_csr.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match=r"signature does not verify"):
        sign_request(tmp_path, tmp_path / "h" / "server-1.csr", players=PLAYERS)


def _own(folder: Path, name: str, cert: str | None = None, key: str | None = None) -> None:
    own_certificate(folder / "ca.pem", folder / f"{cert or name}.pem", folder / f"{key or name}.key", name)


def test_a_player_refuses_to_start_with_another_players_another_cas_or_a_mismatched_certificate(
    tmp_path: Path,
) -> None:
    config = loopback_config()
    make_certs(config, tmp_path / "a")
    make_certs(config, tmp_path / "b")
    _own(tmp_path / "a", "server-0")
    with pytest.raises(ConfigError, match=r"server-1\.pem names server-1, not server-0"):
        _own(tmp_path / "a", "server-0", cert="server-1", key="server-1")
    with pytest.raises(ConfigError, match=r"server-1\.key is not the key of .*server-0\.pem"):
        _own(tmp_path / "a", "server-0", key="server-1")
    (tmp_path / "a" / "other.pem").write_bytes((tmp_path / "b" / "server-0.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"other\.pem is not signed by the deployment CA"):
        _own(tmp_path / "a", "server-0", cert="other")
    shutil.copy(tmp_path / "a" / "server-1.pem", tmp_path / "a" / "ca.pem")  # a player's certificate as the CA's
    with pytest.raises(ConfigError, match=r"ca\.pem is not a CA certificate"):
        _own(tmp_path / "a", "server-0")


def test_an_expired_certificate_is_refused_at_start(tmp_path: Path) -> None:
    make_ca(tmp_path, "test")
    make_request(tmp_path, "server-0")
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "server-0.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and isinstance(key, ec.EllipticCurvePrivateKey)
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server-0")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(then - datetime.timedelta(days=1))
        .not_valid_after(then)
        .sign(ca_key, hashes.SHA256())
    )
    (tmp_path / "server-0.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match=r"server-0\.pem is valid .* not now"):
        _own(tmp_path, "server-0")
    assert read_certificate(tmp_path / "server-0.pem").expiry().startswith("EXPIRED on ")

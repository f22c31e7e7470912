"""The broker's small PKI, for TLS listeners: a CA, the broker's server certificate,
one client certificate per identity (its common name is the MQTT user name), and the
CRL of revoked ones. Every file is written atomically with its final mode
(:func:`write`), keys 0600 from the first byte::

    ca.pem ca.key               the CA (EC P-256, ten years)
    server.pem server.key       the broker's certificate, for its names and addresses
    revoked-certs/*.pem         client certificates revoked, kept for the CRL
    crl.pem                     what Mosquitto checks client certificates against
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=3650)
CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
CRL = "crl.pem"
REVOKED_CERTS = "revoked-certs"


def write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Atomically, with ``mode`` from the first byte (no window where a secret is
    readable by others)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def issue(
    directory: Path,
    common_name: str,
    *,
    server_names: Sequence[str] = (),
) -> tuple[bytes, bytes]:
    """A certificate signed by the CA in ``directory``: (cert PEM, key PEM); a server's
    with ``server_names`` (DNS names or addresses), else a client's."""
    ca_cert, ca_key = _ca(directory)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_names:
        alt: list[x509.GeneralName] = []
        for n in dict.fromkeys(server_names):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        eku = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        eku = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_ca(directory: Path, server_names: Sequence[str]) -> None:
    """A new CA in ``directory`` and the broker's server certificate for ``server_names``."""
    key = _key()
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"Plexus broker CA {secrets.token_hex(4)}")]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(key, hashes.SHA256())
    )
    write(directory / CA_KEY, _pem_key(key), 0o600)
    write(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = issue(directory, "plexus-broker", server_names=server_names)
    write(directory / SERVER_CERT, server_cert)
    write(directory / SERVER_KEY, server_key, 0o600)


def write_crl(directory: Path) -> None:
    """The CRL: every client certificate kept in ``revoked-certs/`` is revoked."""
    ca_cert, ca_key = _ca(directory)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + VALIDITY)
    )
    revoked_dir = directory / REVOKED_CERTS
    if revoked_dir.is_dir():
        for pem in sorted(revoked_dir.glob("*.pem")):
            serial = x509.load_pem_x509_certificate(pem.read_bytes()).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=5))
                .build()
            )
    crl = builder.sign(ca_key, hashes.SHA256())
    write(directory / CRL, crl.public_bytes(serialization.Encoding.PEM))

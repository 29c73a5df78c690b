"""Throwaway certificates for the demo, the tests and the bench: one CA, a broker certificate
for the loopback names, a client certificate per gateway. Nothing here is for production
(provisioning enrolls real identities); everything is made at run time, never committed
(LESSONS.md L9.5).

Keys are EC P-256 (fast to generate on a Pi). Key and certificate files are written 0600 in a
directory made 0700. `issue` is public so tests can make the odd ones: expired, not yet
valid, signed by another CA, issued for another host name.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEFAULT_SERVER_NAMES", "CertAuthority", "DevPki", "Issued", "make_dev_pki"]

DEFAULT_SERVER_NAMES: Final = ("localhost", "127.0.0.1")
VALIDITY: Final = timedelta(days=365)  # a demo or a test run: far from cert_expiry.WARN_DAYS
BACKDATE: Final = timedelta(minutes=5)  # tolerate a few minutes of skew between the parties


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key, in memory and on disk."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path


@dataclass(frozen=True, slots=True)
class CertAuthority:
    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path

    @classmethod
    def create(cls, directory: Path, name: str = "Carebox dev CA") -> CertAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        slug = name.lower().replace(" ", "-")
        cert_path = directory / f"{slug}.pem"
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cls(name, cert, key, cert_path)

    def issue(
        self,
        directory: Path,
        stem: str,
        *,
        common_name: str,
        server_names: tuple[str, ...] = (),
        client: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """A leaf certificate: a server one when `server_names` is given, a client one when
        `client`; validity defaults to now-5 min .. now+365 days."""
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        usages = []
        if server_names:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - BACKDATE)
            .not_valid_after(not_after or now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if server_names:
            alt: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    alt.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return Issued(cert, key, cert_path, key_path)


@dataclass(frozen=True, slots=True)
class DevPki:
    """What a local broker and one gateway need: CA, broker certificate, client certificate."""

    directory: Path
    ca: CertAuthority
    server: Issued
    client: Issued
    gateway_id: str

    def client_for(
        self,
        name: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Another client certificate from the same CA (a test subscriber, a second gateway,
        an expired one)."""
        return self.ca.issue(
            self.directory,
            name,
            common_name=name,
            client=True,
            not_before=not_before,
            not_after=not_after,
        )


def make_dev_pki(
    directory: Path,
    *,
    gateway_id: str = "cbx-dev",
    server_names: tuple[str, ...] = DEFAULT_SERVER_NAMES,
) -> DevPki:
    """A fresh CA, a broker certificate for `server_names`, a client one for `gateway_id`."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    ca = CertAuthority.create(directory)
    server = ca.issue(directory, "broker", common_name=server_names[0], server_names=server_names)
    client = ca.issue(directory, "client", common_name=gateway_id, client=True)
    return DevPki(directory, ca, server, client, gateway_id)

"""Helpers for the security tests (no tests here): a throwaway PKI for DICOM over TLS.

:func:`make_pki` writes a CA, a server certificate for 127.0.0.1/localhost, a client
certificate from the same CA, and a rogue CA with its own client certificate (a peer we
must not trust). RSA 2048 and SHA-256, so that dcmtk's default BCP 195 profile, Orthanc
and Python's ``ssl`` all accept them. Keys are unencrypted PEM, 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Pair
    client: Pair
    rogue_ca: Path
    rogue_client: Pair


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))  # fmt: skip
    path.chmod(0o600)
    return path


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    usages: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)  # fmt: skip
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if usages and ExtendedKeyUsageOID.SERVER_AUTH in usages:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _issue(folder: Path, name: str, ca: tuple[x509.Name, rsa.RSAPrivateKey],
           *usages: x509.ObjectIdentifier) -> Pair:  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _certificate(name, key, ca, list(usages))
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pair(path, _write_key(key, folder / f"{name}.key"))


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    authorities = []
    for name in ("minivess-test-ca", "rogue-ca"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _certificate(name, key, None)
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        authorities.append((cert.subject, key))
    ca, rogue = authorities
    return Pki(
        ca=folder / "minivess-test-ca.crt",
        # A DICOM node is SCP and SCU: the appliance presents this one when exporting too.
        server=_issue(
            folder, "server", ca, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
        ),
        client=_issue(folder, "client", ca, ExtendedKeyUsageOID.CLIENT_AUTH),
        rogue_ca=folder / "rogue-ca.crt",
        rogue_client=_issue(folder, "rogue-client", rogue, ExtendedKeyUsageOID.CLIENT_AUTH),
    )

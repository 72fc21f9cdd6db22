"""A throwaway certificate authority and server certificate for 127.0.0.1.

The Drive client always uploads over ``https`` (it keeps the scheme of the
discovery ``rootUrl`` and only swaps the host), so the test server speaks TLS
as well as plain HTTP on the same port. The same key signs OpenID ``id_token``s.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsMaterial:
    """Paths and PEM text of the generated CA and server certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    key_pem: bytes
    cert_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for the server side of a connection."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@cache
def _generate_pems() -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key) PEMs; generated once per process (RSA is slow)."""
    ca_key, server_key = _new_key(), _new_key()
    ca_name = _name("Lessonbot Google test CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_cert = (
        _builder(_name("127.0.0.1"), ca_name, server_key.public_key())
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return _pem(ca_cert), _pem(server_cert), key_pem


def generate_tls_material(directory: Path) -> TlsMaterial:
    """Write a CA and a certificate for 127.0.0.1/localhost signed by it into ``directory``."""
    ca_pem, cert_pem, key_pem = _generate_pems()
    files = {name: directory / name for name in ("ca.pem", "server.pem", "server.key")}
    files["ca.pem"].write_bytes(ca_pem)
    files["server.pem"].write_bytes(cert_pem)
    files["server.key"].write_bytes(key_pem)
    files["server.key"].chmod(0o600)
    return TlsMaterial(files["ca.pem"], files["server.pem"], files["server.key"], key_pem, cert_pem)

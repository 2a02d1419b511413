"""Per-environment certificates and keys for the local control plane, as envtest makes them.

A CA; the API server's serving certificate (SANs 127.0.0.1, localhost and the in-cluster names); an
admin client certificate (O=system:masters); a service-account signing key pair. ECDSA P-256 keeps
generation fast; private keys are SEC1 PEM, the one EC form every Kubernetes client here reads.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    # SEC1 (`BEGIN EC PRIVATE KEY`), not PKCS#8: Go and Python clients read both, but the fabric8 client
    # inside Spark's and Flink's native Kubernetes submission reads an EC key only in this form (PKCS#8
    # fails with "Invalid DER: object is not integer").
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _sign(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    *,
    ca: bool = False,
    usages: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


# The files of a `Pki`, in its field order.
FILES = ("ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "sa.key", "sa.pub")


def _files(directory: Path) -> Pki:
    return Pki(*(directory / name for name in FILES))


def existing(directory: Path) -> Pki | None:
    """The certificates and keys `generate` wrote to `directory` earlier, if they are all there."""
    pki = _files(directory)
    return pki if all(path.is_file() for path in vars(pki).values()) else None


def generate(directory: Path, now: datetime) -> Pki:
    """Write a fresh CA, serving and admin certificates and a service-account key pair to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = _files(directory)
    ca_key, serving_key, admin_key, sa_key = _key(), _key(), _key(), _key()
    ca_name = _name("tidescale-local-ca")
    ca = _sign(ca_name, ca_key.public_key(), ca_name, ca_key, now, ca=True)
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),  # the `kubernetes` service IP, never dialled
        *(
            x509.DNSName(n)
            for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
        ),
    ]
    serving = _sign(
        _name("kube-apiserver"),
        serving_key.public_key(),
        ca_name,
        ca_key,
        now,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=sans,
    )
    admin = _sign(
        _name("admin", "system:masters"),
        admin_key.public_key(),
        ca_name,
        ca_key,
        now,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    for cert, path in ((ca, pki.ca_cert), (serving, pki.serving_cert), (admin, pki.admin_cert)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for key, path in (
        (ca_key, pki.ca_key),
        (serving_key, pki.serving_key),
        (admin_key, pki.admin_key),
        (sa_key, pki.sa_key),
    ):
        _write_key(path, key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def kubeconfig(server: str, pki: Pki, user: str = "admin") -> str:
    """A kubeconfig that reaches `server` as the admin client certificate (files referenced by path)."""
    return f"""\
apiVersion: v1
kind: Config
clusters:
- name: tidescale-local
  cluster:
    server: {server}
    certificate-authority: {pki.ca_cert}
users:
- name: {user}
  user:
    client-certificate: {pki.admin_cert}
    client-key: {pki.admin_key}
contexts:
- name: tidescale-local
  context: {{cluster: tidescale-local, user: {user}}}
current-context: tidescale-local
"""

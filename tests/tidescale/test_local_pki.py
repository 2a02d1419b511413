"""The local environment's certificates and keys: the forms every Kubernetes client reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tidescale.local import pki

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def test_private_keys_are_sec1_pem_which_fabric8_reads(tmp_path: Path) -> None:
    certs = pki.generate(tmp_path, NOW)
    for path in (certs.ca_key, certs.serving_key, certs.admin_key, certs.sa_key):
        text = path.read_text()
        assert text.startswith("-----BEGIN EC PRIVATE KEY-----"), path.name
        assert "BEGIN PRIVATE KEY" not in text
        assert isinstance(serialization.load_pem_private_key(text.encode(), None), ec.EllipticCurvePrivateKey)
        assert path.stat().st_mode & 0o777 == 0o600


def test_the_admin_certificate_matches_its_key_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    certs = pki.generate(tmp_path, NOW)
    admin = x509.load_pem_x509_certificate(certs.admin_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(certs.admin_key.read_bytes(), None)
    assert admin.public_key() == key.public_key()
    admin.verify_directly_issued_by(ca)
    assert admin.subject.rfc4514_string() == "CN=admin,O=system:masters"

"""The unit's side of EST (RFC 7030): ask the enrolment endpoint for a certificate for a new key.

The key is made here and never sent; only its CSR goes out. The server is checked against the
site CA of the bundle (ca.crt); enrolment shows a one-time token, renewal the unit's current
certificate as TLS client certificate. Standard library only (http.client, ssl), so the Pi
needs no new package. See provisioning/est.py for the server and why EST.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from kernel.files import Durability, atomic_write, fsync_dir

ORGANIZATION = "Jaga"
DEFAULT_PORT = 8443
TIMEOUT_S = 20.0


class EstError(Exception):
    """The endpoint refused (status and its message) or answered nonsense: retrying won't help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EstUnavailable(Exception):
    """The endpoint could not be reached: try again later."""


@dataclass(frozen=True, slots=True)
class NewCertificate:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    """The issuing CA between the unit and the root (empty when the root signed it)."""


def endpoint(broker_host: str, server: str | None) -> str:
    """The endpoint's base URL: --server if given, else https://<broker host>:8443."""
    return (server or f"https://{broker_host}:{DEFAULT_PORT}").rstrip("/")


def request_certificate(
    base_url: str,
    site: str,
    device: str,
    ca: Path,
    *,
    token: str | None = None,
    client: tuple[Path, Path] | None = None,
) -> NewCertificate:
    """Make a P-256 key and get it certified: with token (simpleenroll) or client (reenroll)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site),
            x509.NameAttribute(NameOID.COMMON_NAME, device),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    body = base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
    op = "simplereenroll" if client else "simpleenroll"
    headers = {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}
    if token:
        headers["Authorization"] = f"Bearer {token.strip()}"
    answer = _post(f"{base_url}/.well-known/est/{site}/{op}", body, headers, ca, client)
    cert, chain = _check_answer(answer, key, subject, ca)
    return NewCertificate(key, cert, chain)


def install(new: NewCertificate, key_path: Path, cert_path: Path) -> None:
    """Write key (0600) and certificate (leaf + issuing CA: the chain Mosquitto is shown); both
    land as .new first, fsynced with their folder, then are renamed key first: a power cut
    anywhere is finished by finish_install() (run again at every agent start and renewal)
    instead of leaving a key without its certificate."""
    key_pem = new.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    durable = Durability.FSYNC_FILE_AND_DIR
    key_mode, key_owner = _like(key_path, 0o600, 0o640)
    atomic_write(_pending(key_path), key_pem, durability=durable, mode=key_mode)
    _own(_pending(key_path), key_owner)
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (new.cert, *new.chain))
    cert_mode, cert_owner = _like(cert_path, 0o644, 0o644)
    atomic_write(_pending(cert_path), cert_pem, durability=durable, mode=cert_mode)
    _own(_pending(cert_path), cert_owner)
    finish_install(key_path, cert_path)


def _like(path: Path, default: int, most: int) -> tuple[int, tuple[int, int] | None]:
    """The mode (within most) and owner the file has now, so a renewal run as root by its
    systemd unit leaves /etc/jaga as the install made it (root:jaga, key 0640)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return default, None
    return st.st_mode & most, (st.st_uid, st.st_gid)


def _own(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    st = path.stat()
    if (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)  # root only: the renewal unit runs as root with CAP_CHOWN


def finish_install(key_path: Path, cert_path: Path) -> bool:
    """Complete an install a power cut interrupted; True when something was moved.

    The pending certificate is installed only with the key it certifies (the pending key, or
    the key already moved in before the cut); anything else pending is a leftover and goes."""
    key_new, cert_new = _pending(key_path), _pending(cert_path)
    if not cert_new.exists():
        key_new.unlink(missing_ok=True)  # the certificate never arrived: keep the old pair
        return False
    key_for_cert = key_new if key_new.exists() else key_path
    if not _pair(key_for_cert, cert_new):
        cert_new.unlink(missing_ok=True)
        key_new.unlink(missing_ok=True)
        fsync_dir(cert_path.parent)
        return False
    if key_new.exists():
        key_new.replace(key_path)
        fsync_dir(key_path.parent)
    cert_new.replace(cert_path)
    fsync_dir(cert_path.parent)
    return True


def _pair(key_path: Path, cert_path: Path) -> bool:
    """True when the certificate file's first certificate is for the key in key_path."""
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def _pending(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def _post(
    url: str, body: bytes, headers: dict[str, str], ca: Path, client: tuple[Path, Path] | None
) -> bytes:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise EstError(f"the enrolment endpoint must be an https:// URL, not {url!r}")
    try:
        context = ssl.create_default_context(cafile=str(ca))
        if client:
            context.load_cert_chain(client[0], client[1])
    except (OSError, ssl.SSLError) as exc:
        raise EstError(
            f"cannot load the TLS files ({ca}{', ' + str(client[0]) if client else ''}): {exc}"
        ) from None
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=context, timeout=TIMEOUT_S
    )
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read(64 * 1024)
    except ssl.SSLCertVerificationError as exc:
        raise EstError(f"{parts.netloc} is not the site's server: {exc.verify_message}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise EstUnavailable(f"{parts.netloc}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        message = data.decode("utf-8", "replace").strip() or response.reason
        if response.status >= 500:
            raise EstUnavailable(f"{parts.netloc} answered {response.status}: {message}")
        raise EstError(message, response.status)
    return data


def _check_answer(
    body: bytes, key: ec.EllipticCurvePrivateKey, subject: x509.Name, ca_path: Path
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The answer's certificate must be for our key and subject, signed by our root CA, or by
    an issuing CA the answer carries that our root signed; returns it and that issuing CA."""
    try:
        found = pkcs7.load_der_pkcs7_certificates(
            base64.b64decode(b"".join(body.split()), validate=True)
        )
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (binascii.Error, ValueError) as exc:
        raise EstError(f"the endpoint's answer is not a certificate: {exc}") from None
    if not found:
        raise EstError("the endpoint answered without a certificate")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ours = key.public_key().public_bytes(*spki)
    # PKCS#7 keeps certificates as a SET: their order says nothing; ours is the one for our key
    cert = next((c for c in found if c.public_key().public_bytes(*spki) == ours), None)
    if cert is None:
        raise EstError("the endpoint certified another key than ours")
    if cert.subject != subject:
        raise EstError(f"the endpoint certified {cert.subject.rfc4514_string()!r}, not this unit")
    if cert.issuer == ca.subject:
        chain: tuple[x509.Certificate, ...] = ()
        signer = ca
    else:
        issuing = next((c for c in found if c.subject == cert.issuer and c != cert), None)
        if issuing is None:
            raise EstError("the answer lacks the issuing CA that signed the certificate")
        _check_signed("the issuing CA", issuing, ca, ca_path)
        chain, signer = (issuing,), issuing
    _check_signed("the certificate", cert, signer, ca_path)
    return cert, chain


def _check_signed(
    what: str, cert: x509.Certificate, signer: x509.Certificate, ca_path: Path
) -> None:
    try:
        cert.verify_directly_issued_by(signer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EstError(f"{what} is not signed by the site CA in {ca_path}: {exc}") from None

"""The simulator's persistent identity: one state directory (mode 0700) per simulated chip.

Holds a random root secret (chip id, VCEK/VLEK private keys and derived keys all come from it
deterministically) and the RSA-4096 ARK/ASK/ASVK keys and certificates. Reopening the
directory gives the same chip, so reports verify across restarts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guestagent.errors import InvalidArgumentError
from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.fields import Product, TcbVersion

if TYPE_CHECKING:  # cryptography loads only to sign or to issue certificates
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["SimState", "hkdf_sha384"]

_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
    16,
)
_CSP_ID = "guestagent-sim-csp"
# name -> (common name with {} for the product, issuer, serial as AMD numbers them)
_AUTHORITIES = {
    "ark": ("ARK-{}", None, 65536),
    "ask": ("SEV-{}", "ark", 65537),
    "asvk": ("SEV-VLEK-{}", "ark", 65538),
}


def hkdf_sha384(secret: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA-384 with the standard library's HMAC: the simulated chip derives its
    identity and keys without loading cryptography (the tests check it against cryptography's)."""
    if not 0 < length <= 255 * 48:
        raise ValueError(f"HKDF-SHA-384 cannot give {length} bytes")
    prk = hmac.digest(salt, secret, "sha384")
    out, block = b"", b""
    for counter in range(1, -(-length // 48) + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha384")
        out += block
    return out[:length]


def _write_private(path: Path, data: bytes) -> None:
    """Atomically write a file only the owner can read."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _pem_key(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


class SimState:
    """The simulated chip behind a state directory (created on first use)."""

    def __init__(self, directory: str | os.PathLike[str], product: Product | None = None):
        self.directory = Path(directory)
        self._lock_depth = 0
        self._certs: dict[str, x509.Certificate] = {}
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        try:
            self._prepare_directory()
            with self._locked():
                self._load_or_create_identity(product)
                self._check_certificate_files()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: Exception) -> SnpUnavailableError:
        # A damaged chip must stop the agent with a reason, not a traceback.
        return SnpUnavailableError(
            f"simulator state {self.directory} is unusable: {type(exc).__name__}: {exc}"
        )

    def _check_certificate_files(self) -> None:
        """Each certificate already issued is PEM-framed base64 DER (a cheap check at start:
        they are parsed, with cryptography's x509, only when first asked for)."""
        for path in sorted(self.directory.glob("*.pem")):
            der = ssl.PEM_cert_to_DER_cert(path.read_text())
            if not der.startswith(b"\x30"):
                raise ValueError(f"{path.name} does not hold a DER certificate")

    @property
    def ark(self) -> x509.Certificate:
        return self.authority("ark")

    @property
    def ask(self) -> x509.Certificate:
        return self.authority("ask")

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        """An exclusive lock on the state, so two processes never create it at once."""

        @contextlib.contextmanager
        def hold():
            if self._lock_depth:  # flock is per open file: re-locking would deadlock
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with open(self.directory / ".lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0

        return hold()

    def _prepare_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & 0o077:
            raise SnpUnavailableError(
                f"simulator state directory {self.directory} is mode {mode:o}; it holds private "
                "keys and must be 0700"
            )

    def _load_or_create_identity(self, product: Product | None) -> None:
        chip_file = self.directory / "chip.json"
        if not chip_file.exists():
            chosen = product or Product.MILAN
            _write_private(self.directory / "root_secret", os.urandom(32))
            created = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
            chip = {"product": chosen.value, "created": created.isoformat()}
            _write_private(chip_file, json.dumps(chip, indent=1).encode())
        chip = json.loads(chip_file.read_text())
        self.product = Product(chip["product"])
        if product is not None and product is not self.product:
            raise InvalidArgumentError(
                f"simulator state {self.directory} is a {self.product.title} chip, "
                f"not {product.title}"
            )
        self.created = datetime.fromisoformat(chip["created"])
        self.root_secret = (self.directory / "root_secret").read_bytes()
        self.chip_id = self.derive(b"chip-id", 64)

    def derive(self, label: bytes, length: int) -> bytes:
        """Deterministic bytes from the root secret (HKDF-SHA-384), separated by label."""
        return hkdf_sha384(self.root_secret, salt=b"guestagent-snp-sim", info=label, length=length)

    def authority(self, name: str) -> x509.Certificate:
        """The ARK, ASK or ASVK certificate, created (with its key) on first use."""
        if name not in self._certs:
            try:
                with self._locked():
                    self._certs[name] = self._load_or_issue(name)
            except (OSError, ValueError, TypeError) as exc:
                raise self._unusable(exc) from None
        return self._certs[name]

    def authority_key(self, name: str) -> rsa.RSAPrivateKey:
        """Its private key, loaded only when a certificate must be issued (loading is slow)."""
        if name not in self._keys:
            self.authority(name)
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            key_file = self.directory / f"{name}.key"
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise SnpUnavailableError(f"{key_file} is not an RSA private key")
            self._keys[name] = key
        return self._keys[name]

    def _load_or_issue(self, name: str) -> x509.Certificate:
        from cryptography.hazmat.primitives.asymmetric import rsa

        from guestagent.snp.amdcerts import load_certificate
        from guestagent.snp.simca import issue_ca

        common_name, issuer, serial = _AUTHORITIES[name]
        cert_file = self.directory / f"{name}.pem"
        if cert_file.exists():
            return load_certificate(cert_file.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        cert = issue_ca(
            common_name=common_name.format(self.product.title),
            key=key,
            issuer=self.authority(issuer) if issuer else None,
            issuer_key=self.authority_key(issuer) if issuer else key,
            serial=serial,
            now=self.created,
        )
        _write_private(self.directory / f"{name}.key", _pem_key(key))
        _write_private(cert_file, _cert_pem(cert))
        self._keys[name] = key
        return cert

    def endorsement_scalar(self, kind: str, tcb: TcbVersion) -> int:
        """The VCEK/VLEK private scalar for one TCB (AMD derives a new key for each TCB too)."""
        if kind not in ("vcek", "vlek"):
            raise InvalidArgumentError(f"signing key must be vcek or vlek, not {kind!r}")
        label = f"{kind}:{self.product.value}:{tcb.raw:016x}".encode()
        return int.from_bytes(self.derive(label, 64), "big") % (_P384_ORDER - 1) + 1

    def endorsement_key(self, kind: str, tcb: TcbVersion) -> ec.EllipticCurvePrivateKey:
        """The same key as a cryptography object (to issue its certificate)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.derive_private_key(self.endorsement_scalar(kind, tcb), ec.SECP384R1())

    def endorsement_cert(self, kind: str, tcb: TcbVersion) -> x509.Certificate:
        """The VCEK/VLEK certificate for one TCB, issued once and kept in the state directory."""
        from guestagent.snp.amdcerts import load_certificate
        from guestagent.snp.simca import issue_endorsement_key

        cert_file = self.directory / f"{kind}-{tcb.raw:016x}.pem"
        if cert_file.exists():
            return load_certificate(cert_file.read_bytes())
        vcek = kind == "vcek"
        hwid_size = 8 if self.product is Product.TURIN else 64  # Turin's KDS uses 8 bytes
        issuer = "ask" if vcek else "asvk"
        cert = issue_endorsement_key(
            kind=kind,
            key=self.endorsement_key(kind, tcb),
            product=self.product,
            tcb=tcb,
            hwid=self.chip_id[:hwid_size] if vcek else None,
            issuer=self.authority(issuer),
            issuer_key=self.authority_key(issuer),
            now=self.created,
            csp_id=None if vcek else _CSP_ID,
        )
        _write_private(cert_file, _cert_pem(cert))
        return cert

    def chain(self, kind: str) -> list[x509.Certificate]:
        """[ASK, ARK] for a VCEK, [ASVK, ARK] for a VLEK (AMD's cert_chain order)."""
        return [self.authority("ask" if kind == "vcek" else "asvk"), self.ark]

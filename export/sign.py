"""Bundle signing (BUNDLE.md "Security"): an ed25519 key pair, and manifest.json.sig, the raw 64-byte
signature of manifest.json's exact bytes. The manifest lists every artifact's sha256, so the
signature covers the whole bundle. Uses the `cryptography` package; the core verifies with OpenSSL.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["SIGNATURE_FILE", "generate_keypair", "sign_bundle", "sign_manifest_bytes", "write_signature"]

SIGNATURE_FILE = "manifest.json.sig"  # kManifestSignatureFile in cpp/src/engine/signature.h


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with mode (never overwriting: a key silently replaced is a key lost)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def generate_keypair(private_path: str | os.PathLike, public_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write a new ed25519 private key (PEM PKCS#8, unencrypted, mode 0600) and its public key
    (PEM SubjectPublicKeyInfo, 0644: what a switch's trusted_public_key_path names).

    Refuses (FileExistsError) to overwrite either file. Keep the private key on the machine that
    builds bundles; only the public key goes to the switches.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = Path(private_path), Path(public_path)
    if private.resolve() == public.resolve():
        raise ValueError("the private and the public key need two different files")
    for p in (private, public):
        if p.exists() or p.is_symlink():
            raise FileExistsError(f"{p} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    _write_new(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)
    _write_new(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return private, public


def _load_private_key(private_key_path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(private_key_path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:  # encrypted, malformed, not PEM
        raise ValueError(f"{path}: not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an ed25519 private key ({type(key).__name__})")
    return key


def sign_manifest_bytes(manifest_bytes: bytes, private_key_path: str | os.PathLike) -> bytes:
    """The raw 64-byte ed25519 signature of manifest_bytes."""
    return _load_private_key(private_key_path).sign(manifest_bytes)


def write_signature(bundle_dir: Path, signature: bytes) -> Path:
    """Write bundle_dir/manifest.json.sig atomically (rename), mode 0644."""
    fd, tmp = tempfile.mkstemp(prefix=f".{SIGNATURE_FILE}.", dir=bundle_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(signature)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, bundle_dir / SIGNATURE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return bundle_dir / SIGNATURE_FILE


def sign_bundle(bundle_dir: str | os.PathLike, private_key_path: str | os.PathLike) -> Path:
    """Sign the bundle at bundle_dir: write its manifest.json.sig; return that path.

    The bundle is verified first (every artifact's size and sha256, the manifest's consistency):
    a signature vouches for bytes, so a bundle that does not verify is never signed (BundleError).
    """
    from .bundle import MANIFEST, BundleError, verify_bundle

    root = Path(bundle_dir)
    problems = verify_bundle(root)
    if problems:
        raise BundleError(f"{root}: refusing to sign a bundle that does not verify: " + "; ".join(problems))
    manifest_bytes = (root / MANIFEST).read_bytes()
    signature = sign_manifest_bytes(manifest_bytes, private_key_path)
    if (root / MANIFEST).read_bytes() != manifest_bytes:  # replaced while signing
        raise BundleError(f"{root / MANIFEST}: changed while it was being signed; sign again")
    return write_signature(root, signature)

"""Manifest signatures: Ed25519, so the server holds only a public key that cannot sign.

Why Ed25519 over HMAC-SHA256: with HMAC the serving machine would hold the same secret that
signs, so anyone who can read the server's configuration could sign a model. With Ed25519,
``modelserve train`` signs with a private key kept where training runs; servers verify with the
public key. The signature covers the exact bytes of ``manifest.json``, and the manifest carries
the model file's sha256, so one signature vouches for both.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

from modelserve.core.errors import SigningKeyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# cryptography (~15 ms to import) is imported by the functions that use a key, so a server
# without a verify key, and every command without a signing key, starts without it.

SIGNATURE_FILE = "manifest.sig"


def generate_keys(directory: Path) -> tuple[Path, Path]:
    """Write a new key pair: ``signing-key.pem`` (private, mode 0600) and ``verify-key.pem``."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    key = Ed25519PrivateKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / "signing-key.pem"
    public = directory / "verify-key.pem"
    for path in (private, public):
        if path.exists():
            raise SigningKeyError(f"{path} exists already; refusing to overwrite a key")
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    try:
        key = serialization.load_pem_private_key(_read(path, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )

    try:
        key = serialization.load_pem_public_key(_read(path, "verify key"))
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The signature file's content: base64 of the Ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(key: Ed25519PublicKey, data: bytes, signature_file: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        key.verify(base64.b64decode(signature_file.strip(), validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True

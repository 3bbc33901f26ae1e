"""Optional authenticity of a bundle: an ed25519 signature of manifest.json (issue 21).

The manifest holds the sha256 of every artifact, so signing its exact bytes signs the bundle.
`export --sign KEY` writes manifest.json.sig (the 64-byte signature, hex); `run --trust KEY`
refuses a bundle whose signature is missing or does not verify with the public key. Keys are
PEM files (PKCS#8 private, SubjectPublicKeyInfo public) as `cryptography` and `openssl genpkey
-algorithm ed25519` write them; `generate_keypair` makes a pair. The `cryptography` library does
the signing: no hand-written cryptography.
"""
from __future__ import annotations

from pathlib import Path

from neurodeploy.errors import NeurodeployError

SIGNATURE_SUFFIX = ".sig"


class SignatureError(NeurodeployError, ValueError):
    """A bundle that is not signed by the trusted key, or a key that cannot be used."""


def _load_private(key_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise SignatureError(f"{key_path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{key_path}: a {type(key).__name__}, expected an ed25519 private key "
                             "(openssl genpkey -algorithm ed25519)")
    return key


def _load_public(key_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = Path(key_path).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key also names its public half
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as err:
            raise SignatureError(f"{key_path}: not a PEM ed25519 public key ({err})") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{key_path}: a {type(key).__name__}, expected an ed25519 public key")
    return key


def generate_keypair(private_path: str | Path, public_path: str | Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    Path(private_path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    Path(public_path).write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                serialization.PublicFormat.SubjectPublicKeyInfo))


def sign_manifest(manifest_path: str | Path, private_key: str | Path) -> Path:
    manifest_path = Path(manifest_path)
    signature = _load_private(Path(private_key)).sign(manifest_path.read_bytes())
    out = manifest_path.with_name(manifest_path.name + SIGNATURE_SUFFIX)
    out.write_text(signature.hex() + "\n")
    return out


def verify_manifest(manifest_bytes: bytes, manifest_path: str | Path, public_key: str | Path) -> None:
    """Refuse unless manifest_path.sig is a valid signature of manifest_bytes by public_key."""
    from cryptography.exceptions import InvalidSignature

    key = _load_public(Path(public_key))
    sig_path = Path(manifest_path).with_name(Path(manifest_path).name + SIGNATURE_SUFFIX)
    if sig_path.is_symlink() or not sig_path.is_file():
        raise SignatureError(f"{sig_path}: missing; the bundle is not signed (export it with --sign KEY), "
                             "or run without --trust")
    try:
        signature = bytes.fromhex(sig_path.read_text(errors="replace").strip()[:200])
        key.verify(signature, manifest_bytes)
    except (ValueError, InvalidSignature):
        raise SignatureError(f"{sig_path}: the signature does not verify with {public_key}: the manifest was changed "
                             "or signed by another key; do not trust this bundle") from None

"""Ed25519 signing and verification on libsodium (PyNaCl), for every key the edge holds.

One implementation for codes, envelopes, key endorsements and device requests. libsodium
verifies in about half the time OpenSSL through `cryptography` takes (bench/hotpath.py prints
both), and a gate that loads it instead of `cryptography` is about 6 MB smaller: that package
ships its own OpenSSL, which the gate never needs for Ed25519 (TLS uses Python's `ssl`).

libsodium loads with the first key, not with the import of this module (`edge --version`
and configuration checks never sign). Signatures are the standard RFC 8032 ones: keys and
signatures made by any other Ed25519 implementation interoperate, as the tests check.
"""

from __future__ import annotations

from typing import Protocol

SEED_BYTES = 32  # a private key as files and databases hold it (RFC 8032's secret key)
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64


class PublicKeyHolder(Protocol):
    """A public key that gives its 32 raw bytes."""

    def public_bytes_raw(self) -> bytes:
        """The 32-byte public key."""
        ...


class Signer(Protocol):
    """A private Ed25519 key: this module's `PrivateKey`, or another library's of the same
    shape (tests sign with OpenSSL's too, to check both agree)."""

    def sign(self, data: bytes, /) -> bytes:
        """The 64-byte signature of `data`."""
        ...

    def public_key(self) -> PublicKeyHolder:
        """The matching public key."""
        ...


class PublicKey:
    """The public half of a `PrivateKey`."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def public_bytes_raw(self) -> bytes:
        """The 32-byte public key."""
        return self._raw


class PrivateKey:
    """An Ed25519 private key, held as libsodium's 64-byte secret (seed and public key)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key (libsodium's random source)."""
        from nacl.bindings import crypto_sign_keypair  # noqa: PLC0415

        _, secret = crypto_sign_keypair()
        return cls(secret)

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> PrivateKey:
        """The key of a 32-byte seed; ValueError for any other length."""
        from nacl.bindings import crypto_sign_seed_keypair  # noqa: PLC0415

        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 private key has {SEED_BYTES} bytes, not {len(seed)}")
        _, secret = crypto_sign_seed_keypair(bytes(seed))
        return cls(secret)

    def private_bytes_raw(self) -> bytes:
        """The 32-byte seed, as `from_private_bytes` takes it."""
        return self._secret[:SEED_BYTES]

    def public_key(self) -> PublicKey:
        """The matching public key."""
        return PublicKey(self._secret[SEED_BYTES:])

    def sign(self, data: bytes, /) -> bytes:
        """The 64-byte signature of `data`."""
        from nacl.bindings import crypto_sign  # noqa: PLC0415

        return crypto_sign(data, self._secret)[:SIGNATURE_BYTES]

    def __repr__(self) -> str:
        return f"PrivateKey(public={self._secret[SEED_BYTES:].hex()})"


def public_bytes(key: Signer) -> bytes:
    """The raw 32-byte public key of a private key."""
    return key.public_key().public_bytes_raw()


def verify(public: bytes, signature: bytes, signed: bytes) -> bool:
    """True if `signature` is the signature of `signed` by the key `public`.

    False for a signature or key of the wrong length, a small-order key or a non-canonical
    signature (libsodium refuses those; the central system never produces them).
    """
    from nacl.bindings import crypto_sign_open  # noqa: PLC0415
    from nacl.exceptions import BadSignatureError  # noqa: PLC0415

    if len(signature) != SIGNATURE_BYTES or len(public) != PUBLIC_BYTES:
        return False
    try:
        crypto_sign_open(signature + signed, public)
    except BadSignatureError:
        return False
    return True

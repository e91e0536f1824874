"""Ed25519 on libsodium: RFC 8032's vectors, and agreement with OpenSSL's implementation."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.core import ed25519
from edge.core.ed25519 import PrivateKey

# RFC 8032, section 7.1, TEST 1 and TEST 3.
VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("seed", "public", "message", "signature"), VECTORS)
def test_rfc_8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    key = PrivateKey.from_private_bytes(bytes.fromhex(seed))
    assert key.private_bytes_raw().hex() == seed
    assert ed25519.public_bytes(key).hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), bytes.fromhex(signature), bytes.fromhex(message))


def test_signatures_agree_with_openssl_both_ways() -> None:
    for _ in range(20):
        ours = PrivateKey.generate()
        theirs = Ed25519PrivateKey.from_private_bytes(ours.private_bytes_raw())
        public = ed25519.public_bytes(ours)
        assert theirs.public_key().public_bytes_raw() == public
        message = ours.private_bytes_raw() * 3
        assert ours.sign(message) == theirs.sign(message)  # deterministic: the same bytes
        Ed25519PublicKey.from_public_bytes(public).verify(ours.sign(message), message)
        assert ed25519.verify(public, theirs.sign(message), message)
        assert ed25519.public_bytes(theirs) == public  # either library's key is a Signer


def test_what_does_not_verify() -> None:
    key = PrivateKey.generate()
    public = ed25519.public_bytes(key)
    signature = key.sign(b"admit one")
    assert ed25519.verify(public, signature, b"admit one")
    assert not ed25519.verify(public, signature, b"admit two")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not ed25519.verify(public, tampered, b"admit one")
    assert not ed25519.verify(public, signature[:63], b"admit one")
    assert not ed25519.verify(public[:31], signature, b"admit one")
    other = ed25519.public_bytes(PrivateKey.generate())
    assert not ed25519.verify(other, signature, b"admit one")
    with pytest.raises(InvalidSignature):  # OpenSSL agrees the tampered one is bad
        Ed25519PublicKey.from_public_bytes(public).verify(tampered, b"admit one")


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_seed_of_the_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PrivateKey.from_private_bytes(bytes(length))


def test_the_private_key_stays_out_of_logs() -> None:
    key = PrivateKey.from_private_bytes(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key)
    assert ed25519.public_bytes(key).hex() in repr(key)

"""The worked examples in docs/codes.md are what the code produces."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.core.codes import (
    Claims,
    EntryPolicy,
    Kind,
    SignedCode,
    Validity,
    encode_payload,
    mint,
    parse,
    plain_hash,
)

DOC = (Path(__file__).parents[2] / "docs" / "codes.md").read_text("utf-8")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))

PASS = Claims(
    key_id=7,
    credential_id=300,
    kind=Kind.PASS,
    product_id=20,
    policy=EntryPolicy.unlimited(5),
    validity=Validity(
        datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)
    ),
    zones=0b110,
    reissue=1,
)
TICKET = Claims(key_id=7, credential_id=1001, kind=Kind.TICKET, event_id=42, product_id=10)


def _documented(pattern: str) -> list[str]:
    return re.findall(pattern, DOC, flags=re.MULTILINE)


def test_public_key_of_the_example_seed() -> None:
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64encode(public).decode() in DOC


@pytest.mark.parametrize(("index", "claims"), [(0, PASS), (1, TICKET)])
def test_documented_payload_and_text(index: int, claims: Claims) -> None:
    payloads = _documented(r"^payload: ([0-9a-f ]+)$")
    texts = _documented(r"^(EDGE:[A-Z2-7]+)$")
    assert bytes.fromhex(payloads[index]) == encode_payload(claims)
    assert texts[index] == mint(claims, KEY)
    parsed = parse(texts[index].encode())
    assert isinstance(parsed, SignedCode)
    assert parsed.claims == claims


def test_annotated_bytes_add_up_to_the_payload() -> None:
    block = DOC.split("```\n1d           header")[1].split("```")[0]
    annotated = (
        "1d "
        + " ".join(
            re.match(r"^([0-9a-f]{2}(?: [0-9a-f]{2})*)", line).group(1)  # type: ignore[union-attr]
            for line in block.strip().splitlines()[1:]
        )
    )
    assert bytes.fromhex(annotated) == encode_payload(PASS)


def test_documented_hashes() -> None:
    assert f"`4006381333931` hashes to `{plain_hash('4006381333931').hex()}`" in DOC
    text = _documented(r"^(EDGE:[A-Z2-7]+)$")[0]
    assert f"the pass\nabove to `{parse(text.encode()).hash.hex()}`" in DOC

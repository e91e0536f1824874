"""Envelopes, changes, device requests and journal bodies: round trips and hostile input."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import protocol
from sync.protocol import (
    CancelEvent,
    Change,
    CredentialChange,
    EnvelopeKind,
    ErrorCode,
    JournalRecord,
    KeyChange,
    Passage,
    PlainCodeChange,
    ProtocolError,
    RequestRejectedError,
    Revocation,
    RevokeCode,
    RevokeCredential,
    RevokeProduct,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = protocol.public_bytes(KEY)
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
DOC = Path(__file__).parent.parent.parent / "docs" / "protocol.md"

CHANGES = (
    KeyChange(2, protocol.public_bytes(OTHER), retired=False),
    CredentialChange(5, 1, 0, 3, 2, 0, 30, 1_700_000_000, 1_731_535_999, 6, paid=False),
    CredentialChange(6, 0, 42, 10, 0, 1, 0, None, None, 0, paid=True),
    PlainCodeChange(b"\x01" * 16, 6),
    RevokeCode(b"\x02" * 16, Revocation.REPLACED),
    RevokeCredential(7, Revocation.CANCELLED),
    RevokeProduct(8, Revocation.REVOKED),
    CancelEvent(42),
    Passage("gate-1", 17, 6, 1_700_000_000_123, "North 1", entry=True),
)


def trusted(key_id: int) -> tuple[bytes, bool] | None:
    return (PUBLIC, False) if key_id == 1 else None


def seal(
    changes: Sequence[Change] | protocol.PackedChanges = CHANGES,
    first: int = 10,
    last: int | None = None,
    **kw: object,
) -> bytes:
    count = changes.count if isinstance(changes, protocol.PackedChanges) else len(changes)
    last = first + count if last is None else last
    return protocol.seal(
        kw.pop("kind", EnvelopeKind.CHANGES),  # type: ignore[arg-type]
        kw.pop("key_id", 1),  # type: ignore[arg-type]
        kw.pop("key", KEY),  # type: ignore[arg-type]
        first=first,
        last=last,
        at_ms=1,
        changes=changes,
        **kw,  # type: ignore[arg-type]
    )


def test_every_change_survives_a_round_trip() -> None:
    envelope = protocol.open_envelope(seal(), trusted)
    assert envelope.changes == CHANGES
    assert (envelope.first, envelope.last, envelope.head) == (10, 19, 19)
    assert envelope.since(15) == CHANGES[5:]


def test_a_changed_byte_anywhere_is_rejected() -> None:
    data = seal()
    for offset in range(0, len(data), 7):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        with pytest.raises(ProtocolError):
            protocol.open_envelope(bytes(damaged), trusted)


def test_every_truncation_is_rejected_with_a_protocol_error() -> None:
    data = seal()
    for size in range(len(data)):
        with pytest.raises(ProtocolError):
            protocol.open_envelope(data[:size], trusted)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.open_envelope(data, trusted)


def test_unknown_key_and_wrong_signer_are_named() -> None:
    with pytest.raises(ProtocolError, match="key 9, which this edge does not trust"):
        protocol.open_envelope(seal(key_id=9), trusted)
    with pytest.raises(ProtocolError, match="does not verify with key 1"):
        protocol.open_envelope(seal(key=OTHER), trusted)


def test_oversized_envelopes_are_refused_before_parsing() -> None:
    data = seal()
    with pytest.raises(ProtocolError, match="larger than allowed"):
        protocol.open_envelope(data, trusted, limit=len(data) - 1)


def test_other_protocol_versions_are_named() -> None:
    outer = msgpack.unpackb(seal())
    outer["v"] = 2
    with pytest.raises(ProtocolError, match="protocol version 2; this edge speaks version 1"):
        protocol.open_envelope(msgpack.packb(outer), trusted)


def test_revision_range_must_match_the_changes() -> None:
    with pytest.raises(ProtocolError, match=r"revisions 11\.\.12 but 9 changes"):
        protocol.open_envelope(seal(last=12), trusted)


def test_an_envelope_kind_can_be_refused() -> None:
    with pytest.raises(ProtocolError, match="snapshot envelope is not accepted"):
        protocol.open_envelope(
            seal(kind=EnvelopeKind.SNAPSHOT, last=10), trusted, kinds=(EnvelopeKind.CHANGES,)
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["nope", 1], "unknown operation 'nope'"),
        (["cancel-event"], "has 1 items, expected 2"),
        (["cancel-event", -1], "event: must be an integer"),
        (["cancel-event", True], "event: must be an integer"),
        (["revoke-code", b"short", "revoked"], "hash: must be 16 bytes"),
        (["revoke-code", b"\0" * 16, "lost"], "reason must be one of"),
        (["credential", 1, 0, 0, 0, 1, 1, 0, None, None, 0, True], "policy 1 with 1 uses"),
        (["credential", 1, 0, 0, 0, 0, 1, 0, 5, None, 0, True], "valid_from and valid_until"),
        (["credential", 1, 0, 0, 0, 0, 1, 0, 9, 5, 0, True], "validity ends before it starts"),
        (["passage", "", 1, 1, 1, "g", True], "device: must be printable text"),
        (["passage", "d\n", 1, 1, 1, "g", True], "device: must be printable text"),
        ("key", "array starting with its operation"),
    ],
)
def test_malformed_changes_name_what_is_wrong(change: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        protocol.open_envelope(seal(changes=[change], first=0), trusted)  # type: ignore[list-item]


def test_a_rotated_key_is_followed_through_its_endorsement() -> None:
    link = protocol.endorse(KEY, 1, 2, protocol.public_bytes(OTHER))
    data = seal(key_id=2, key=OTHER, chain=[link])
    envelope = protocol.open_envelope(data, trusted)
    assert envelope.key_id == 2
    assert envelope.chain == (link,)


def test_an_endorsement_by_an_untrusted_key_is_refused() -> None:
    forged = protocol.endorse(OTHER, 1, 2, protocol.public_bytes(OTHER))  # claims key 1 vouched
    with pytest.raises(ProtocolError, match="endorsement of key 2 by key 1 does not verify"):
        protocol.open_envelope(seal(key_id=2, key=OTHER, chain=[forged]), trusted)
    genuine = protocol.endorse(KEY, 1, 2, protocol.public_bytes(OTHER))
    no_trust = protocol.open_envelope  # an edge that trusts no key (or only retired ones)
    with pytest.raises(ProtocolError, match="key 1 is neither trusted nor endorsed"):
        no_trust(seal(key_id=2, key=OTHER, chain=[genuine]), lambda _: None)


def _request(**overrides: object) -> dict[str, object]:
    body = b"\x80"
    headers = protocol.sign_request(KEY, "gate-1", method="POST", path="/v1/hello",
                                    time_ms=1_000_000, body=body)  # fmt: skip
    args: dict[str, object] = {
        "headers": headers,
        "method": "POST",
        "path": "/v1/hello",
        "body": body,
        "now_ms": 1_000_000,
        "public_key_of": {"gate-1": PUBLIC}.get,
    }
    args.update(overrides)
    return args


def test_signed_requests_verify_and_name_their_device() -> None:
    args = _request()
    assert protocol.verify_request(args.pop("headers"), **args) == "gate-1"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"body": b"\x81"}, ErrorCode.UNAUTHENTICATED),
        ({"path": "/v1/journal"}, ErrorCode.UNAUTHENTICATED),
        ({"now_ms": 1_000_000 + 301_000}, ErrorCode.CLOCK_SKEW),
        ({"public_key_of": {}.get}, ErrorCode.UNKNOWN_DEVICE),
        (
            {"public_key_of": {"gate-1": protocol.public_bytes(OTHER)}.get},
            ErrorCode.UNAUTHENTICATED,
        ),
        ({"headers": {}}, ErrorCode.UNSUPPORTED_PROTOCOL),
        ({"headers": {"Edge-Protocol": "1"}}, ErrorCode.UNAUTHENTICATED),
    ],
)
def test_bad_requests_are_refused_with_their_error_code(
    overrides: dict[str, object], code: ErrorCode
) -> None:
    args = _request(**overrides)
    with pytest.raises(RequestRejectedError) as caught:
        protocol.verify_request(args.pop("headers"), **args)  # type: ignore[arg-type]
    assert caught.value.code is code


def test_journal_bodies_round_trip_and_reject_bad_rows() -> None:
    rows = [
        JournalRecord(1, 5, "North 1", "entry", "admitted", admitted=True, code_hash=b"\x03" * 16,
                      credential_id=9),
        JournalRecord(2, 6, "North 1", "exit", "malformed", admitted=False, code_hash=None,
                      credential_id=None),
    ]  # fmt: skip
    assert protocol.journal_from_wire(protocol.journal_to_wire(rows)) == rows
    bad = protocol.pack({"entries": [[1, 5, "L", "sideways", "x", True, None, None]]})
    with pytest.raises(ProtocolError, match=r"entries\[0\].direction"):
        protocol.journal_from_wire(bad)
    with pytest.raises(ProtocolError, match="field 'entries' is missing"):
        protocol.journal_from_wire(protocol.pack({}))


def test_error_bodies_round_trip_and_foreign_bodies_are_named() -> None:
    error = protocol.parse_error(409, protocol.error_body(ErrorCode.REVISION_AHEAD, "too new"))
    assert (error.status, error.code, error.message) == (409, "revision-ahead", "too new")
    assert "502" in str(protocol.parse_error(502, b"<html>bad gateway</html>"))


def test_the_protocol_document_lists_every_operation_and_error_code() -> None:
    text = DOC.read_text("utf-8")
    for change in CHANGES:
        assert f'`["{protocol.change_to_wire(change)[0]}"' in text
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text
    for section in protocol.SNAPSHOT_SECTIONS:
        assert f"`{section}`" in text


def test_the_annotated_example_in_the_protocol_document_is_exact() -> None:
    text = DOC.read_text("utf-8")
    block = text.split("### Example", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    documented = bytes.fromhex("".join(line.split("#")[0] for line in block.splitlines()))
    built = protocol.seal(
        EnvelopeKind.CHANGES, 1, KEY, first=41, last=42, at_ms=1_767_225_600_000,
        changes=[RevokeCode(bytes(range(16)), Revocation.REPLACED)],
    )  # fmt: skip
    assert documented == built
    envelope = protocol.open_envelope(documented, trusted)
    assert envelope.since(41) == (RevokeCode(bytes(range(16)), Revocation.REPLACED),)
    assert PUBLIC.hex() in text


_LEAVES = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=8)
_VALUES = st.recursive(
    _LEAVES | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


def _decoded(decode: Any, data: bytes) -> Any:
    try:
        return ("value", decode(data, "body", 1 << 16))
    except protocol.ProtocolError:
        return ("error", None)


@given(st.dictionaries(st.text(max_size=6), _VALUES, max_size=5) | _VALUES, st.binary(max_size=3))
@settings(max_examples=300)
def test_streaming_decode_matches_unpack(value: Any, tail: bytes) -> None:
    """The body decoder that lets the loop in gives unpack's answer, value or refusal."""
    packed = msgpack.packb(value, use_bin_type=True)
    for data in (packed, packed + tail, packed[: len(packed) // 2]):
        assert _decoded(protocol.unpack_streaming, data) == _decoded(protocol.unpack, data)


def test_streaming_decode_refuses_what_unpack_refuses() -> None:
    """Extension types, non-text keys and oversized bodies are refused the same way."""
    ext = msgpack.packb({"a": msgpack.ExtType(1, b"x")}, use_bin_type=True)
    int_key = bytes.fromhex("81 01 c0")  # {1: nil}
    for data in (ext, int_key, b"", bytes.fromhex("c1")):
        with pytest.raises(protocol.ProtocolError):
            protocol.unpack(data, "body", 1 << 16)
        with pytest.raises(protocol.ProtocolError):
            protocol.unpack_streaming(data, "body", 1 << 16)
    with pytest.raises(protocol.ProtocolError, match="larger than allowed"):
        protocol.unpack_streaming(b"\x90" * 20, "body", 10)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65_535, 65_536])
def test_packed_changes_seal_to_the_same_bytes_as_their_values(count: int) -> None:
    """The central stores changes packed and seals them as they are: the envelope is the one
    their values make (msgpack array headers change size at 16 and 65,536 items)."""
    changes = [CHANGES[i % len(CHANGES)] for i in range(count)]
    packed = protocol.PackedChanges(
        count, b"".join(protocol.pack(protocol.change_to_wire(c)) for c in changes)
    )
    cursor = ("credentials", 6)
    expected = seal(changes, kind=EnvelopeKind.SNAPSHOT, first=3, last=3, next_cursor=cursor)
    assert seal(packed, kind=EnvelopeKind.SNAPSHOT, first=3, last=3, next_cursor=cursor) == expected
    assert protocol.open_envelope(expected, trusted).changes == tuple(changes)


_BIG = [2**32 - 1, 2**32, 2**63 - 1, 2**63]
_ODD = [-1, True, False, None, "1", b"\x00"]
# Per position of a credential and of a code revocation: values each side of every limit.
_CANDIDATES: dict[str, list[list[Any]]] = {
    "credential": [
        [0, 1, *_BIG, *_ODD],  # credential_id
        [0, 1, 2, 3, *_ODD],  # kind
        [0, 7, *_BIG, *_ODD],  # event_id
        [0, 10, *_BIG, *_ODD],  # product_id
        [0, 1, 2, 3, *_ODD],  # policy
        [0, 1, 2, 5, 0xFFFF, 0x10000, *_ODD],  # uses
        [0, 1, 30, 0xFFFF, 0x10000, *_ODD],  # passback_minutes
        [None, 0, 100, 200, *_BIG, -1, True],  # valid_from
        [None, 0, 100, 200, *_BIG, -1, True],  # valid_until
        [0, 3, *_BIG, *_ODD],  # zones
        [True, False, 0, 1, None],  # paid
    ],
    "revoke-code": [
        [b"\x02" * 16, b"\x02" * 15, b"\x02" * 17, "x" * 16, None],  # hash
        ["revoked", "replaced", "cancelled", "other", "", 1, None],  # reason
    ],
}


@settings(max_examples=3000)
@given(st.data())
def test_the_fast_parse_of_bulk_changes_answers_as_the_checking_one(data: st.DataObject) -> None:
    """Credentials and code revocations, a bootstrap's bulk, take a path that builds no error
    text; it must accept exactly what the checking path accepts, as the same change."""
    op = data.draw(st.sampled_from(sorted(_CANDIDATES)))
    candidates = _CANDIDATES[op]
    value: list[Any] = [op] + [
        data.draw(st.sampled_from(c[:4])) for c in candidates
    ]  # mostly valid values ...
    for position in data.draw(st.sets(st.integers(1, len(candidates)), max_size=3)):
        value[position] = data.draw(st.sampled_from(candidates[position - 1]))  # ... some not
    value = value[: data.draw(st.sampled_from([len(value), len(value), len(value) - 1]))]

    def answer(parse: Any) -> object:
        try:
            return parse(value, "change")
        except ProtocolError as err:
            return str(err)

    assert answer(protocol.change_from_wire) == answer(protocol._change_checked)

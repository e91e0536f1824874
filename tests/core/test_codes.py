"""edge.core.codes: the signed-code format, its text, parsing limits, plain codes and masking."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import segno
from conftest import KEY_ID, OTHER_PRIVATE, PRIVATE, mint_code, ticket, trusted
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.codes import (
    MAX_CREDENTIAL_ID,
    MAX_ID,
    MAX_PASSBACK_MINUTES,
    MAX_PLAIN_LENGTH,
    MAX_REISSUE,
    MAX_SCAN_TEXT,
    MAX_USES,
    MAX_ZONES,
    PREFIX,
    SIGNATURE_SIZE,
    Claims,
    EntryPolicy,
    Kind,
    PlainCode,
    SignedCode,
    Validity,
    decode_payload,
    encode_payload,
    mask,
    mint,
    parse,
    plain_hash,
)
from edge.core.decide import GateRules, Reason, decide
from edge.core.errors import CodeError
from edge.core.facts import Direction, Facts

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = GateRules("North 1")
# A typical pass: unlimited re-entry with passback, a year's validity and two zones.
PASS = Claims(
    key_id=KEY_ID,
    credential_id=123_456_789,
    kind=Kind.PASS,
    product_id=20,
    policy=EntryPolicy.unlimited(5),
    validity=Validity(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC)),
    zones=0b110,
    reissue=1,
)
# Every field at its maximum: the longest code the format can carry.
MAXIMAL = Claims(
    key_id=0xFFFF,
    credential_id=MAX_CREDENTIAL_ID,
    kind=Kind.VOUCHER,
    event_id=MAX_ID,
    product_id=MAX_ID,
    policy=EntryPolicy.unlimited(MAX_PASSBACK_MINUTES),
    validity=Validity(
        datetime.fromtimestamp(2**32 - 2, UTC), datetime.fromtimestamp(2**32 - 1, UTC)
    ),
    zones=MAX_ZONES,
    reissue=MAX_REISSUE,
)
MAXIMAL_MULTI = Claims(
    key_id=0xFFFF,
    credential_id=MAX_CREDENTIAL_ID,
    kind=Kind.TICKET,
    event_id=MAX_ID,
    product_id=MAX_ID,
    policy=EntryPolicy.multi(MAX_USES),
    validity=MAXIMAL.validity,
    zones=MAX_ZONES,
    reissue=MAX_REISSUE,
)
TICKET_TEXT = mint_code(ticket())
PASS_TEXT = mint_code(PASS)

# -- strategies ------------------------------------------------------------------------------

_epochs = st.integers(0, 2**32 - 1)


@st.composite
def validities(draw: st.DrawFn) -> Validity:
    start = draw(_epochs)
    end = draw(st.integers(start, 2**32 - 1))
    return Validity(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))


policies = st.one_of(
    st.just(EntryPolicy.single()),
    st.integers(2, MAX_USES).map(EntryPolicy.multi),
    st.integers(0, MAX_PASSBACK_MINUTES).map(EntryPolicy.unlimited),
)
claims_strategy = st.builds(
    Claims,
    key_id=st.integers(0, 0xFFFF),
    credential_id=st.integers(0, MAX_CREDENTIAL_ID),
    kind=st.sampled_from(Kind),
    event_id=st.integers(0, MAX_ID),
    product_id=st.integers(0, MAX_ID),
    policy=policies,
    validity=st.none() | validities(),
    zones=st.integers(0, MAX_ZONES),
    reissue=st.integers(0, MAX_REISSUE),
)


def _body_bits(text: str) -> tuple[bytes, int]:
    """The binary a code's text carries, and how many base32 characters it had."""
    body = text[len(PREFIX) :]
    padded = body + "=" * (-len(body) % 8)
    return base64.b32decode(padded), len(body)


def _text_of(raw: bytes) -> str:
    return PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=")


def _outcome(data: bytes) -> Reason | None:
    """The reason a gate that trusts KEY_ID gives for `data`; None if parse rejects it."""
    try:
        code = parse(data)
    except CodeError:
        return None
    key = trusted() if isinstance(code, SignedCode) and code.claims.key_id == KEY_ID else None
    return decide(code, Facts(key=key), RULES, Direction.ENTRY, NOW).reason


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(claims_strategy)
def test_mint_parse_round_trip(claims: Claims) -> None:
    text = mint(claims, PRIVATE)
    code = parse(text.encode("ascii"))
    assert isinstance(code, SignedCode)
    assert code.claims == claims
    assert trusted().verify(code.signed, code.signature)
    assert len(text) <= MAX_SCAN_TEXT


@settings(max_examples=100, deadline=None)
@given(claims_strategy)
def test_lower_case_text_is_the_same_code(claims: Claims) -> None:
    text = mint(claims, PRIVATE)
    upper = parse(text.encode())
    lower = parse(text.lower().encode())
    assert isinstance(lower, SignedCode)
    assert lower == upper


def test_surrounding_whitespace_is_trimmed() -> None:
    assert parse(f" \t{TICKET_TEXT}\r\n".encode()) == parse(TICKET_TEXT.encode())


def test_valid_codes_admit_with_the_real_key() -> None:
    # The baseline the flip and truncation tests depend on: untouched codes do admit.
    assert _outcome(TICKET_TEXT.encode()) is Reason.ADMITTED
    assert _outcome(PASS_TEXT.encode()) is Reason.ADMITTED


def test_code_signed_by_another_key_is_a_bad_signature() -> None:
    forged = mint(ticket(), OTHER_PRIVATE)  # claims KEY_ID, signed by someone else
    assert _outcome(forged.encode()) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (ticket(key_id=0x10000), "key id"),
        (ticket(credential_id=MAX_CREDENTIAL_ID + 1), "credential id"),
        (ticket(credential_id=-1), "credential id"),
        (ticket(event_id=MAX_ID + 1), "event id"),
        (ticket(product_id=MAX_ID + 1), "product id"),
        (ticket(reissue=MAX_REISSUE + 1), "reissue"),
        (ticket(zones=MAX_ZONES + 1), "zones"),
        (
            ticket(validity=Validity(datetime(1969, 1, 1, tzinfo=UTC), NOW)),
            "between 1970 and 2106",
        ),
    ],
)
def test_mint_refuses_values_the_format_cannot_carry(claims: Claims, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        mint(claims, PRIVATE)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EntryPolicy.multi(1), "multi-use"),
        (lambda: EntryPolicy.multi(MAX_USES + 1), "multi-use"),
        (lambda: EntryPolicy.unlimited(MAX_PASSBACK_MINUTES + 1), "unlimited"),
        (lambda: Validity(NOW, datetime(2026, 1, 1, tzinfo=UTC)), "ends before"),
        (lambda: Validity(datetime(2026, 1, 1), NOW), "timezone-aware"),  # noqa: DTZ001
    ],
)
def test_invalid_policies_and_windows_are_code_errors(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(CodeError, match=message):
        build()


# Annotated payloads (docs/codes.md, 'Payload'): what the encoder writes, byte for byte.
TICKET_PAYLOAD = bytes.fromhex(
    "10"  # header: format 1, kind ticket, no validity, no zones
    "0007"  # key id 7
    "e907"  # credential id 1001 (varint: 0x69 | 0x80, 0x07)
    "00"  # reissue 0
    "2a"  # event 42
    "0a"  # product 10
    "00"  # policy: single entry
)
PASS_PAYLOAD = bytes.fromhex(
    "1d"  # header: format 1, kind pass, validity and zones present
    "0007"  # key id 7
    "959aef3a"  # credential id 123456789
    "01"  # reissue 1
    "00"  # event 0: not bound to an event
    "14"  # product 20
    "02"  # policy: unlimited re-entry
    "05"  # passback window: 5 minutes
    "69 55 b9 00"  # valid from 2026-01-01 00:00:00 UTC (unix seconds, big-endian)
    "6b 36 de 70"  # valid until 2026-12-31 23:00:00 UTC
    "06"  # zones 1 and 2
)


@pytest.mark.parametrize(
    ("claims", "payload"),
    [(ticket(), TICKET_PAYLOAD), (PASS, PASS_PAYLOAD)],
    ids=["ticket", "pass"],
)
def test_annotated_payloads(claims: Claims, payload: bytes) -> None:
    assert encode_payload(claims) == payload
    assert decode_payload(payload) == claims
    raw, _ = _body_bits(mint(claims, PRIVATE))
    assert raw[: len(payload)] == payload
    assert len(raw) == len(payload) + SIGNATURE_SIZE


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (TICKET_PAYLOAD[:-1], "ends inside the entry policy"),
        (TICKET_PAYLOAD + b"\x00", "trailing bytes"),
        (b"\x13" + TICKET_PAYLOAD[1:], "unknown credential kind"),
        (TICKET_PAYLOAD[:-1] + b"\x03", "unknown entry policy"),
        (TICKET_PAYLOAD[:-1] + b"\x01\x01", "multi-use"),  # N uses with N = 1
        (TICKET_PAYLOAD[:3] + b"\xe9\x87\x00" + TICKET_PAYLOAD[5:], "not minimally encoded"),
        (
            TICKET_PAYLOAD[:5] + b"\x80\x80\x04" + TICKET_PAYLOAD[6:],
            "reissue count is out of range",
        ),
        (b"\x18" + TICKET_PAYLOAD[1:] + b"\x00", "empty zone set"),
        (
            b"\x14" + TICKET_PAYLOAD[1:] + bytes.fromhex("6b36de70 6955b900"),
            "ends before it starts",
        ),
    ],
)
def test_damaged_payloads_name_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        decode_payload(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.binary(min_size=64, max_size=64))
def test_any_payload_parses_or_is_a_code_error(payload: bytes, signature: bytes) -> None:
    text = _text_of(payload + signature)
    try:
        code = parse(text.encode())
    except CodeError:
        return
    assert isinstance(code, SignedCode)
    assert encode_payload(code.claims) == payload  # only canonical payloads parse
    assert _outcome(text.encode()) in (Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE)


# -- damaged codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [TICKET_TEXT, PASS_TEXT], ids=["ticket", "pass"])
def test_every_single_bit_flip_is_rejected(text: str) -> None:
    raw, _ = _body_bits(text)
    outcomes = set()
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        reason = _outcome(_text_of(bytes(flipped)).encode())
        assert reason is None or not reason.admits, f"bit {bit} flipped: {reason}"
        outcomes.add(reason)
    # Both layers do work: some flips break parsing, the rest fail the signature or key.
    assert None in outcomes
    assert Reason.BAD_SIGNATURE in outcomes


@pytest.mark.parametrize("text", [TICKET_TEXT, PASS_TEXT], ids=["ticket", "pass"])
def test_every_single_bit_flip_of_the_text_bits_is_rejected(text: str) -> None:
    # Flips in the base32 characters themselves, including the unused padding bits.
    body = text[len(PREFIX) :]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for i, char in enumerate(body):
        for bit in range(5):
            changed = alphabet[alphabet.index(char) ^ (1 << bit)]
            damaged = PREFIX + body[:i] + changed + body[i + 1 :]
            reason = _outcome(damaged.encode())
            assert reason is None or not reason.admits, (i, bit, reason)


@pytest.mark.parametrize("text", [TICKET_TEXT, PASS_TEXT], ids=["ticket", "pass"])
def test_every_truncation_is_rejected(text: str) -> None:
    for length in range(len(text)):
        reason = _outcome(text[:length].encode())
        assert reason is None or not reason.admits, f"truncated to {length}: {reason}"


@pytest.mark.parametrize("text", [TICKET_TEXT, PASS_TEXT], ids=["ticket", "pass"])
def test_every_truncation_of_the_binary_is_rejected(text: str) -> None:
    raw, _ = _body_bits(text)
    for size in range(len(raw)):
        reason = _outcome(_text_of(raw[:size]).encode())
        assert reason is None or not reason.admits, f"{size} bytes: {reason}"


def test_appended_bytes_are_rejected() -> None:
    raw, _ = _body_bits(TICKET_TEXT)
    reason = _outcome(_text_of(raw + b"\x00").encode())
    assert reason is None or not reason.admits


def test_nonzero_padding_bits_are_rejected() -> None:
    _raw, length = _body_bits(TICKET_TEXT)
    spare = (length * 5) % 8
    assert spare, "the fixture needs a text with unused trailing bits"
    last = TICKET_TEXT[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for bit in range(spare):
        damaged = TICKET_TEXT[:-1] + alphabet[alphabet.index(last) ^ (1 << bit)]
        with pytest.raises(CodeError, match="padding"):
            parse(damaged.encode())


def test_impossible_base32_length_is_rejected() -> None:
    # One character more than any byte string encodes to.
    _raw, length = _body_bits(TICKET_TEXT)
    for extra in ("A", "AAA", "AAAAAA"):
        if ((length + len(extra)) * 5) % 8 >= 5:
            with pytest.raises(CodeError, match="impossible base32 length"):
                parse((TICKET_TEXT + extra).encode())
            return
    pytest.fail("no impossible length found")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b" \r\n\t", "only whitespace"),
        (b"A" * (MAX_SCAN_TEXT + 1), "longer than any code"),
        (b"A" * 100_000, "longer than any code"),
        (b"EDGE:\xc3\x84BC", "non-ASCII byte at offset 5"),
        (b"\xff\xfe", "non-ASCII"),
        (b"ABC\x00DEF", "control characters"),
        (b"ABC\x1bDEF", "control characters"),
        (b"AB\tCD", "control characters"),
        (b"A" * (MAX_PLAIN_LENGTH + 1), "plain code of"),
        (b"EDGE:", "outside base32"),
        (b"EDGE:ABC1", "outside base32"),
        (b"EDGE:ABC=", "outside base32"),
        (b"EDGE:AAAA", "too short"),
    ],
)
def test_bad_input_is_a_code_error(data: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        parse(data)


def test_unsupported_format_version_is_named() -> None:
    raw, _ = _body_bits(TICKET_TEXT)
    other = bytes([0x20 | raw[0] & 0x0F]) + raw[1:]
    with pytest.raises(CodeError, match="format 2 is not supported"):
        parse(_text_of(other).encode())


# -- plain codes -----------------------------------------------------------------------------


def test_plain_code_hash_is_the_documented_blake2b() -> None:
    import hashlib  # noqa: PLC0415 - only this test recomputes the hash independently

    expected = hashlib.blake2b(b"0123456789012", digest_size=16, person=b"edge-plain").digest()
    assert plain_hash("0123456789012") == expected
    assert parse(b"0123456789012\r\n") == PlainCode(expected)


def test_plain_codes_are_case_sensitive_and_distinct() -> None:
    assert plain_hash("abc") != plain_hash("ABC")
    assert parse(b"abc") != parse(b"ABC")


def test_plain_code_of_maximal_length_is_accepted() -> None:
    assert isinstance(parse(b"9" * MAX_PLAIN_LENGTH), PlainCode)


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_printable_ascii_without_prefix_is_a_plain_code(text: str) -> None:
    if text.upper().startswith(PREFIX) or len(text) > MAX_PLAIN_LENGTH:
        return
    assert parse(text.encode()) == PlainCode(plain_hash(text))


# -- sizes and masking -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected_max_version"),
    [(ticket(), 5), (PASS, 6), (MAXIMAL, 7), (MAXIMAL_MULTI, 7)],
    ids=["ticket", "pass", "maximal", "maximal-multi"],
)
def test_codes_fit_small_qr_codes(claims: Claims, expected_max_version: int) -> None:
    text = mint(claims, PRIVATE)
    qr = segno.make(text, error="m", boost_error=False)
    assert qr.mode == "alphanumeric"
    assert qr.error == "M"
    assert isinstance(qr.version, int)  # a QR code, not a Micro QR ("M4")
    assert qr.version <= expected_max_version <= 7


def test_maximal_code_is_the_documented_175_characters() -> None:
    assert len(mint(MAXIMAL, PRIVATE)) == 175
    assert isinstance(parse(mint(MAXIMAL, PRIVATE).encode()), SignedCode)


@pytest.mark.parametrize("text", [TICKET_TEXT, PASS_TEXT, "0123456789012", "AB12CD"])
def test_mask_hides_most_of_a_code(text: str) -> None:
    masked = mask(text)
    assert "…" in masked
    assert len(masked.replace("…", "")) <= 9
    assert text not in masked


@pytest.mark.parametrize("text", ["7", "42", "EDGE:ABCD"])
def test_mask_of_a_short_code_does_not_show_it_whole(text: str) -> None:
    # A one- or two-character plain code (or a short text with the prefix) is still a code.
    assert len(mask(text).replace("…", "")) < len(text), mask(text)


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_mask_never_returns_the_whole_code(text: str) -> None:
    shown = mask(text).replace("…", "")
    # The characters shown are fewer than the code has: a log line never holds a whole code.
    assert len(shown) < len(text), (text, mask(text))

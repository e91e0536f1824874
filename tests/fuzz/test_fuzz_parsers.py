"""Fuzzing every parser that takes outside bytes: codes, envelopes, bundles, protocol bodies,
scanner streams and printer status replies.

Each target counts the inputs it tried; the counts are printed at the end of the module
(`fuzz: ...` lines in the terminal summary). The properties: no exception but the parser's own
error, no state change on a reject, and no altered code admitted. EDGE_FUZZ_SCALE scales
every target (default: the whole suite within about a minute of CI).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import KEY_ID, PRIVATE, mint_code, public_bytes, ticket
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evdev import ecodes as e
from fuzzing import TRIED, fuzz, report
from hypothesis import given
from hypothesis import strategies as st

from drivers.printers import fgl
from drivers.printers.boca import BocaPrinter
from drivers.protocols import MAX_SCAN_BYTES, UNREADABLE, PrinterState
from drivers.scanners.framing import OVERFLOW, Framing, LineEnd, LineFramer
from drivers.scanners.keymap import LAYOUTS
from drivers.scanners.symbology import strip_aim
from drivers.scanners.uid import ByteOrder, UidFormat, UidInput
from drivers.scanners.wedge import Terminator, WedgeDecoder, WedgeSettings
from edge.core.codes import EntryPolicy, Kind, SignedCode, parse
from edge.core.decide import GateRules
from edge.core.errors import CodeError, PrinterError, SyncError
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.store.database import Store
from sync import protocol
from sync.client.bundle import import_bundle
from sync.client.state import REVISION_CURSOR
from sync.protocol import CancelEvent, EnvelopeKind, KeyChange, ProtocolError, RevokeCredential

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = GateRules(gate="lane-1")
TARGETS: list[str] = []


def target(name: str) -> str:
    TARGETS.append(name)
    return name


SCANNED = target("codes: scanned bytes")
ALTERED = target("codes: altered signed codes")
ENVELOPES = target("envelopes")
BUNDLES = target("bundles (edge import)")
BODIES = target("protocol bodies (changes, journal, requests)")
FRAMING = target("scanner streams: serial line framing")
WEDGE = target("scanner streams: keyboard wedge (evdev keys)")
UIDS = target("scanner streams: NFC UIDs, AIM prefixes")
STATUS = target("printer status replies (BOCA FGL)")


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> None:
    report(request.config)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[asyncio.AbstractEventLoop, Store]]:
    """A store that trusts KEY_ID, at revision 3, used from this thread's own loop."""
    loop = asyncio.new_event_loop()
    path: Path = tmp_path_factory.mktemp("fuzz") / "edge.db"
    store = loop.run_until_complete(Store.open(path))
    loop.run_until_complete(store.put_keys([(KEY_ID, public_bytes(PRIVATE), False)]))
    loop.run_until_complete(store.set_cursor(REVISION_CURSOR, "3"))
    try:
        yield loop, store
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def snapshot(store: Store) -> tuple[object, ...]:
    return store.stats(), store.known_keys(), store.cursor(REVISION_CURSOR), store.recent(3)


# -- codes -----------------------------------------------------------------------------------

CODES = [
    mint_code(ticket(1)),
    mint_code(ticket(2, kind=Kind.PASS, policy=EntryPolicy.unlimited(30))),
    mint_code(ticket(3, event_id=2**31, product_id=7, zones=5)),
]


@fuzz(1000)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")))
def test_any_scanned_bytes_parse_or_raise_a_code_error(
    world: tuple[object, Store], data: bytes
) -> None:
    TRIED[SCANNED] += 1
    with contextlib.suppress(CodeError):
        parse(data)
    gate = Gate(world[1], clock=lambda: NOW)
    assert not gate.check(data, RULES, Direction.ENTRY).decision.admitted


@st.composite
def altered(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid signed code with bytes flipped, replaced, inserted or deleted."""
    original = draw(st.sampled_from(CODES))
    data = bytearray(original.encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "replace", "insert", "delete", "swap"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "replace":
            data[at] = draw(st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
        elif how == "insert":
            data.insert(at, draw(st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")))
        elif how == "delete" and len(data) > 1:
            del data[at]
        elif at + 1 < len(data):
            data[at], data[at + 1] = data[at + 1], data[at]
    return original, bytes(data)


@fuzz(1000)
@given(altered())
def test_an_altered_signed_code_is_never_admitted(
    world: tuple[object, Store], case: tuple[str, bytes]
) -> None:
    TRIED[ALTERED] += 1
    original, data = case
    gate = Gate(world[1], clock=lambda: NOW)
    assert gate.check(original.encode(), RULES, Direction.ENTRY).decision.admitted
    try:
        code = parse(data)
    except CodeError:
        code = None
    first = parse(original.encode())
    assert isinstance(first, SignedCode)
    if isinstance(code, SignedCode) and (code.signed, code.signature) == (
        first.signed,
        first.signature,
    ):
        return  # the same code written differently (case, surrounding blanks): not altered
    assert not gate.check(data, RULES, Direction.ENTRY).decision.admitted


# -- envelopes and bundles -------------------------------------------------------------------

OTHER = Ed25519PrivateKey.from_private_bytes(bytes([5]) * 32)
CHANGES: list[protocol.Change] = [
    CancelEvent(42),
    RevokeCredential(7, protocol.Revocation.CANCELLED),
    KeyChange(9, public_bytes(OTHER), retired=False),
]


def _bundle(first: int = 3, key: Ed25519PrivateKey = PRIVATE, key_id: int = KEY_ID) -> bytes:
    return protocol.seal(
        EnvelopeKind.BUNDLE,
        key_id,
        key,
        first=first,
        last=first + len(CHANGES),
        at_ms=1,
        changes=CHANGES,
    )


BUNDLE = _bundle()
ROTATED = protocol.seal(
    EnvelopeKind.CHANGES,
    9,
    OTHER,
    first=3,
    last=4,
    at_ms=1,
    changes=[CancelEvent(1)],
    chain=[protocol.endorse(PRIVATE, KEY_ID, 9, public_bytes(OTHER))],
)


def _keys(key_id: int) -> tuple[bytes, bool] | None:
    return (public_bytes(PRIVATE), False) if key_id == KEY_ID else None


@st.composite
def mutated(draw: st.DrawFn, source: bytes) -> bytes:
    data = bytearray(source)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "byte", "cut", "grow"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "byte":
            data[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[at:]
            if not data:
                break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@fuzz(800)
@given(st.binary(max_size=400) | mutated(BUNDLE) | mutated(ROTATED))
def test_envelopes_open_or_raise_a_protocol_error(data: bytes) -> None:
    TRIED[ENVELOPES] += 1
    try:
        envelope = protocol.open_envelope(data, _keys)
    except ProtocolError:
        return
    # Whatever opened carries exactly what the central signed.
    original = protocol.open_envelope(BUNDLE if envelope.key_id == KEY_ID else ROTATED, _keys)
    assert (envelope.kind, envelope.first, envelope.last, envelope.changes, envelope.head) == (
        original.kind,
        original.first,
        original.last,
        original.changes,
        original.head,
    )


@fuzz(300)
@given(mutated(BUNDLE) | mutated(_bundle(key=OTHER)) | st.binary(max_size=200))
def test_bundles_change_nothing_unless_they_verify(
    world: tuple[asyncio.AbstractEventLoop, Store], data: bytes
) -> None:
    TRIED[BUNDLES] += 1
    loop, store = world
    before = snapshot(store)
    try:
        envelope = protocol.open_envelope(data, store.known_keys().get)
    except ProtocolError:
        envelope = None
    try:
        loop.run_until_complete(import_bundle(store, data, device="gate-1"))
    except (ProtocolError, SyncError):
        assert snapshot(store) == before
        return
    assert envelope is not None  # only a verified bundle applies, and then it is the original
    assert envelope.changes == tuple(CHANGES)


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
OPS = st.sampled_from(
    [
        "key",
        "credential",
        "plain",
        "revoke-code",
        "revoke-credential",
        "revoke-product",
        "cancel-event",
        "passage",
    ]
)


@fuzz(800)
@given(
    VALUES
    | st.fixed_dictionaries({"entries": st.lists(st.lists(LEAVES, max_size=9), max_size=3)})
    | st.tuples(OPS, st.lists(LEAVES, max_size=12)).map(lambda t: [t[0], *t[1]])
)
def test_protocol_bodies_parse_or_raise_a_protocol_error(value: object) -> None:
    TRIED[BODIES] += 1
    body = protocol.pack(value)
    for parse_body in (
        lambda: protocol.journal_from_wire(body),
        lambda: protocol.change_from_wire(value, "change"),
        lambda: protocol.fields(body, "hello").integer("revision"),
        lambda: protocol.snapshot_cursor(value, "cursor"),
        lambda: protocol.parse_error(400, body),
    ):
        with contextlib.suppress(ProtocolError):
            parse_body()


# -- scanner streams -------------------------------------------------------------------------


@fuzz(500)
@given(
    chunks=st.lists(
        st.binary(max_size=80) | st.sampled_from([b"\r", b"\n", b"\r\n", b"\x02", b"\x03"]),
        max_size=30,
    ),
    end=st.sampled_from(list(LineEnd)),
    framed=st.booleans(),
)
def test_line_framing_never_raises_and_ignores_chunking(
    chunks: list[bytes], end: LineEnd, framed: bool
) -> None:
    TRIED[FRAMING] += 1
    framing = Framing(
        end=end, prefix=b"\x02" if framed else b"", suffix=b"\x03" if framed else b"", max_length=64
    )
    pieces, whole = LineFramer(framing), LineFramer(framing)
    got = [line for chunk in chunks for line in pieces.feed(chunk)]
    assert got == whole.feed(b"".join(chunks)) or end is LineEnd.ANY  # CR|LF split may differ
    for line in got:
        assert line in (OVERFLOW, UNREADABLE) or (
            0 < len(line) <= 64 and all(0x20 <= b <= 0x7E for b in line)
        )


KEYS = [
    e.KEY_A,
    e.KEY_Z,
    e.KEY_1,
    e.KEY_MINUS,
    e.KEY_ENTER,
    e.KEY_TAB,
    e.KEY_LEFTSHIFT,
    e.KEY_RIGHTALT,
    e.KEY_LEFTALT,
    e.KEY_KP1,
    e.KEY_KP2,
    e.KEY_CAPSLOCK,
    e.KEY_LEFTCTRL,
    e.KEY_GRAVE,
    e.KEY_APOSTROPHE,
    e.KEY_SEMICOLON,
    e.KEY_LEFTBRACE,
    e.KEY_SPACE,
]


@fuzz(400)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from([e.EV_KEY, e.EV_KEY, e.EV_SYN, e.EV_MSC]),
            st.sampled_from(KEYS) | st.integers(0, 0x2FF),
            st.integers(0, 2),
            st.floats(0, 0.2),
        ),
        max_size=60,
    ),
    layout=st.sampled_from(sorted(LAYOUTS)),
    terminator=st.sampled_from(list(Terminator)),
)
def test_keyboard_wedge_streams_never_raise(
    events: list[tuple[int, int, int, float]], layout: str, terminator: Terminator
) -> None:
    TRIED[WEDGE] += 1
    decoder = WedgeDecoder(LAYOUTS[layout], WedgeSettings(terminator=terminator, max_length=40))
    at = 0.0
    for kind, code, value, gap in events:
        at += gap
        for scan in (decoder.feed(kind, code, value, at), decoder.expire(at)):
            if scan is not None:
                assert len(scan) <= 4 * MAX_SCAN_BYTES
                scan.decode("utf-8")


@fuzz(500)
@given(
    data=st.binary(max_size=40) | st.text("0123456789abcdefABCDEF: -", max_size=40).map(str.encode),
    kind=st.sampled_from(list(UidInput)),
    order=st.sampled_from(list(ByteOrder)),
)
def test_card_uids_convert_or_raise_value_error(
    data: bytes, kind: UidInput, order: ByteOrder
) -> None:
    TRIED[UIDS] += 1
    try:
        uid = UidFormat(kind, order).convert(data)
    except ValueError:
        pass
    else:
        assert uid
        assert set(uid) <= set(b"0123456789ABCDEF")
    assert len(strip_aim(data)) <= len(data)


# -- printer status replies ------------------------------------------------------------------


class ReplyTransport:
    """A two-way printer transport whose device answers with the given bytes."""

    name = "fuzz"
    two_way = True

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.written = bytearray()

    async def write(self, data: bytes) -> None:
        self.written += data

    async def read(self, within: float) -> bytes:
        del within
        if not self.replies:
            raise PrinterError("the printer went away", device=self.name)
        return self.replies.pop(0)

    async def close(self) -> None:
        return None


@fuzz(300)
@given(
    replies=st.lists(
        st.binary(max_size=12)
        | st.sampled_from(
            [bytes([fgl.READY]), bytes([fgl.ACK]), bytes([fgl.BUSY]), bytes([fgl.POWER_ON])]
        ),
        max_size=8,
    ),
    previous=st.sampled_from(list(PrinterState)),
)
def test_printer_status_replies_give_a_state(replies: list[bytes], previous: PrinterState) -> None:
    TRIED[STATUS] += 1
    data = b"".join(replies)
    status = fgl.parse_status(data, previous)
    assert status.printed == data.count(fgl.ACK)
    assert status.state in PrinterState
    printer = BocaPrinter("fuzz", ReplyTransport(list(replies)), status_timeout=0.001)
    state = asyncio.run(printer.status())
    assert state in PrinterState

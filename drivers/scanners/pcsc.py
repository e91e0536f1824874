"""PC/SC contactless readers (through pcscd): a card's chip UID, at a gate or at the pass desk.

Desk readers and the encoders inside card printers are PC/SC devices (CCID over USB); pcscd
owns them and pyscard talks to pcscd. A PC/SC contactless reader answers the pseudo-APDU
GET DATA (FF CA 00 00 00, PC/SC part 3, 3.2.2.1.3) with the UID of the card in its field,
whatever the card type (MIFARE Classic, Ultralight/NTAG, DESFire). The UID becomes the plain
code the central system knows: upper-case hex in reading order (drivers.scanners.uid).

A UID alone is not a secret: it is printed in the clear on the air and cloneable (docs/
security.md, "NFC cards"). pyscard's calls block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from drivers.protocols import DeviceState, ScanEvent
from edge.core.errors import ScannerError

_LOGGER = logging.getLogger(__name__)

GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]  # PC/SC part 3: GET DATA, the card's UID
SW_OK = (0x90, 0x00)
UID_SIZES = (4, 7, 10)  # ISO 14443-3 single, double and triple size UIDs
POLL_SECONDS = 0.5  # how long one wait for a card blocks its thread
ABSENT_RETRY = 2.0  # seconds between looks for a reader that is not there


@dataclass(frozen=True, slots=True)
class PcscSettings:
    """Configuration of a PC/SC contactless reader."""

    reader: str = ""  # part of the reader's PC/SC name; empty: the first reader
    timeout_seconds: float = 10.0  # the desk waits this long for a card on the reader

    def __post_init__(self) -> None:
        if not self.reader.isprintable():
            raise ValueError("reader must be printable text (part of the reader's name)")
        if not 0.5 <= self.timeout_seconds <= 120:
            raise ValueError("timeout_seconds must be 0.5..120")


def _pyscard() -> Any:
    try:
        import smartcard.Exceptions  # noqa: PLC0415 - optional: only PC/SC readers need it
        import smartcard.pcsc.PCSCExceptions  # noqa: PLC0415
        import smartcard.scard  # noqa: PLC0415
        import smartcard.System  # noqa: PLC0415
    except ImportError as err:
        raise ScannerError("PC/SC readers need pyscard (pip install pyscard) and pcscd") from err
    return smartcard


def canonical(uid: bytes) -> str:
    """The plain code of a chip: upper-case hex in reading order."""
    return uid.hex().upper()


class _PcscdError(Exception):
    """pcscd could not answer a wait (it restarted, the reader went away)."""


class _Field:
    """What pcscd knows of one reader's field, and a wait for it to change.

    One PC/SC context, kept across waits: SCardGetStatusChange returns when the reader's state
    differs from the one given, so a card that stays on the reader costs nothing. The state a
    card lying there reports changes too while someone talks to it (in use, powered); only
    a card coming or going, pcscd's event counter in the high word, counts as a change.
    """

    def __init__(self, scard: Any, name: str) -> None:
        self._scard = scard
        self.name = name
        self._context: Any = None
        self._state = scard.SCARD_STATE_UNAWARE
        self.present = False

    def _event(self, state: int) -> tuple[int, bool]:
        scard = self._scard
        present = bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_MUTE
        return state >> 16, present

    def wait(self, seconds: float) -> bool:
        """Block up to `seconds` for a card to come or go; True if one did."""
        scard = self._scard
        if self._context is None:
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                raise _PcscdError(f"pcscd: {scard.SCardGetErrorMessage(hresult)}")
            self._context = context
            self._state = scard.SCARD_STATE_UNAWARE
        deadline = time.monotonic() + seconds
        before = self._event(self._state) if self._state != scard.SCARD_STATE_UNAWARE else None
        while True:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            hresult, states = scard.SCardGetStatusChange(
                self._context, left_ms, [(self.name, self._state)]
            )
            if hresult == scard.SCARD_E_TIMEOUT:
                return False
            if hresult != scard.SCARD_S_SUCCESS:
                self.close()  # a new context next time: pcscd may have restarted
                raise _PcscdError(f"pcscd: {scard.SCardGetErrorMessage(hresult)}")
            self._state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            now = self._event(self._state)
            self.present = now[1]
            if now != before:
                return True
            if time.monotonic() >= deadline:
                return False

    @property
    def watching(self) -> bool:
        """Whether a previous wait knows the field's state (else the next one reports it)."""
        return self._context is not None and self._state != self._scard.SCARD_STATE_UNAWARE

    def close(self) -> None:
        if self._context is not None:
            self._scard.SCardReleaseContext(self._context)
            self._context = None


class PcscReader:
    """A PC/SC contactless reader: `scans()` yields each card put on it (a gate's reader),
    `read_uid()` reads the card lying on it now (the desk's)."""

    def __init__(self, name: str, settings: PcscSettings) -> None:
        self.name = name
        self._settings = settings
        self._closed = False
        self.state = DeviceState.ABSENT
        self.last_error = ""  # why the last card could not be read, for the timeout's message
        self._field: _Field | None = None  # the gate's watch on the reader, kept between waits
        self._unread = False  # a card came that could not be read yet
        self._last: bytes | None = None  # the UID of the card lying on the reader

    def _reader(self, smartcard: Any) -> Any:
        try:
            found = smartcard.System.readers()
        except (
            smartcard.Exceptions.SmartcardException,
            smartcard.pcsc.PCSCExceptions.BaseSCardException,
        ) as err:  # pcscd is not running, or not reachable
            raise ScannerError(f"pcscd does not answer: {err}", device=self.name) from err
        wanted = self._settings.reader
        for reader in found:
            if wanted in str(reader):
                return reader
        names = ", ".join(str(r) for r in found) or "none"
        raise ScannerError(
            f"no PC/SC reader matching {wanted!r} (readers: {names})", device=self.name
        )

    def _uid_of(self, smartcard: Any, reader: Any) -> bytes | None:
        """The UID of the card on `reader`; None if no card is there (or it left mid-read:
        a card taken away reads as unpowered or unresponsive for a moment)."""
        connection = reader.createConnection()
        try:
            connection.connect()
        except smartcard.Exceptions.NoCardException:
            return None
        except smartcard.Exceptions.CardConnectionException as err:
            self.last_error = str(err)
            _LOGGER.debug("%s: no card to talk to: %s", self.name, err)
            return None
        try:
            data, sw1, sw2 = connection.transmit(GET_UID)
        except smartcard.Exceptions.CardConnectionException as err:
            self.last_error = str(err)
            _LOGGER.debug("%s: the card went away: %s", self.name, err)
            return None
        finally:
            with contextlib.suppress(smartcard.Exceptions.SmartcardException):
                connection.disconnect()
        if (sw1, sw2) != SW_OK:
            raise ScannerError(
                f"the reader gives no UID (status {sw1:02X}{sw2:02X}); is it a contactless "
                "PC/SC reader?",
                device=self.name,
            )
        uid = bytes(data)
        if len(uid) not in UID_SIZES:
            raise ScannerError(f"a UID of {len(uid)} bytes is not ISO 14443", device=self.name)
        return uid

    def read_uid_blocking(self, timeout: float | None = None) -> bytes:
        """Wait up to `timeout` seconds for a card on the reader and read its UID."""
        smartcard = _pyscard()
        reader = self._reader(smartcard)
        self.last_error = ""
        deadline = time.monotonic() + (timeout or self._settings.timeout_seconds)
        field = _Field(smartcard.scard, str(reader))
        try:
            while True:
                uid = self._uid_of(smartcard, reader)
                if uid is not None:
                    self.state = DeviceState.READY
                    return uid
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    why = f" (the last one: {self.last_error})" if self.last_error else ""
                    raise ScannerError(f"no card on the reader{why}", device=self.name)
                self._watch(field, min(left, POLL_SECONDS))
        finally:
            field.close()

    async def read_uid(self) -> str:
        """The plain code of the card on the reader; ScannerError if none comes in time."""
        return canonical(await asyncio.to_thread(self.read_uid_blocking))

    def _next_card(self) -> bytes | None:
        """The UID of a card put on the reader since the last call, after waiting up to
        POLL_SECONDS for one; None if none came. A card is read once, when it comes: while it
        lies there the reader is not asked again (pcscd says when a card comes or goes)."""
        smartcard = _pyscard()
        reader = self._reader(smartcard)
        self.state = DeviceState.READY
        if self._field is None or self._field.name != str(reader):
            self._close_field()
            self._field = _Field(smartcard.scard, str(reader))
        field = self._field
        fresh = not field.watching  # pcscd (again) tells us of whatever lies there now
        if self._watch(field, POLL_SECONDS):
            self._unread = field.present
            if not field.present:
                self._last = None  # the field is empty: the same card again is a new tap
            elif not fresh:
                self._last = None  # a card came: a new tap, even if it is the same card
        if not (self._unread and field.present):
            return None
        uid = self._uid_of(smartcard, reader)
        if uid is None:
            return None  # could not read it (yet): try again at the next wait
        self._unread = False
        if uid == self._last:
            return None  # the card that lay there before pcscd lost track of it
        self._last = uid
        return uid

    def _watch(self, field: _Field, seconds: float) -> bool:
        """Wait for the field to change; pcscd's errors are noted and the wait slept out."""
        deadline = time.monotonic() + seconds
        try:
            return field.wait(seconds)
        except _PcscdError as err:
            self.last_error = str(err)
            _LOGGER.debug("%s: %s", self.name, err)
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False  # the next wait, on a new context, reports what lies there

    def _close_field(self) -> None:
        if self._field is not None:
            self._field.close()
            self._field = None

    async def scans(self) -> AsyncIterator[ScanEvent]:
        """Yield each card put on the reader once, as its UID's plain code."""
        try:
            while not self._closed:
                try:
                    uid = await asyncio.to_thread(self._next_card)
                except ScannerError as err:
                    if self.state is not DeviceState.ABSENT:
                        _LOGGER.warning("%s: %s; waiting for the reader", self.name, err)
                    self.state = DeviceState.ABSENT
                    self._close_field()
                    await asyncio.sleep(ABSENT_RETRY)
                    continue
                if uid is not None:
                    yield ScanEvent(self.name, canonical(uid).encode("ascii"), time.monotonic())
        finally:
            self._close_field()

    async def close(self) -> None:
        """Stop reading; a wait in progress ends within POLL_SECONDS, and lets go of pcscd."""
        self._closed = True

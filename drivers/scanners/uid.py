"""Card UIDs as NFC/RFID readers present them, turned into the plain code the central knows.

Readers type or send a UID in one of a few forms: hex digits in reading order (04A1B2C3),
hex in reverse byte order, or the decimal value of the bytes read little-endian (the common
"10-digit" output of 125 kHz and MIFARE keyboard readers). The central system knows a card by
one canonical text; `UidFormat` converts whatever the reader sends into it.
"""

from __future__ import annotations

import enum
import string
from dataclasses import dataclass

MAX_UID_BYTES = 10  # ISO 14443 UIDs are 4, 7 or 10 bytes; 125 kHz ids 5


class UidInput(enum.Enum):
    """How the reader presents a UID."""

    HEX = "hex"  # hex digits, two per byte, optional ":" or " " between bytes
    DECIMAL = "decimal"  # the UID bytes as one unsigned number, first byte least significant


class ByteOrder(enum.Enum):
    """Byte order of the UID text the central system expects, relative to the reader's."""

    AS_READ = "as-read"
    REVERSED = "reversed"


@dataclass(frozen=True, slots=True)
class UidFormat:
    """Reader UID text -> canonical UID text (upper-case hex, no separators)."""

    input: UidInput = UidInput.HEX
    order: ByteOrder = ByteOrder.AS_READ
    length: int = 0  # UID bytes for decimal input (0: as few as the number needs)

    def uid_bytes(self, text: bytes) -> bytes:
        """The UID's bytes in reading order; ValueError if `text` is not a UID."""
        raw = text.strip().decode("ascii", "replace")
        if self.input is UidInput.DECIMAL:
            if not raw.isdigit() or not raw.isascii():
                raise ValueError("a decimal UID has only digits")
            value = int(raw)
            size = self.length or max(1, (value.bit_length() + 7) // 8)
            if value.bit_length() > size * 8:
                raise ValueError(f"UID {len(raw)} digits do not fit in {size} bytes")
            uid = value.to_bytes(size, "little")
        else:
            digits = raw.replace(":", "").replace(" ", "").replace("-", "")
            if not digits or len(digits) % 2 or not set(digits) <= set(string.hexdigits):
                raise ValueError("a hex UID has an even number of hex digits")
            uid = bytes.fromhex(digits)
        if not 1 <= len(uid) <= MAX_UID_BYTES:
            raise ValueError(f"a UID has 1..{MAX_UID_BYTES} bytes, not {len(uid)}")
        return uid

    def convert(self, text: bytes) -> bytes:
        """The canonical UID text; ValueError if `text` is not a UID."""
        uid = self.uid_bytes(text)
        if self.order is ByteOrder.REVERSED:
            uid = uid[::-1]
        return uid.hex().upper().encode("ascii")


def validate_uid(uid: str, uid_order: str, uid_length: int) -> None:
    """ValueError naming the bad key if the card-reader settings are invalid."""
    if uid not in ("", *(u.value for u in UidInput)):
        raise ValueError("uid must be '' (not a card reader), 'hex' or 'decimal'")
    if uid_order not in {o.value for o in ByteOrder}:
        raise ValueError("uid_order must be 'as-read' or 'reversed'")
    if not 0 <= uid_length <= 10:
        raise ValueError("uid_length must be 0..10")


def uid_format(uid: str, uid_order: str, uid_length: int) -> UidFormat | None:
    """The UID conversion configured for a reader, None for a barcode scanner."""
    if not uid:
        return None
    return UidFormat(UidInput(uid), ByteOrder(uid_order), uid_length)

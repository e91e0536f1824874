"""A contactless card on a virtual PC/SC reader: vsmartcard's vicc, with the card answering as a
PC/SC contactless reader answers for a storage card (PC/SC part 3: its ATR, and GET DATA
FF CA 00 00 for the UID). Run by Debian's python3 (python3-virtualsmartcard); the tests start
one per card put on the reader and stop it to take the card away.

    /usr/bin/python3 tests/nfc/virtual_card.py --port 35999 --uid 04A1B2C3D4E5F6
"""

from __future__ import annotations

import argparse
import logging
import sys

# Debian installs the library one folder deeper than its own package name, and its crypto
# helpers import PyCrypto's `Crypto`, which Debian ships as pycryptodome's `Cryptodome`.
sys.path.insert(0, "/usr/lib/python3/site-packages/virtualsmartcard")
import Cryptodome  # type: ignore[import-not-found]

sys.modules.setdefault("Crypto", Cryptodome)

from virtualsmartcard.VirtualSmartcard import (  # type: ignore[import-not-found]  # noqa: E402
    SmartcardOS,
    VirtualICC,
)

# PC/SC part 3, 3.1.3.2.3: the ATR a contactless reader reports for a storage card; byte 13
# is the card name (0x0001 MIFARE Classic 1K, 0x0003 MIFARE Ultralight / NTAG).
ATR = {
    "mifare-classic-1k": bytes.fromhex("3B8F8001804F0CA000000306030001000000006A"),
    "ntag": bytes.fromhex("3B8F8001804F0CA0000003060300030000000068"),
}
OK = b"\x90\x00"
WRONG_P1P2 = b"\x6a\x86"
NOT_SUPPORTED = b"\x6d\x00"


class ContactlessCard(SmartcardOS):  # type: ignore[misc]
    """Answers GET DATA (UID) like a PC/SC contactless reader; nothing else."""

    def __init__(self, uid: bytes, atr: bytes) -> None:
        self.uid = uid
        self.atr = atr

    def getATR(self) -> bytes:  # noqa: N802 - the library's name
        return self.atr

    def execute(self, msg: bytes) -> bytes:
        if len(msg) >= 4 and msg[0] == 0xFF and msg[1] == 0xCA:
            if msg[2:4] == b"\x00\x00":
                print("read", flush=True)  # the tests count how often the reader asks
                return self.uid + OK
            return WRONG_P1P2
        return NOT_SUPPORTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the vpcd reader's TCP port")
    parser.add_argument("--uid", required=True, help="the chip's UID, hex")
    parser.add_argument("--type", choices=sorted(ATR), default="mifare-classic-1k")
    args = parser.parse_args()
    icc = VirtualICC(None, "iso7816", "127.0.0.1", args.port, logginglevel=logging.WARNING)
    icc.os = ContactlessCard(bytes.fromhex(args.uid), ATR[args.type])
    print("inserted", flush=True)
    icc.run()


if __name__ == "__main__":
    main()

"""Logging setup: structured records to journald when systemd runs us, plain text otherwise.

Under systemd ($JOURNAL_STREAM names our stderr) each record goes as one datagram in the
journal's native protocol (systemd.journal-fields(7)): MESSAGE, PRIORITY, CODE_FILE,
CODE_LINE, CODE_FUNC, SYSLOG_IDENTIFIER, LOGGER, and EDGE_* fields taken from the record's
`extra` keys that start with `edge_` (EDGE_DEVICE, EDGE_LANE, EDGE_REASON, ...), so
`journalctl EDGE_REASON=revoked` works. Codes are masked by the callers before logging.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "edge"
MAX_FIELD_BYTES = 32 * 1024  # a record larger than one datagram is cut, not lost
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # journald adds its own time

# syslog priorities (sd-daemon.h)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    for level, value in _PRIORITY.items():
        if levelno >= level:
            return value
    return 7


def _field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")[:MAX_FIELD_BYTES]
    if b"\n" in data:
        # Binary form: name, newline, 64-bit little-endian length, data, newline.
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def journal_fields(record: logging.LogRecord, formatted: str) -> dict[str, str]:
    """The journal fields of one record."""
    fields = {
        "MESSAGE": formatted,
        "PRIORITY": str(priority(record.levelno)),
        "SYSLOG_IDENTIFIER": IDENTIFIER,
        "LOGGER": record.name,
        "CODE_FILE": record.pathname,
        "CODE_LINE": str(record.lineno),
        "CODE_FUNC": record.funcName,
    }
    for key, value in record.__dict__.items():
        if key.startswith("edge_") and value is not None:
            fields[key.upper()] = str(value)
    return fields


class JournalHandler(logging.Handler):
    """Sends records to journald's native socket; falls back to stderr if it cannot."""

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self._path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._fallback = logging.StreamHandler(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record."""
        try:
            fields = journal_fields(record, self.format(record))
            datagram = b"".join(_field(k, v) for k, v in fields.items())
            self._socket.sendto(datagram, self._path)
        except OSError:
            self._fallback.setFormatter(self.formatter)
            self._fallback.emit(record)
        except Exception:  # noqa: BLE001 - logging.Handler's contract: report, never raise
            self.handleError(record)

    def close(self) -> None:
        """Release the socket."""
        self._socket.close()
        super().close()


def journal_stream(environ: Mapping[str, str], fd: int = 2) -> bool:
    """Whether `fd` is the stream systemd connected to the journal ($JOURNAL_STREAM=dev:ino)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def setup(level: int, environ: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for the command line or for journald."""
    environ = os.environ if environ is None else environ
    handler: logging.Handler
    if journal_stream(environ) and os.path.exists(JOURNAL_SOCKET):  # noqa: PTH110
        handler = JournalHandler()
        # journald adds time, host and identifier; the message is what the line says.
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)

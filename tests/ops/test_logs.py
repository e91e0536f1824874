"""Journal records in the native protocol, read back from a real datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import struct
from pathlib import Path

from edge.ops.logs import JournalHandler, journal_stream, priority


def _parse(datagram: bytes) -> dict[str, str]:
    fields = {}
    rest = datagram
    while rest:
        head, sep, tail = rest.partition(b"\n")
        assert sep
        if b"=" in head:
            name, _, value = head.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = tail
        else:  # binary form: NAME\n <u64 length> data \n
            (length,) = struct.unpack("<Q", tail[:8])
            fields[head.decode()] = tail[8 : 8 + length].decode()
            assert tail[8 + length : 9 + length] == b"\n"
            rest = tail[9 + length :]
    return fields


def test_records_carry_priority_code_location_and_edge_fields(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        handler = JournalHandler(str(path))
        logger = logging.getLogger("edge.test_journal")
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            logger.warning(
                "%s: entry %s %s", "North 1", "EDGE:…A4HQ", "revoked",
                extra={"edge_lane": "North 1", "edge_reason": "revoked"},
            )  # fmt: skip
            logger.info("two\nlines")
        finally:
            logger.removeHandler(handler)
            handler.close()
        first = _parse(sock.recv(65536))
        second = _parse(sock.recv(65536))
    assert first["MESSAGE"] == "North 1: entry EDGE:…A4HQ revoked"
    assert first["PRIORITY"] == "4"
    assert first["EDGE_LANE"] == "North 1"
    assert first["EDGE_REASON"] == "revoked"
    assert first["SYSLOG_IDENTIFIER"] == "edge"
    assert first["CODE_FILE"].endswith("test_logs.py")
    assert first["CODE_FUNC"] == "test_records_carry_priority_code_location_and_edge_fields"
    assert second["MESSAGE"] == "two\nlines"
    assert second["PRIORITY"] == "6"


def test_priorities_follow_syslog() -> None:
    assert [priority(n) for n in (50, 40, 30, 20, 10, 5)] == [2, 3, 4, 6, 7, 7]


def test_journal_stream_must_be_our_stderr(tmp_path: Path) -> None:
    file = tmp_path / "stream"
    file.write_text("", encoding="utf-8")
    with file.open("rb") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert journal_stream(env, stream.fileno())
        assert not journal_stream({"JOURNAL_STREAM": "1:2"}, stream.fileno())
        assert not journal_stream({}, stream.fileno())

"""The notify protocol against real datagram sockets (paths and abstract names)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from edge.ops.notify import Notifier, watchdog_interval


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


def test_ready_status_and_stopping_reach_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with _receiver(str(path)) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.ready("gate-1: 2 lanes ready\nsecond line")
        notifier.stopping()
        notifier.close()
        assert sock.recv(4096) == b"READY=1\nSTATUS=gate-1: 2 lanes ready second line"
        assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket_names_start_with_at() -> None:
    name = f"edge-test-{os.getpid()}"
    with _receiver(b"\0" + name.encode()) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.send(WATCHDOG="1")
        notifier.close()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_a_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ping_seconds is None
    notifier.ready("ready")
    notifier.close()


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="edge.ops.notify"):
        notifier.ready("ready")  # ENOENT: logged
    notifier.close()
    assert [(r.name, r.levelno) for r in caplog.records] == [("edge.ops.notify", logging.WARNING)]
    assert "cannot send to the service manager" in caplog.text
    assert "No such file or directory" in caplog.text


def test_watchdog_interval_honours_usec_and_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 10
    assert watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
    half = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000"})
    assert half.ping_seconds == 2.0
    half.close()

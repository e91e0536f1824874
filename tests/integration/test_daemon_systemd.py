"""The real daemon under a notify socket of our own: READY, WATCHDOG, a stalled loop, metrics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import keys
from edge.core.codes import Claims, Kind, mint
from edge.core.ed25519 import PrivateKey

WATCHDOG_USEC = 100_000  # pings every 50 ms: many pings would arrive while the loop is stalled
SILENCE_SECONDS = 1.0  # 20 ping intervals with no ping while stalled
RECEIVE_LIMIT_SECONDS = 30.0  # only stops a broken daemon from hanging the test


def _config(tmp: Path, key: keys.SigningKey, fifo: Path) -> Path:
    path = tmp / "gate.toml"
    path.write_text(
        f"""
[device]
name = "notify-test"
store = "state/edge.db"

[[keys]]
id = {key.key_id}
public = "{key.public_b64}"

[[scanners]]
name = "fifo"
type = "lines"
path = "{fifo}"

[[actuators]]
name = "turnstile"
type = "console"
color = "never"

[[lanes]]
name = "lane-1"
actuator = "turnstile"
entry = ["fifo"]

[metrics]
port = 0
""",
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def _notify_socket(path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECEIVE_LIMIT_SECONDS)
    try:
        yield sock
    finally:
        sock.close()


def _message(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=RECEIVE_LIMIT_SECONDS) as response:
        assert response.status == 200
        return str(response.read().decode())


def _drain(sock: socket.socket) -> list[dict[str, str]]:
    """Messages already queued on the socket."""
    sock.setblocking(False)  # noqa: FBT003 - the socket API's own flag
    queued = []
    try:
        while True:
            queued.append(_message(sock))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(RECEIVE_LIMIT_SECONDS)
    return queued


@pytest.mark.slow
def test_ready_watchdog_stall_metrics_and_stop(tmp_path: Path) -> None:
    key = keys.SigningKey(1, PrivateKey.generate())
    scans = tmp_path / "scans"
    stall = tmp_path / "stall"
    os.mkfifo(scans)
    os.mkfifo(stall)
    (tmp_path / "state").mkdir()
    config = _config(tmp_path, key, scans)
    env = dict(
        os.environ,
        NOTIFY_SOCKET=str(tmp_path / "notify"),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
        EDGE_DEBUG_STALL_FIFO=str(stall),
    )
    env.pop("WATCHDOG_PID", None)
    with _notify_socket(tmp_path / "notify") as sock:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "daemon.log").open("wb"),
            env=env,
        )
        assert daemon.stdout is not None
        try:
            ready = _message(sock)
            assert ready["READY"] == "1", ready
            assert ready["STATUS"].startswith("notify-test: 1 lane ready; metrics on http://")
            metrics_url = ready["STATUS"].rsplit(" ", 1)[1]
            # The store is open and the device key exists by the time READY arrives.
            assert (tmp_path / "state" / "edge.db").exists()
            assert (tmp_path / "state" / "device.key").stat().st_mode & 0o777 == 0o600
            assert _message(sock) == {"WATCHDOG": "1"}

            # One decision shows up in the metrics, by lane, direction and reason.
            code = mint(Claims(key.key_id, 42, Kind.TICKET, event_id=1), key.private)
            with scans.open("w") as writer:
                writer.write(code + "\n")
            assert daemon.stdout.readline().decode().startswith("ADMIT  turnstile")
            text = _get(metrics_url)
            assert (
                'edge_decisions_total{lane="lane-1",direction="entry",reason="admitted"} 1' in text
            )
            assert 'edge_decision_seconds_count{lane="lane-1"} 1' in text
            assert 'edge_lane_queue_length{lane="lane-1"} 0' in text
            assert "edge_journal_unsent 1" in text
            assert code not in text
            assert code[5:25] not in text
            health = json.loads(_get(metrics_url.replace("/metrics", "/health")))
            assert health["status"] == "ok"

            # Stall the loop: open() returns once the loop thread blocks reading the FIFO.
            daemon.send_signal(signal.SIGUSR2)
            with stall.open("wb"):
                _drain(sock)  # pings sent before the stall began
                sock.settimeout(SILENCE_SECONDS)
                with pytest.raises(TimeoutError):
                    sock.recv(4096)  # no ping while the loop is stuck
                sock.settimeout(RECEIVE_LIMIT_SECONDS)
            assert _message(sock) == {"WATCHDOG": "1"}  # released: pings resume

            daemon.send_signal(signal.SIGTERM)
            while (message := _message(sock)) == {"WATCHDOG": "1"}:
                pass
            assert message == {"STOPPING": "1"}
            assert daemon.wait(timeout=RECEIVE_LIMIT_SECONDS) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert "notify-test: device key" in log
    assert code not in log


def test_a_counter_without_lanes_runs_until_stopped(tmp_path: Path) -> None:
    config = tmp_path / "counter.toml"
    config.write_text('[device]\nname = "desk-1"\n\n[metrics]\nport = 0\n', encoding="utf-8")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    env.pop("WATCHDOG_USEC", None)
    with _notify_socket(tmp_path / "notify") as sock:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            stderr=(tmp_path / "daemon.log").open("wb"),
            env=env,
        )
        try:
            ready = _message(sock)
            assert ready["STATUS"].startswith("desk-1: 0 lanes ready; metrics on http://")
            health_url = ready["STATUS"].rsplit(" ", 1)[1].replace("/metrics", "/health")
            assert json.loads(_get(health_url))["device"] == "desk-1"
            assert daemon.poll() is None
            daemon.send_signal(signal.SIGTERM)
            assert _message(sock) == {"STOPPING": "1"}
            assert daemon.wait(timeout=RECEIVE_LIMIT_SECONDS) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


def test_a_busy_metrics_port_is_logged_and_the_gate_runs_on(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "counter.toml"
        config.write_text(
            f'[device]\nname = "desk-2"\n\n[metrics]\nport = {port}\n', encoding="utf-8"
        )
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
        env.pop("WATCHDOG_USEC", None)
        with _notify_socket(tmp_path / "notify") as sock:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                stderr=(tmp_path / "daemon.log").open("wb"),
                env=env,
            )
            try:
                assert _message(sock) == {"READY": "1", "STATUS": "desk-2: 0 lanes ready"}
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=RECEIVE_LIMIT_SECONDS) == 0
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert f"desk-2: metrics cannot listen on 127.0.0.1 port {port}" in log
    assert "running without them" in log

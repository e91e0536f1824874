"""A gate flooded by slow HTTP clients, more than its descriptor limit, as real processes.

The gate runs with RLIMIT_NOFILE lowered to 256 (prlimit) instead of the unit's 8192, and
twice that many clients open connections to its push and /health ports, each sending a
header line now and then and reconnecting when cut. /health and the central system's pushes
must still get through, and the log must stay small: one line about the flood, no tracebacks.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from integration.sync_harness import CentralProcess, GateProcess, free_port, wait_for

LIMIT = 256  # the gate's descriptor limit in this test
SLOW_CLIENTS = 2 * LIMIT
ANSWER_WAIT = 20.0  # generous: only a gate that stopped answering fails it; the figure prints


class Flood:
    """Slow clients: each sends a request line, then a header line every half second."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sockets: list[socket.socket | None] = [None] * SLOW_CLIENTS
        self.connects = 0
        self.cut = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        client = socket.socket()
        client.settimeout(0.2)
        try:
            client.connect(("127.0.0.1", self.ports[i % len(self.ports)]))
            client.sendall(b"POST /v1/push HTTP/1.1\r\n")
        except OSError:
            client.close()
            return
        client.settimeout(0.0)  # non-blocking
        self.sockets[i] = client
        self.connects += 1

    def _run(self) -> None:
        line = 0
        while not self._stop.is_set():
            for i, client in enumerate(self.sockets):
                if client is None:
                    self._open(i)
                    continue
                try:
                    client.send(f"X-Slow-{line}: 1\r\n".encode())
                except BlockingIOError:
                    pass
                except OSError:
                    client.close()
                    self.sockets[i] = None
                    self.cut += 1
            line += 1
            self._stop.wait(0.5)

    def __enter__(self) -> Flood:
        self._thread.start()
        beyond = LIMIT + 64  # past the descriptor limit, whether the gate accepts them or not
        wait_for(lambda: self.connects >= beyond, 60, f"{beyond} slow clients connected")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self.sockets:
            if client is not None:
                client.close()


@pytest.mark.slow
def test_slow_clients_beyond_the_descriptor_limit_leave_health_and_pushes_working(
    tmp_path: Path,
) -> None:
    if shutil.which("prlimit") is None:
        pytest.fail("prlimit is missing (Debian's util-linux)")
    central = CentralProcess(tmp_path / "central")
    key_id = central.db.keys.add()
    (_, public, _) = central.db.keys.public_keys()[0]
    gate = GateProcess(tmp_path / "gate", "gate-1", key_id, base64.b64encode(public).decode())
    central.db.devices.add(gate.name, gate.public_key)
    push_port = free_port()
    try:
        url = central.start()
        gate.start(url, pull_interval=3600, push_port=push_port,
                   push_url=f"http://127.0.0.1:{push_port}/v1/push",
                   prefix=("prlimit", f"--nofile={LIMIT}:{LIMIT}", "--"))  # fmt: skip
        wait_for(lambda: gate.revision() == central.db.log.head(), 30, "the gate bootstrapped")
        match = None

        def metrics_logged() -> bool:
            nonlocal match
            match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", gate.log.read_text())
            return match is not None

        wait_for(metrics_logged, 30, "the metrics endpoint")
        assert match is not None
        health = f"http://127.0.0.1:{match.group(1)}/health"
        gala = central.db.catalogue.add_event("Gala under siege")
        wait_for(lambda: gate.revision() == central.db.log.head(), 30, "the gate current")
        log_before = gate.log.stat().st_size

        with Flood([push_port, int(match.group(1))]) as flood:
            time.sleep(2)  # the flood is at its height: every slot taken, reconnecting
            health_took = []
            for _ in range(10):
                started = time.monotonic()
                with urllib.request.urlopen(health, timeout=ANSWER_WAIT) as response:
                    assert response.status == 200
                health_took.append(time.monotonic() - started)

            central.db.workflows.cancel_event(gala)  # one change, pushed
            head = central.db.log.head()
            push_took = wait_for(lambda: (gate.revision() or 0) >= head, ANSWER_WAIT, "the push")
            time.sleep(HEADER_WAIT)  # long enough for the header timeout to cut the rest
            assert gate.scan("EDGE:not-a-code") == "malformed"  # the lane still decides

        grown = gate.log.stat().st_size - log_before
        log = gate.log.read_text()[log_before:]
        print(
            f"{SLOW_CLIENTS} slow clients ({flood.connects} connects, {flood.cut} cut) at "
            f"RLIMIT_NOFILE {LIMIT}: /health in {min(health_took) * 1000:.0f}.."
            f"{max(health_took) * 1000:.0f} ms (10 requests), push applied in "
            f"{push_took * 1000:.0f} ms, log grew {grown} bytes"
        )
        assert "Traceback" not in log
        assert grown < 16_384, log[-2000:]
        assert flood.cut > 0  # the gate cut slow clients instead of holding them
    finally:
        with contextlib.suppress(Exception):
            gate.kill()
        central.close()


HEADER_WAIT = 11.0  # the header timeout (10 s) and a second

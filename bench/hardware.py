"""Gate hardware figures: scan-to-relay latency and sustained scans per lane, on real ptys.

    ./dev bench hardware                    # 10,000 latency scans, rates up to 4,000/s
    ./dev bench hardware --scans 1000       # a quick look

The real daemon (`edge run`) reads a serial scanner on one pseudo-terminal and drives an
LCUS-type relay board on another; this process plays both devices. Latency: a code line goes
into the scanner's pty, the clock stops when the relay's "on" frame (A0 01 01 A2) comes out
of the other, one scan at a time, every scan a new ticket (decided, journaled, actuated).
Sustained rate: scans are sent at rising rates, each for two seconds; the figure is the
highest rate at which the lane dropped none (the lane's dropped-scans counter on /metrics).
Prints figures; asserts nothing (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import tty
import urllib.request
from pathlib import Path

from drivers.gates.lcus import RelayCommand
from edge import keys
from edge.core.codes import Claims, Kind, mint

RELAY_ON = RelayCommand(1, on=True).to_bytes()
RATES = (250, 500, 1000, 2000, 4000)
STEP_SECONDS = 2.0
WAIT_SECONDS = 10.0  # a frame or figure that takes longer than this is not coming


class Pty:
    """One device end of a pseudo-terminal pair."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def wait_frame(self, frame: bytes, buffer: bytearray) -> bool:
        """Read until `frame` arrived (frames are 4-byte aligned); False on timeout."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for i in range(0, len(buffer) - 3, 4):
                if buffer[i : i + 4] == frame:
                    del buffer[: i + 4]
                    return True
            del buffer[: len(buffer) - len(buffer) % 4]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                return False
            buffer += os.read(self.master, 4096)

    def drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            os.read(self.master, 65536)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(tmp: Path, key: keys.SigningKey, scanner: Pty, relay: Pty, port: int) -> Path:
    path = tmp / "gate.toml"
    path.write_text(
        f"""
[device]
name = "bench-gate"
store = "edge.db"
repeat_window_ms = 0

[[keys]]
id = {key.key_id}
public = "{key.public_b64}"

[[scanners]]
name = "scanner"
type = "serial"
url = "{scanner.path}"
baud = 115200

[[actuators]]
name = "turnstile"
type = "serial-relay"
url = "{relay.path}"
pulse_ms = 50

[[lanes]]
name = "lane-1"
actuator = "turnstile"
entry = ["scanner"]

[metrics]
port = {port}
""",
        encoding="utf-8",
    )
    return path


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            _metric(port, "edge_info")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _decision_buckets(port: int) -> dict[str, float]:
    """The daemon's decide-and-journal histogram: cumulative count per upper bound."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("edge_decision_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def latency(scanner: Pty, relay: Pty, codes: list[bytes], port: int) -> None:
    """One scan at a time: line into the scanner pty -> relay 'on' frame out of the relay pty."""
    buffer = bytearray()
    samples: list[int] = []
    lost = 0
    # Warm-up: the daemon opens its ports when the lane starts; resend until the relay moves.
    for code in codes[:50]:
        os.write(scanner.master, code + b"\r\n")
        if relay.wait_frame(RELAY_ON, buffer):
            break
    relay.drain()
    buffer.clear()
    before = _decision_buckets(port)
    started = time.perf_counter()
    for i, code in enumerate(codes[50:]):
        t0 = time.perf_counter_ns()
        os.write(scanner.master, code + b"\r\n")
        if not relay.wait_frame(RELAY_ON, buffer):
            lost += 1
            continue
        samples.append(time.perf_counter_ns() - t0)
        if i % 500 == 0:
            print(f"\r  latency: {i:,}/{len(codes) - 50:,}", end="", flush=True)
    elapsed = time.perf_counter() - started
    samples.sort()
    p50 = samples[len(samples) // 2] / 1e6
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e6
    print(
        f"\r  scan-to-relay latency over {len(samples):,} scans: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, max {samples[-1] / 1e6:.2f} ms (target p99 <= 5 ms); "
        f"{len(samples) / elapsed:,.0f} sequential scans/s; {lost} without a relay frame"
    )
    after = _decision_buckets(port)
    counted = after["+Inf"] - before.get("+Inf", 0.0)
    shares = ", ".join(
        f"{(after[le] - before.get(le, 0.0)) / counted:.2%} under {float(le) * 1000:g} ms"
        for le in ("0.001", "0.0025", "0.005")
        if le in after
    )
    print(f"  of which decide + journal (the daemon's histogram): {shares}")


def sustained(scanner: Pty, relay: Pty, codes: list[bytes], port: int, rates: list[int]) -> None:
    """Rising paced rates until the lane drops scans."""
    best = 0
    it = iter(codes)
    for rate in rates:
        count = int(rate * STEP_SECONDS)
        dropped_before = _metric(port, "edge_lane_dropped_scans_total")
        decided_before = _metric(port, "edge_decisions_total")
        started = time.perf_counter()
        for i in range(count):
            due = started + i / rate
            while (now := time.perf_counter()) < due:
                relay.drain()
                time.sleep(min(0.0005, due - now))
            os.write(scanner.master, next(it) + b"\r\n")
        # Wait until the lane has worked through what it accepted.
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            relay.drain()
            decided = _metric(port, "edge_decisions_total") - decided_before
            dropped = _metric(port, "edge_lane_dropped_scans_total") - dropped_before
            if decided + dropped >= count:
                break
            time.sleep(0.05)
        sent_rate = count / (time.perf_counter() - started)
        print(
            f"  {rate:,}/s offered for {STEP_SECONDS:.0f} s: {decided:,.0f} decided, "
            f"{dropped:,.0f} dropped ({sent_rate:,.0f}/s including the drain)"
        )
        if dropped:
            break
        best = rate
    print(f"  sustained scans per lane without a drop: {best:,}/s (of the rates tried)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", type=int, default=10_000, help="latency samples")
    parser.add_argument("--max-rate", type=int, default=RATES[-1], help="highest offered rate")
    args = parser.parse_args()
    rates = [r for r in RATES if r <= args.max_rate]
    key = keys.generate(1)
    total = args.scans + 50 + int(sum(rates) * STEP_SECONDS)
    print(f"minting {total:,} tickets ...", flush=True)
    codes = [
        mint(Claims(key.key_id, n, Kind.TICKET, event_id=1), key.private).encode()
        for n in range(1, total + 1)
    ]
    scanner, relay = Pty(), Pty()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), key, scanner, relay, port)
        with (Path(tmp) / "daemon.log").open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            _wait_ready(port)
            latency(scanner, relay, codes[: args.scans + 50], port)
            sustained(scanner, relay, codes[args.scans + 50 :], port, rates)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)


if __name__ == "__main__":
    main()

"""Gate core figures: bulk revocation load, decision latency, daemon start and memory.

    ./dev bench decide                       # the issue's sizes: 10M revocations, 1M credentials
    ./dev bench decide --revocations 100000 --credentials 10000   # a quick look

Prints figures; asserts nothing (the machines are shared and noisy). Compare the ratios: the
signed-code median against one Ed25519 verification plus one direct sqlite3 point lookup,
both measured here in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge import keys
from edge.core.codes import Claims, EntryPolicy, Kind, Validity, mint, plain_hash
from edge.core.decide import GateRules
from edge.core.ed25519 import PrivateKey
from edge.core.facts import Credential, Direction, Revocation, TrustedKey
from edge.gate.gate import Gate
from edge.store.database import Store

CHUNK = 100_000
SAMPLES = 5_000


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return p50, p99


def _progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r  {label}: {done:,}/{total:,} ({rate:,.0f}/s)", end="", flush=True)


async def load(store: Store, revocations: int, credentials: int, rng: random.Random) -> None:
    """Fill the store; prints the bulk load rates."""
    started = time.perf_counter()
    for done in range(0, revocations, CHUNK):
        size = min(CHUNK, revocations - done)
        await store.revoke_codes((rng.randbytes(16), Revocation.REVOKED) for _ in range(size))
        _progress("revocations", done + size, revocations, started)
    elapsed = time.perf_counter() - started
    print(f"\n  bulk load of revocations: {revocations / elapsed:,.0f} per second")

    now = datetime.now(UTC).replace(microsecond=0)
    year = Validity(now - timedelta(days=10), now + timedelta(days=355))
    started = time.perf_counter()
    for done in range(0, credentials, CHUNK):
        ids = range(done + 1, done + 1 + min(CHUNK, credentials - done))
        await store.put_credentials(
            (Credential(i, Kind.PASS, 0, 20, EntryPolicy.unlimited(5), year) for i in ids),
            # Every other credential also has a legacy plain code.
            ((plain_hash(f"LEGACY{i:010d}"), i) for i in ids if i % 2 == 0),
        )
        _progress("credentials", ids[-1], credentials, started)
    elapsed = time.perf_counter() - started
    print(f"\n  bulk load of credentials: {credentials / elapsed:,.0f} per second")


def baselines(db: Path, rng: random.Random) -> tuple[float, float]:
    """Median µs of one Ed25519 verification and one direct sqlite3 point lookup."""
    key = PrivateKey.generate()
    public = TrustedKey(1, key.public_key().public_bytes_raw())  # as the scan path verifies
    message = rng.randbytes(40)
    signature = key.sign(message)
    verify = []
    for _ in range(SAMPLES):
        t0 = time.perf_counter_ns()
        public.verify(message, signature)
        verify.append(time.perf_counter_ns() - t0)
    conn = sqlite3.connect(db)
    lookup = []
    for _ in range(SAMPLES):
        probe = rng.randbytes(16)
        t0 = time.perf_counter_ns()
        conn.execute("SELECT reason FROM revoked_codes WHERE code_hash = ?", (probe,)).fetchone()
        lookup.append(time.perf_counter_ns() - t0)
    conn.close()
    return statistics.median(verify) / 1000, statistics.median(lookup) / 1000


def decisions(store: Store, key: keys.SigningKey, credentials: int, rng: random.Random) -> float:
    """Decision latency from code text to Decision, with all store reads; the signed median."""
    medians: dict[str, float] = {}
    gate = Gate(store)
    rules = GateRules(gate="bench")
    signed = [
        mint(
            Claims(key.key_id, rng.randint(1, credentials * 2), Kind.PASS, 0, 20),
            key.private,
        ).encode()
        for _ in range(SAMPLES)
    ]
    plain = [
        f"LEGACY{2 * rng.randint(1, max(credentials // 2, 1)):010d}".encode()
        for _ in range(SAMPLES)
    ]
    for label, inputs in (("signed", signed), ("plain", plain)):
        samples = []
        admitted = 0
        for data in inputs:
            t0 = time.perf_counter_ns()
            check = gate.check(data, rules, Direction.ENTRY)
            samples.append(time.perf_counter_ns() - t0)
            admitted += check.decision.admitted
        p50, p99 = _percentiles(samples)
        print(
            f"  decision latency, {label} codes: p50 {p50:.0f} µs, p99 {p99:.0f} µs "
            f"({admitted}/{len(inputs)} admitted)"
        )
        medians[label] = p50
    return medians["signed"]


def daemon(tmp: Path, db: Path, key: keys.SigningKey) -> None:
    """Start `edge run` on the loaded store: time to first decision, resident memory."""
    fifo = tmp / "scans"
    os.mkfifo(fifo)
    config = tmp / "gate.toml"
    config.write_text(
        f'[device]\nname = "bench"\nstore = "{db}"\n\n'
        f'[[keys]]\nid = {key.key_id}\npublic = "{key.public_b64}"\n\n'
        f'[[scanners]]\nname = "fifo"\ntype = "lines"\npath = "{fifo}"\n\n'
        '[[actuators]]\nname = "turnstile"\ntype = "console"\ncolor = "never"\n\n'
        '[[lanes]]\nname = "bench"\nactuator = "turnstile"\nentry = ["fifo"]\n',
        encoding="utf-8",
    )
    codes = [
        mint(Claims(key.key_id, 10**12 + i, Kind.TICKET, 1, 1), key.private) for i in range(1000)
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, codes[0].encode() + b"\n")
    first = process.stdout.readline()
    first_decision = time.perf_counter() - started
    for code in codes[1:]:
        os.write(writer, code.encode() + b"\n")
        process.stdout.readline()
    rss_kb = 0
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    process.terminate()
    process.wait()
    os.close(writer)
    verdict = first.decode().split()[0]
    print(f"  daemon: start to first decision {first_decision * 1000:.0f} ms ({verdict})")
    print(f"  daemon: resident memory after {len(codes)} decisions {rss_kb / 1024:.1f} MB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--revocations", type=int, default=10_000_000)
    parser.add_argument("--credentials", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse or keep this store (default: temporary)")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = args.db or tmp / "edge.db"
        fresh = not db.exists()
        store = await Store.open(db)
        key = keys.SigningKey(1, PrivateKey.from_private_bytes(bytes(32)))
        await store.put_keys([(key.key_id, key.public_bytes, False)])
        print(f"store {db}: {args.revocations:,} revocations, {args.credentials:,} credentials")
        if fresh:
            await load(store, args.revocations, args.credentials, rng)
        verify_us, lookup_us = baselines(db, rng)
        print(
            f"  baseline: Ed25519 verify median {verify_us:.0f} µs, "
            f"sqlite3 point lookup median {lookup_us:.1f} µs"
        )
        signed_p50 = decisions(store, key, args.credentials, rng)
        budget = 2 * (verify_us + lookup_us)
        print(
            f"  signed median / (verify + lookup) = {signed_p50 / (verify_us + lookup_us):.2f}"
            f" (target <= 2, i.e. <= {budget:.0f} µs)"
        )
        await store.close()
        daemon(tmp, db, key)


if __name__ == "__main__":
    asyncio.run(main())

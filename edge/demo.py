"""`edge demo`: a gate on a temporary store with sample tickets; codes come from stdin."""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.gates.console import ConsoleActuator, ConsoleActuatorSettings
from drivers.scanners.lines import LineScanner, LineScannerSettings
from edge import keys
from edge.core.codes import Claims, EntryPolicy, Kind, Validity, mint, parse, plain_hash
from edge.core.decide import GateRules
from edge.core.facts import Credential, Direction, Revocation
from edge.gate.gate import Gate
from edge.gate.lane import Lane, LaneResult
from edge.store.database import Store

LANE = "demo-1"
ZONE = 1
CONCERT, CANCELLED_EVENT = 1, 2
DAY_TICKET, ANNUAL_PASS, SEASON_TICKET, VOUCHER = 10, 20, 30, 40


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample code and what the gate should show for it."""

    label: str
    code: str


async def seed(store: Store, key: keys.SigningKey, now: datetime) -> list[Sample]:
    """Fill the store with the demo's facts and return the sample codes."""
    today = Validity(now - timedelta(hours=2), now + timedelta(hours=10))
    year = Validity(now - timedelta(days=30), now + timedelta(days=335))

    def code(credential_id: int, kind: Kind = Kind.TICKET, **claims: object) -> str:
        values: dict[str, object] = {"event_id": CONCERT, "product_id": DAY_TICKET}
        values.update(claims)
        return mint(Claims(key.key_id, credential_id, kind, **values), key.private)  # type: ignore[arg-type]

    pass_claims: dict[str, object] = {
        "event_id": 0,
        "product_id": ANNUAL_PASS,
        "policy": EntryPolicy.unlimited(5),
        "validity": year,
    }
    stranger = keys.generate(99)
    lost_card = code(1004, Kind.PASS, **pass_claims)
    samples = [
        Sample("day ticket, single entry", code(1001, validity=today)),
        Sample("3-visit ticket", code(1002, policy=EntryPolicy.multi(3), validity=today)),
        Sample("annual pass, re-entry, 5 min anti-passback", code(1003, Kind.PASS, **pass_claims)),
        Sample("annual pass, card lost (replaced)", lost_card),
        Sample("the same pass, replacement card", code(1004, Kind.PASS, reissue=1, **pass_claims)),
        Sample("ticket for a cancelled event", code(1005, event_id=CANCELLED_EVENT)),
        Sample(
            "season ticket renewed, not paid yet",
            code(1006, Kind.PASS, product_id=SEASON_TICKET, event_id=0, validity=year),
        ),
        Sample(
            "annual pass, extended (code says expired)",
            code(
                1007,
                Kind.PASS,
                event_id=0,
                product_id=ANNUAL_PASS,
                policy=EntryPolicy.unlimited(5),
                validity=Validity(now - timedelta(days=400), now - timedelta(days=35)),
            ),
        ),
        Sample(
            "ticket for tomorrow",
            code(
                1008, validity=Validity(now + timedelta(days=1), now + timedelta(days=1, hours=8))
            ),
        ),
        Sample(
            "ticket from last week",
            code(1009, validity=Validity(now - timedelta(days=7), now - timedelta(days=6))),
        ),
        Sample("sale cancelled", code(1010, validity=today)),
        Sample("ticket for zone 2 only (this lane is zone 1)", code(1011, zones=1 << 2)),
        Sample("voucher (redeemed at the counter)", code(1012, Kind.VOUCHER, product_id=VOUCHER)),
        Sample(
            "signed by an unknown issuer",
            mint(Claims(stranger.key_id, 1013, Kind.TICKET, CONCERT, DAY_TICKET), stranger.private),
        ),
        Sample("legacy barcode, known", "4006381333931"),
        Sample("legacy barcode, unknown", "9780201379624"),
    ]
    forged = samples[0].code
    forged = forged[:20] + ("B" if forged[20] != "B" else "C") + forged[21:]
    samples.append(Sample("day ticket with one character altered", forged))

    await store.put_keys([(key.key_id, key.public_bytes, False)])
    await store.put_credentials(
        [
            Credential(
                1006, Kind.PASS, 0, SEASON_TICKET, EntryPolicy.unlimited(5), year, paid=False
            ),
            Credential(1007, Kind.PASS, 0, ANNUAL_PASS, EntryPolicy.unlimited(5), year),
            Credential(2001, Kind.TICKET, CONCERT, DAY_TICKET, EntryPolicy.single(), today),
        ],
        plain_codes=[(plain_hash("4006381333931"), 2001)],
    )
    await store.revoke_codes([(parse(lost_card.encode()).hash, Revocation.REPLACED)])
    await store.revoke_credentials([(1010, Revocation.CANCELLED)])
    await store.cancel_events([CANCELLED_EVENT])
    return samples


def _banner(samples: list[Sample], db: Path) -> str:
    lines = [
        "edge demo: one gate lane (zone 1, entry and exit) on a temporary store",
        f"store: {db}",
        "",
        "Sample codes (type the number, or paste a code; prefix 'out ' to scan on the exit side):",
    ]
    for number, sample in enumerate(samples, 1):
        lines.append(f"{number:3}  {sample.label}")
        lines.append(f"     {sample.code}")
    lines += ["", "Type 'list' to see the codes again, Ctrl-D to end.", ""]
    return "\n".join(lines)


async def main(*, language: str = "en", color: str = "auto") -> int:
    """Run the demo until end of input; returns the exit status."""
    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        db = Path(tmp) / "edge.db"
        store = await Store.open(db)
        try:
            key = keys.generate(1)
            samples = await seed(store, key, datetime.now(UTC).replace(microsecond=0))
            print(_banner(samples, db), flush=True)
            results: Counter[str] = Counter()

            def report(result: LaneResult) -> None:
                if result.check is None:
                    return
                decision = result.check.decision
                results[decision.reason.value] += 1
                extra = " (scanner re-read: same passage)" if result.repeat else ""
                cid = decision.credential_id
                who = f"credential {cid}" if cid is not None else "no credential"
                print(f"       {decision.reason.value} · {who} · {result.check.hint}{extra}")

            lane = Lane(
                rules=GateRules(gate=LANE, zone=ZONE),
                gate=Gate(store),
                actuator=ConsoleActuator("turnstile", ConsoleActuatorSettings(color=color)),
                sources=[],  # the demo hands each line to the lane itself, in order
                language=language,
                on_result=report,
            )
            reader = LineScanner("stdin", LineScannerSettings("-"))
            async for scan in reader.scans():
                line = scan.data.decode("utf-8", "replace").strip()
                if line.lower() in ("list", "help", "?"):
                    print(_banner(samples, db), flush=True)
                    continue
                if line.lower() in ("quit", "exit"):
                    break
                data, direction = scan.data, Direction.ENTRY
                if line.lower().startswith("out "):
                    direction, line = Direction.EXIT, line[4:].strip()
                    data = line.encode("utf-8", "replace")
                if line.isdigit() and 1 <= int(line) <= len(samples):
                    data = samples[int(line) - 1].code.encode("ascii")
                await lane.handle(data, direction, scan.at)
            await reader.close()
            total = sum(results.values())
            summary = ", ".join(f"{n} {reason}" for reason, n in results.most_common())
            print(f"\n{total} decisions journaled: {summary or 'none'}", file=sys.stderr)
        finally:
            await store.close()
    return 0

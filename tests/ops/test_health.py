"""/health: "failing" while journal writes fail (a full disk), back to ok once they work."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from conftest import mint_code, ticket

from drivers.gates.null import NullActuator, NullActuatorSettings
from edge.core.decide import GateRules
from edge.core.facts import Direction
from edge.gate.gate import Gate
from edge.gate.lane import Lane
from edge.ops import health as health_module
from edge.ops.health import Operations
from edge.ops.settings import MetricsConfig
from edge.store.database import Store

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


async def test_health_reports_failing_while_the_journal_cannot_be_written(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "edge.db")
    operations = Operations(MetricsConfig(port=0), store, device="gate-1", environ={})
    operations.prepare(tmp_path / "edge.db")
    lane = Lane(
        rules=GateRules("North 1"),
        gate=Gate(store, clock=lambda: NOW),
        actuator=NullActuator("turnstile", NullActuatorSettings()),
        sources=[],
        on_result=operations.reporter(None),
    )
    try:
        async with asyncio.TaskGroup() as group:
            tasks = await operations.start([lane], group)
            assert operations.metrics_url is not None
            url = operations.metrics_url.replace("/metrics", "/health")

            async def health() -> tuple[int, dict[str, object]]:
                return await asyncio.to_thread(_get, url)

            await lane.handle(mint_code(ticket(1)).encode(), Direction.ENTRY, 0.0)
            status, body = await health()
            assert (status, body["status"]) == (200, "ok")
            journal = body["journal"]
            assert isinstance(journal, dict)
            assert journal["failing"] is False
            assert isinstance(journal["disk_free_bytes"], int)

            # The disk is full: SQLite's own limit on the file makes every write fail with
            # SQLITE_FULL, as a full filesystem does.
            (pages,) = store._reader.execute("PRAGMA journal_file.page_count").fetchone()
            await store._journal.bulk(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
            for credential in range(2, 2000):  # until a page split needs a new page
                await lane.handle(mint_code(ticket(credential)).encode(), Direction.ENTRY, 0.0)
                if operations.decisions.journal_failing:
                    break
            status, body = await health()
            assert (status, body["status"]) == (503, "failing")
            journal = body["journal"]
            assert isinstance(journal, dict)
            assert journal["failing"] is True
            assert "full" in str(journal["last_error"])

            # Space again: the next scan is journaled; degraded for a while, then ok.
            await store._journal.bulk(
                lambda conn: conn.execute("PRAGMA max_page_count = 1073741823")
            )
            await lane.handle(mint_code(ticket(100)).encode(), Direction.ENTRY, 0.0)
            status, body = await health()
            assert (status, body["status"]) == (200, "degraded")
            failed_at = operations.decisions.journal_failed_at
            assert failed_at is not None
            operations.decisions.journal_failed_at = (
                failed_at - health_module.JOURNAL_RECOVERY_SECONDS
            )
            status, body = await health()
            assert (status, body["status"]) == (200, "ok")
            for task in tasks:
                task.cancel()
    finally:
        operations.close()
        await store.close()

"""Kill one of two central processes on one PostgreSQL while changes flow: every gate moves
to the other and converges; every journal row is in PostgreSQL exactly once.

A few rounds here (killing each process in turn, restarting it in between); bench/failover.py
runs a hundred and prints the figures beside the issue's targets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pgcluster import Cluster

from integration.failover_rounds import FailoverVenue

ROUNDS = 3  # the first process dies, then the second (the first restarted), then the first


@pytest.mark.slow
def test_gates_fail_over_and_converge_with_every_row_once(
    tmp_path: Path, postgres: Cluster
) -> None:
    venue = FailoverVenue(tmp_path, postgres.database(), gates=3)
    try:
        venue.start()
        for number in range(ROUNDS):
            result = venue.round(number)
            print(result)
            assert (result.lost, result.duplicated, result.unenforced) == (0, 0, 0), result
            # Every gate was on the killed process (half of them by their order, the others
            # moved there the round before) or stayed where it was: the ones that were on it
            # opened a channel on the other.
            assert result.moved >= 1, result
        assert result.journal_rows == sum(g.last_seq() for g in venue.gates)
        for gate in venue.gates:  # every revocation of every round, still enforced
            assert {gate.scan(code) for code in venue.revoked} == {"revoked"}
            assert "is down (" in gate.log.read_text(errors="replace")
    finally:
        venue.close()

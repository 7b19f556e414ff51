"""The deterministic simulator: many seeds of mixed faults, safety after every step,
liveness after healing, linearizable client histories, exact replay.

``ASPEN_SIM_SEEDS`` sets how many seeds run (default 1000; a quarter of them with five
nodes). A failure prints the one-line command that replays it.
"""

from __future__ import annotations

import os

import pytest

from aspen.raft.log import RaftLog
from aspen.testing.linearizability import check_kv_history
from aspen.testing.raftsim import (
    FAULT_KINDS,
    SimResult,
    main,
    resolve_faults,
    run_simulation,
)

SEEDS = int(os.environ.get("ASPEN_SIM_SEEDS", "1000"))
CHUNK = 50
STEPS = 400


def nodes_for(seed: int) -> int:
    """Three nodes mostly, five for every fourth seed."""
    return 5 if seed % 4 == 3 else 3


def run_checked(seed: int) -> tuple[SimResult, str | None]:
    """Run a seed; return it with a failure line (None when safe, live and linearizable)."""
    result = run_simulation(seed, nodes=nodes_for(seed), steps=STEPS, faults="mixed")
    if not result.ok:
        return result, result.summary()
    verdict = check_kv_history(result.history)
    if verdict.ok is not True:
        return result, f"{result.summary()}\n  history not linearizable: {verdict.explanation}"
    return result, None


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK), ids=lambda s: f"seeds{s}")
def test_simulation_seeds_are_safe_live_and_linearizable(first):
    failures = []
    totals: dict[str, int] = {}
    for seed in range(first, min(first + CHUNK, SEEDS)):
        result, failure = run_checked(seed)
        if failure:
            failures.append(failure)
        for name, value in result.stats.items():
            totals[name] = totals.get(name, 0) + value
    assert not failures, "\n".join(failures)
    if min(CHUNK, SEEDS - first) >= CHUNK:  # a full chunk exercises every fault
        for name in (
            "crashes",
            "partitions",
            "transfers",
            "conf_changes",
            "snapshots",
            "commit_notices",  # lazy ones, flushed by the simulated driver timer
        ):
            assert totals[name] > 0, f"no {name} in seeds {first}..{first + CHUNK - 1}"
        assert totals["ops_ok"] > 0 and totals["elections"] > 0


def test_a_run_replays_exactly():
    first = run_simulation(7, nodes=5, steps=200, faults="all")
    again = run_simulation(7, nodes=5, steps=200, faults="all")
    assert first.history == again.history and first.stats == again.stats


def test_a_quiet_run_elects_once_and_commits_everything():
    result = run_simulation(3, nodes=3, steps=200, faults="none")
    assert result.ok, result.summary()
    assert result.stats["elections"] == 1 and result.stats["crashes"] == 0
    assert all(r["ok"] is not None for r in result.history[:-3])
    assert check_kv_history(result.history).ok is True


def test_the_simulator_catches_a_broken_vote_rule_and_replays_it(monkeypatch, capsys):
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    caught = None
    for seed in range(50):
        result = run_simulation(seed, nodes=nodes_for(seed), steps=STEPS, faults="all")
        if not result.ok:
            caught = result
            break
    assert caught is not None, "voting for stale logs went unnoticed"
    assert "leader completeness" in caught.error or "committed entry" in caught.error
    assert caught.replay.startswith("uv run python -m aspen.testing.raftsim --seed")
    args = caught.replay.split("aspen.testing.raftsim ")[1].split()
    assert main(args) == 1
    assert f"FAILED at step {caught.step}: {caught.error}" in capsys.readouterr().out


def test_fault_kinds():
    assert resolve_faults("all", 1) == FAULT_KINDS
    assert resolve_faults("none", 1) == ()
    assert resolve_faults("crash,drop", 1) == ("drop", "crash")
    assert resolve_faults("mixed", 5) == resolve_faults("mixed", 5)
    with pytest.raises(ValueError, match="unknown fault"):
        resolve_faults("meteor", 1)

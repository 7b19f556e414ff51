"""The Raft core's building blocks: storage, log, progress and flow control, quorums,
membership-change encoding and rules."""

from __future__ import annotations

import msgpack
import pytest

from aspen.raft import (
    CompactedError,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    SnapshotMeta,
    UnavailableError,
    bootstrap,
    bootstrap_state,
    decode_conf_change,
    encode_conf_change,
)
from aspen.raft.confchange import apply_to_conf, conf_change_problem
from aspen.raft.log import RaftLog
from aspen.raft.progress import Inflights, Progress, ProgressState
from aspen.raft.quorum import VoteResult, committed_index, majority, vote_result
from aspen.raft.storage import RaftStorage, limit_size


def ents(*terms: int, start: int = 1) -> list[Entry]:
    """Entries with the given terms from index ``start``."""
    return [Entry(start + k, t) for k, t in enumerate(terms)]


# --------------------------------------------------------------------------- storage
def test_memory_storage_is_a_raft_storage():
    assert isinstance(MemoryStorage(), RaftStorage)


def test_memory_storage_bounds_raise_compacted_and_unavailable():
    s = MemoryStorage()
    s.append(ents(1, 1, 2))
    assert (s.first_index(), s.last_index()) == (1, 3)
    assert s.term(0) == 0 and s.term(3) == 2
    with pytest.raises(UnavailableError):
        s.term(4)
    with pytest.raises(UnavailableError):
        s.entries(2, 5)
    with pytest.raises(ValueError, match="past the commit"):
        s.create_snapshot(2, ConfState(("a",)))
    s.set_hard_state(HardState(2, None, 3))
    s.create_snapshot(2, ConfState(("a",)))
    s.compact(2)
    assert s.first_index() == 3 and s.term(2) == 1
    with pytest.raises(CompactedError):
        s.term(1)
    with pytest.raises(CompactedError):
        s.entries(2, 4)


def test_memory_storage_append_replaces_the_suffix():
    s = MemoryStorage()
    s.append(ents(1, 1, 1, 1))
    s.append(ents(2, 2, start=3))
    assert [e.term for e in s.entries(1, 5)] == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="gap"):
        s.append(ents(3, start=7))


def test_memory_storage_entries_respect_the_byte_bound_but_return_one():
    s = MemoryStorage()
    s.append([Entry(i, 1, data=b"x" * 100) for i in range(1, 6)])
    assert len(s.entries(1, 6, 1)) == 1
    assert len(s.entries(1, 6, 250)) == 2
    assert len(s.entries(1, 6, None)) == 5
    assert limit_size([], 0) == []


def test_memory_storage_compact_refuses_to_pass_the_snapshot():
    s = MemoryStorage()
    s.append(ents(1, 1, 1))
    s.set_hard_state(HardState(1, None, 3))
    with pytest.raises(ValueError, match="past the snapshot"):
        s.compact(2)
    s.create_snapshot(2, ConfState(("a",)))
    s.compact(2)
    assert s.first_index() == 3


def test_apply_snapshot_restarts_the_log_after_it():
    s = MemoryStorage()
    s.append(ents(1, 1))
    meta = SnapshotMeta(10, 3, ConfState(("a", "b")))
    s.apply_snapshot(meta)
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 3)
    assert s.initial_state() == (HardState(0, None, 10), meta.conf)
    with pytest.raises(ValueError, match="older"):
        s.apply_snapshot(SnapshotMeta(5, 1))


def test_bootstrap_writes_the_founders_snapshot_at_index_one():
    hs, meta = bootstrap_state(["b", "a", "a"], learners=["c"])
    assert hs == HardState(term=1, vote=None, commit=1)
    assert meta == SnapshotMeta(1, 1, ConfState(("a", "b"), ("c",)))
    s = MemoryStorage()
    bootstrap(s, ["a", "b"])
    assert (s.first_index(), s.last_index(), s.term(1)) == (2, 1, 1)
    with pytest.raises(ValueError, match="empty storage"):
        bootstrap(s, ["a"])
    with pytest.raises(ValueError, match="at least one voter"):
        bootstrap_state([])


# --------------------------------------------------------------------------- log
def test_log_unstable_tail_overrides_storage_and_stabilizes():
    s = MemoryStorage()
    s.append(ents(1, 1, 1))
    log = RaftLog(s, 1 << 20)
    assert log.last_index() == 3
    log.append(ents(2, 2, start=3))  # replaces index 3 in the unstable tail
    assert [log.term(i) for i in range(1, 5)] == [1, 1, 2, 2]
    assert [e.index for e in log.unstable.next_entries()] == [3, 4]
    log.unstable.accept_in_progress()
    assert log.unstable.next_entries() == []
    s.append(ents(2, 2, start=3))
    log.stable_to(4, 2)
    assert log.unstable.entries == [] and log.last_index() == 4


def test_log_stable_to_ignores_replaced_entries():
    log = RaftLog(MemoryStorage(), 1 << 20)
    log.append(ents(1, 1, 1))
    log.unstable.accept_in_progress()
    log.append(ents(2, start=3))  # a new leader replaced index 3 meanwhile
    log.stable_to(3, 1)  # the driver persisted the old index 3: not the current one
    assert log.unstable.maybe_term(3) == 2
    assert [e.index for e in log.unstable.next_entries()] == [3]


class CountingStorage(MemoryStorage):
    """A MemoryStorage that counts the entry reads Raft asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        self.reads += 1
        return super().entries(lo, hi, max_bytes)


def persist(log: RaftLog, storage: MemoryStorage) -> None:
    """What a driver does with a Ready's entries: store them, then ``stable_to``."""
    new = log.unstable.next_entries()
    log.unstable.accept_in_progress()
    storage.append(new)
    log.stable_to(new[-1].index, new[-1].term)


def test_log_hands_out_durable_entries_it_just_persisted_without_reading_storage():
    s = CountingStorage()
    log = RaftLog(s, 1 << 20)
    log.append(ents(1, 1, 1))
    persist(log, s)
    assert log.unstable.entries == [] and [e.index for e in log.stable] == [1, 2, 3]
    log.commit_to(3)
    assert [e.index for e in log.next_committed()] == [1, 2, 3]
    assert [log.term(i) for i in (1, 2, 3)] == [1, 1, 1] and s.reads == 0
    log.applied_to(2)  # applied copies are dropped
    assert [e.index for e in log.stable] == [3]
    assert [e.index for e in log.slice(1, 4, None)] == [1, 2, 3] and s.reads == 1


def test_log_forgets_durable_copies_a_new_leader_replaces():
    s = CountingStorage()
    log = RaftLog(s, 1 << 20)
    log.append(ents(1, 1, 1, 1))
    persist(log, s)
    log.commit_to(1)
    assert log.maybe_append(2, 1, 1, ents(2, start=3)) == 3  # replaces 3 and 4
    assert [e.index for e in log.stable] == [1, 2]
    assert [(e.index, e.term) for e in log.slice(1, 4, None)] == [(1, 1), (2, 1), (3, 2)]
    assert log.last_index() == 3 and s.reads == 0
    persist(log, s)  # storage replaces the suffix too: the copies continue from there
    assert [(e.index, e.term) for e in log.stable] == [(1, 1), (2, 1), (3, 2)]


def test_log_keeps_durable_copies_within_their_byte_bound(monkeypatch):
    monkeypatch.setattr("aspen.raft.log.RAFT_STABLE_CACHE_BYTES", 1000)
    s = CountingStorage()
    log = RaftLog(s, 1 << 20)
    log.append([Entry(i, 1, data=b"x" * 100) for i in range(1, 21)])
    persist(log, s)
    assert 0 < log.stable_bytes <= 1000 and log.stable[-1].index == 20
    first_kept = log.stable[0].index
    assert first_kept > 1
    log.commit_to(20)
    assert [e.index for e in log.next_committed()] == list(range(1, 21))
    assert s.reads == 1  # the older ones from storage, the newest from memory


def test_log_maybe_append_checks_the_previous_entry_and_conflicts():
    log = RaftLog(MemoryStorage(), 1 << 20)
    log.append(ents(1, 2, 2))
    assert log.maybe_append(3, 3, 0, ents(3, start=4)) is None  # prev term mismatch
    assert log.maybe_append(1, 1, 2, ents(3, 3, start=2)) == 3
    assert [log.term(i) for i in (1, 2, 3)] == [1, 3, 3]
    assert log.committed == 2
    assert log.maybe_append(0, 0, 0, ents(7)) is None  # would rewrite committed entry 1


def test_log_find_conflict_by_term_skips_a_whole_term():
    log = RaftLog(MemoryStorage(), 1 << 20)
    log.append(ents(1, 1, 4, 4, 4, 4, 4))
    assert log.find_conflict_by_term(7, 2) == (2, 1)
    assert log.find_conflict_by_term(7, 5) == (7, 4)
    assert log.find_conflict_by_term(0, 0) == (0, 0)


def test_log_commits_only_entries_of_the_given_term():
    log = RaftLog(MemoryStorage(), 1 << 20)
    log.append(ents(1, 2))
    assert not log.maybe_commit(2, 3)
    assert log.maybe_commit(2, 2) and log.committed == 2
    with pytest.raises(ValueError):
        log.commit_to(5)


def test_log_next_committed_is_bounded_and_resumes():
    s = MemoryStorage()
    s.append([Entry(i, 1, data=b"x" * 100) for i in range(1, 6)])
    log = RaftLog(s, 250)
    log.commit_to(5)
    first = log.next_committed()
    assert [e.index for e in first] == [1, 2]
    log.accept_applying(2)
    assert [e.index for e in log.next_committed()] == [3, 4]


# --------------------------------------------------------------------------- progress
def test_inflights_bound_count_and_bytes():
    by_count = Inflights(2, 1 << 20)
    by_count.add(1, 10)
    assert not by_count.full()
    by_count.add(2, 10)
    assert by_count.full()
    by_count.free_le(1)
    assert not by_count.full() and len(by_count) == 1
    by_bytes = Inflights(100, 50)
    by_bytes.add(1, 30)
    assert not by_bytes.full()
    by_bytes.add(2, 30)
    assert by_bytes.full() and by_bytes.bytes == 60
    by_bytes.free_first()
    assert by_bytes.bytes == 30


def test_progress_probe_pauses_until_answered():
    pr = Progress(5, Inflights(4, 1000), is_learner=False)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(7, 10)
    assert pr.is_paused() and pr.next == 5  # probing does not run ahead
    assert pr.maybe_update(7) and not pr.is_paused()
    pr.become_replicate()
    pr.sent_entries(9, 10)
    assert pr.next == 10 and len(pr.inflights) == 1


def test_progress_back_off_ignores_stale_rejections():
    pr = Progress(10, Inflights(4, 1000), is_learner=False)
    assert not pr.maybe_decrease_to(5, 3)  # not the probe we sent (next - 1 == 9)
    assert pr.maybe_decrease_to(9, 3) and pr.next == 4
    pr.maybe_update(6)
    pr.become_replicate()
    assert not pr.maybe_decrease_to(6, 0)  # already matched
    assert pr.maybe_decrease_to(8, 0) and pr.next == 7


def test_progress_snapshot_state_resumes_after_the_snapshot():
    pr = Progress(3, Inflights(4, 1000), is_learner=False)
    pr.become_snapshot(20)
    assert pr.is_paused()
    pr.become_probe()
    assert pr.next == 21 and pr.state == ProgressState.PROBE


# --------------------------------------------------------------------------- quorum
def test_majority_and_committed_index():
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    matches = {"a": 5, "b": 3, "c": 9}
    assert committed_index(matches, matches.__getitem__) == 5
    matches["d"] = 4
    assert committed_index(matches, matches.__getitem__) == 4
    assert committed_index((), lambda v: 0) == 0


def test_vote_result():
    voters = ("a", "b", "c")
    assert vote_result(voters, {"a": True}) == VoteResult.PENDING
    assert vote_result(voters, {"a": True, "b": True}) == VoteResult.WON
    assert vote_result(voters, {"a": True, "b": False, "c": False}) == VoteResult.LOST
    assert vote_result(voters, {"x": True, "y": True}) == VoteResult.PENDING


# --------------------------------------------------------------------------- conf changes
def test_conf_change_round_trips_as_msgpack_array():
    cc = ConfChange(ConfChangeType.ADD_LEARNER, "n4", b"\x00ctx")
    data = encode_conf_change(cc)
    assert msgpack.unpackb(data, raw=False) == ["add_learner", "n4", b"\x00ctx"]
    assert decode_conf_change(data) == cc
    with pytest.raises(ValueError):
        decode_conf_change(b"\xc1garbage")
    with pytest.raises(ValueError):
        decode_conf_change(msgpack.packb(["explode", "n4", b""]))


@pytest.mark.parametrize(
    ("kind", "node", "problem"),
    [
        (ConfChangeType.ADD_LEARNER, "a", "already a voter"),
        (ConfChangeType.ADD_LEARNER, "l", "already a learner"),
        (ConfChangeType.PROMOTE, "a", "not a learner"),
        (ConfChangeType.REMOVE, "z", "not a member"),
        (ConfChangeType.ADD_LEARNER, "", "non-empty"),
    ],
)
def test_conf_change_problems(kind, node, problem):
    conf = ConfState(("a", "b"), ("l",))
    assert problem in conf_change_problem(conf, ConfChange(kind, node))


def test_removing_the_last_voter_is_refused():
    problem = conf_change_problem(ConfState(("a",)), ConfChange(ConfChangeType.REMOVE, "a"))
    assert "last voter" in problem


def test_apply_to_conf():
    conf = ConfState(("a", "b"))
    conf = apply_to_conf(conf, ConfChange(ConfChangeType.ADD_LEARNER, "c"))
    assert conf == ConfState(("a", "b"), ("c",))
    conf = apply_to_conf(conf, ConfChange(ConfChangeType.PROMOTE, "c"))
    assert conf == ConfState(("a", "b", "c"), ())
    conf = apply_to_conf(conf, ConfChange(ConfChangeType.REMOVE, "a"))
    assert conf == ConfState(("b", "c"), ())


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": ""}, "id"),
        ({"election_tick": 1, "heartbeat_tick": 1}, "election_tick"),
        ({"heartbeat_tick": 0}, "heartbeat_tick"),
        ({"max_inflight_msgs": 0}, "max_inflight_msgs"),
        ({"read_only": "fast"}, "read_only"),
        ({"read_only": "lease", "check_quorum": False}, "check_quorum"),
        ({"applied": -1}, "applied"),
    ],
)
def test_config_validation_names_the_bad_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        Config(**{"id": "a", **changes}).validate()

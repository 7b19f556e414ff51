"""The key-value linearizability checker and the history recorder."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from aspen.testing import linearizability
from aspen.testing.linearizability import CheckResult, HistoryRecorder, check_kv_history

Op = dict[str, Any]


def op(
    kind: str,
    call: float,
    ret: float | None,
    result: Any = None,
    *,
    client: int = 0,
    key: Any = b"k",
    ok: bool | None = True,
    **fields: Any,
) -> Op:
    """One history entry; ``ret=None`` makes the outcome unknown."""
    if ret is None:
        ok = None
    return {"client": client, "op": kind, "key": key, "call": call, "return": ret, "ok": ok,
            "result": result, **fields}  # fmt: skip


def put(value: Any, call: float, ret: float | None, **kw: Any) -> Op:
    """A put of ``value``."""
    return op("put", call, ret, value=value, **kw)


def get(result: Any, call: float, ret: float | None, **kw: Any) -> Op:
    """A get that read ``result``."""
    return op("get", call, ret, result, **kw)


def cas(expected: Any, new: Any, swapped: bool | None, call: float, ret: float | None, **kw: Any):
    """A compare-and-set ``expected -> new`` that did (or did not) swap."""
    return op("cas", call, ret, swapped, expected=expected, new=new, **kw)


def delete(call: float, ret: float | None, result: Any = None, **kw: Any) -> Op:
    """A delete."""
    return op("delete", call, ret, result, **kw)


def verdict(history: list[Op]) -> bool | None:
    """The checker's answer."""
    return check_kv_history(history, timeout=10).ok


# --- hand-written histories ----------------------------------------------------------------


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert verdict([]) is True
    history = [put(b"a", 0, 1), get(b"a", 2, 3), delete(4, 5, True), get(None, 6, 7)]
    result = check_kv_history(history)
    assert result.ok is True and bool(result) and "4 operations" in result.explanation


def test_stale_read_after_acknowledged_write() -> None:
    history = [put(b"a", 0, 1), put(b"b", 2, 3), get(b"a", 4, 5)]
    result = check_kv_history(history)
    assert result.ok is False and not result
    assert result.key == b"k"
    assert "get() -> b'a'" in result.explanation and "#2" in result.explanation


def test_lost_write() -> None:
    assert verdict([put(b"a", 0, 1), get(None, 2, 3)]) is False
    assert verdict([put(b"a", 0, 1), delete(2, 3), get(b"a", 4, 5)]) is False


def test_concurrent_writes_may_take_effect_in_either_order() -> None:
    writes = [put(b"a", 0, 3, client=1), put(b"b", 1, 2, client=2)]
    assert verdict([*writes, get(b"a", 4, 5)]) is True
    assert verdict([*writes, get(b"b", 4, 5)]) is True
    # ...but once both are done, the value cannot flip back and forth.
    assert verdict([*writes, get(b"a", 4, 5), get(b"b", 6, 7)]) is False


def test_reads_during_a_write_cannot_go_back_in_time() -> None:
    base = [put(b"a", 0, 1), put(b"b", 2, 10, client=1)]
    assert verdict([*base, get(b"a", 3, 4, client=2), get(b"b", 5, 6, client=2)]) is True
    assert verdict([*base, get(b"b", 3, 4, client=2), get(b"a", 5, 6, client=3)]) is False
    # Overlapping reads may see either value in either order.
    assert verdict([*base, get(b"b", 3, 6, client=2), get(b"a", 4, 5, client=3)]) is True


def test_equal_timestamps_count_as_concurrent() -> None:
    assert verdict([put(b"a", 0, 1), get(None, 1, 2)]) is True
    assert verdict([put(b"a", 0, 1), get(None, 1.5, 2)]) is False


def test_cas_races() -> None:
    racers = [cas(None, b"x", True, 0, 2, client=1), cas(None, b"y", False, 1, 3, client=2)]
    assert verdict([*racers, get(b"x", 4, 5)]) is True
    assert verdict([*racers, get(b"y", 4, 5)]) is False  # the loser's value
    both_won = [cas(None, b"x", True, 0, 2, client=1), cas(None, b"y", True, 1, 3, client=2)]
    assert verdict(both_won) is False
    # Both may win if one swaps back to the value the other compares against.
    chain = [cas(None, b"x", True, 0, 3, client=1), cas(b"x", b"y", True, 1, 3, client=2)]
    assert verdict([*chain, get(b"y", 4, 5)]) is True
    assert verdict([*chain, get(b"x", 4, 5)]) is False


def test_a_refused_cas_is_a_successful_operation_that_changes_nothing() -> None:
    history = [put(b"a", 0, 1), cas(b"z", b"b", False, 2, 3), get(b"a", 4, 5)]
    assert verdict(history) is True
    assert verdict([put(b"a", 0, 1), cas(b"a", b"b", False, 2, 3)]) is False
    assert verdict([put(b"a", 0, 1), cas(b"z", b"b", True, 2, 3)]) is False


def test_unknown_outcome_that_did_apply() -> None:
    history = [put(b"a", 0, 1), put(b"b", 2, None, client=1), get(b"b", 5, 6)]
    assert verdict(history) is True
    # It may take effect long after the client gave up on it.
    late = [put(b"a", 0, 1), put(b"b", 2, None, client=1), get(b"a", 5, 6), get(b"b", 7, 8)]
    assert verdict(late) is True


def test_unknown_outcome_that_did_not_apply() -> None:
    history = [put(b"a", 0, 1), put(b"b", 2, None, client=1), get(b"a", 5, 6), get(b"a", 7, 8)]
    assert verdict(history) is True
    # Once seen, it cannot be undone.
    undone = [put(b"a", 0, 1), put(b"b", 2, None, client=1), get(b"b", 5, 6), get(b"a", 7, 8)]
    assert verdict(undone) is False
    # It cannot take effect before it was called either.
    early = [put(b"a", 0, 1), get(b"b", 2, 3), put(b"b", 4, None, client=1)]
    assert verdict(early) is False


def test_a_history_of_unknown_outcomes_only_is_linearizable() -> None:
    assert verdict([put(b"a", 0, None), cas(b"a", b"b", None, 1, None), delete(2, None)]) is True


def test_ok_none_with_a_return_time_is_unknown_too() -> None:
    history = [put(b"a", 0, 1), put(b"b", 2, 3, ok=None), get(b"a", 5, 6), get(b"b", 7, 8)]
    assert verdict(history) is True


def test_unknown_cas_and_delete_may_or_may_not_apply() -> None:
    start = [put(b"a", 0, 1)]
    assert verdict([*start, cas(b"a", b"b", None, 2, None), get(b"b", 4, 5)]) is True
    assert verdict([*start, cas(b"a", b"b", None, 2, None), get(b"a", 4, 5)]) is True
    assert verdict([*start, cas(b"z", b"b", None, 2, None), get(b"b", 4, 5)]) is False
    assert verdict([*start, delete(2, None), get(None, 4, 5), get(b"a", 6, 7)]) is False


def test_definitely_failed_operations_are_ignored() -> None:
    history = [put(b"a", 0, 1), put(b"b", 2, 3, ok=False), get(b"a", 4, 5)]
    assert verdict(history) is True
    assert verdict([put(b"a", 0, 1), put(b"b", 2, 3, ok=False), get(b"b", 4, 5)]) is False


def test_a_read_of_a_value_never_written() -> None:
    result = check_kv_history([put(b"a", 0, 1), get(b"ghost", 2, 3, client=7)])
    assert result.ok is False and result.key == b"k"
    assert "never written" in result.explanation and "b'ghost'" in result.explanation
    assert "client 7" in result.explanation


def test_delete_results_are_checked_when_given() -> None:
    assert verdict([delete(0, 1, False), put(b"a", 2, 3), delete(4, 5, 1)]) is True
    assert verdict([delete(0, 1, True)]) is False
    assert verdict([put(b"a", 0, 1), delete(2, 3, 0)]) is False


def test_str_and_bytes_are_the_same_key_and_value() -> None:
    assert verdict([put("a", 0, 1, key="k"), get(b"a", 2, 3, key=b"k")]) is True
    assert verdict([put("a", 0, 1, key="k"), get(b"b", 2, 3, key=b"k")]) is False


def test_invalid_histories_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown op"):
        check_kv_history([op("incr", 0, 1)])
    with pytest.raises(ValueError, match="before its call"):
        check_kv_history([put(b"a", 2, 1)])


# --- P-compositionality --------------------------------------------------------------------


def test_keys_are_independent() -> None:
    # Each key alone is fine; a checker that ignored keys would see b'a' overwritten.
    history = [
        put(b"a", 0, 1, key="x"),
        put(b"b", 0, 1, key="y"),
        get(b"a", 2, 3, key="x"),
        get(b"b", 2, 3, key="y"),
        delete(4, 5, key="y"),
        get(b"a", 6, 7, key="x"),
    ]
    assert verdict(history) is True


def test_the_smallest_failing_key_is_reported() -> None:
    big_bad = [put(b"a", 0, 1, key="big"), put(b"b", 2, 3, key="big"), get(b"a", 4, 5, key="big")]
    small_bad = [put(b"a", 0, 1, key="small"), get(None, 2, 3, key="small")]
    fine = [put(b"a", 0, 1, key="fine"), get(b"a", 2, 3, key="fine")]
    result = check_kv_history(big_bad + fine + small_bad)
    assert result.ok is False and result.key == b"small"
    assert "2 operations" in result.explanation and "b'b'" not in result.explanation


# --- budget --------------------------------------------------------------------------------


def _pathological(n: int) -> list[Op]:
    """n concurrent writes of values all read later, then two reads that cannot both hold.

    Every order of the writes must be tried before giving up: about n * 2**n configurations.
    """
    writes = [put(f"v{i}", 0, 1, client=i) for i in range(n)]
    reads = [get(f"v{i}", 2 + i, 2.5 + i, client=n) for i in range(n)]
    return writes + reads


def test_the_time_budget_gives_unknown_not_a_hang() -> None:
    started = time.monotonic()
    result = check_kv_history(_pathological(40), timeout=0.2)
    assert result.ok is None and not result and "time budget" in result.explanation
    assert time.monotonic() - started < 5


def test_the_configuration_bound_gives_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linearizability, "MAX_CONFIGURATIONS", 1000)
    result = check_kv_history(_pathological(40))
    assert result.ok is None and "MAX_CONFIGURATIONS" in result.explanation


def test_keys_left_when_time_runs_out_are_unknown_but_cheap_checks_still_run() -> None:
    pathological = [{**e, "key": "slow"} for e in _pathological(40)]
    later = [put(b"a", t, t + 0.5, key="later") for t in range(90)]
    result = check_kv_history(pathological + later, timeout=0.1)
    assert result.ok is None and "time budget" in result.explanation
    assert "'later': not searched" in result.explanation
    bad = [put(b"a", 0, 1, key="zz"), *(get(b"ghost", t, t + 1, key="zz") for t in range(90))]
    result = check_kv_history(pathological + bad, timeout=0.1)
    assert result.ok is False and result.key == b"zz" and "never written" in result.explanation


def test_oversized_partitions_give_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linearizability, "MAX_PARTITION_OPS", 3)
    history = [put(b"a", i, i + 0.5) for i in range(4)] + [put(b"a", 0, 1, key="other")]
    result = check_kv_history(history)
    assert result.ok is None and "MAX_PARTITION_OPS" in result.explanation
    # A definite failure elsewhere still wins over "unknown".
    result = check_kv_history([*history, get(None, 0, 1, key="bad"), get(b"a", 0, 1, key="bad")])
    assert result.ok is False and result.key == b"bad"


# --- randomized comparison with a brute-force checker --------------------------------------


def _sequential(order: list[Op]) -> bool:
    """Run ``order`` against a plain dict; True if every known result matches."""
    store: dict[Any, Any] = {}
    for entry in order:
        key, kind, known = entry["key"], entry["op"], entry["ok"] is True
        current = store.get(key)
        if kind == "get":
            if known and current != entry["result"]:
                return False
        elif kind == "put":
            store[key] = entry["value"]
        elif kind == "delete":
            if known and entry["result"] is not None and entry["result"] != (current is not None):
                return False
            store.pop(key, None)
        else:
            swapped = current == entry["expected"]
            if known and swapped != entry["result"]:
                return False
            if swapped:
                store[key] = entry["new"]
    return True


def _orders(ops: list[Op]) -> Iterator[list[Op]]:
    """Every total order of ``ops`` that respects real time (unknown returns at +inf)."""
    if not ops:
        yield []
        return
    end = [math.inf if o["ok"] is None else o["return"] for o in ops]
    for i, first in enumerate(ops):
        if all(not end[j] < first["call"] for j in range(len(ops)) if j != i):
            for rest in _orders(ops[:i] + ops[i + 1 :]):
                yield [first, *rest]


def brute_force(history: list[Op]) -> bool:
    """Whole-history (no partitioning) search over subsets of unknown ops and all orders."""
    ops = [o for o in history if o["ok"] is not False]
    unknown = [o for o in ops if o["ok"] is None]
    certain = [o for o in ops if o["ok"] is True]
    for mask in range(1 << len(unknown)):
        chosen = certain + [o for b, o in enumerate(unknown) if mask >> b & 1]
        if any(_sequential(order) for order in _orders(chosen)):
            return True
    return False


def random_history(rng: random.Random, size: int) -> list[Op]:
    """Arbitrary small history on two keys and three values, with integer times (ties)."""
    history = []
    for _ in range(size):
        call = rng.randint(0, 8)
        ret = call + rng.randint(0, 4)
        ok = rng.choices([True, None, False], weights=[8, 2, 1])[0]
        kind = rng.choice(["put", "get", "get", "delete", "cas"])
        key, value = rng.choice("ab"), rng.choice(["x", "y", None])
        entry = op(kind, call, ret if ok is not None else None, ok=ok, key=key)
        if kind == "put":
            entry["value"] = value or "z"
        elif kind == "get":
            entry["result"] = value
        elif kind == "delete":
            entry["result"] = rng.choice([None, True, False])
        else:
            entry |= {"expected": value, "new": rng.choice("xy"), "result": rng.random() < 0.5}
        history.append(entry)
    return history


def simulated_history(
    rng: random.Random, size: int, clients: int, keys: int, values: int = 0, lost: float = 0.03
) -> list[Op]:
    """A linearizable history: each op takes effect at a random instant inside its interval.

    A fraction ``lost`` of the ops time out (unknown outcome; they apply at some later
    time, or never) and as many fail.
    ``values`` > 0 draws values from a small set, so equal values recur.
    """
    clock = [0.0] * clients
    planned: list[tuple[float, Op]] = []
    history: list[Op] = []
    for n in range(size):
        client = min(range(clients), key=clock.__getitem__)
        call = clock[client] + rng.random() * 0.01
        ret = call + rng.expovariate(100)
        kind = rng.choice(["put", "get", "get", "delete", "cas", "cas"])
        value = f"v{rng.randrange(values) if values else n}"
        entry = op(kind, call, ret, client=client, key=f"key{rng.randrange(keys)}")
        if kind == "put":
            entry["value"] = value
        elif kind == "cas":
            entry |= {"expected": rng.choice([None, *(f"v{i}" for i in range(max(values, n)))])}
            entry["new"] = value
        fate = rng.random()
        if fate < lost:  # definitely failed
            entry["ok"] = False
        elif fate < 2 * lost:  # timed out; maybe applied, possibly much later
            entry["ok"] = entry["return"] = None
            if rng.random() < 0.5:
                planned.append((call + rng.expovariate(10), entry))
        else:
            planned.append((rng.uniform(call, ret), entry))
        clock[client] = ret
        history.append(entry)
    store: dict[str, Any] = {}
    for _, entry in sorted(planned, key=lambda p: p[0]):
        key, current = entry["key"], store.get(entry["key"])
        if entry["op"] == "get":
            entry["result"] = current
        elif entry["op"] == "put":
            store[key] = entry["value"]
        elif entry["op"] == "delete":
            entry["result"] = store.pop(key, None) is not None
        elif current == entry["expected"]:
            store[key] = entry["new"]
            entry["result"] = True
        else:
            entry["result"] = False
        if entry["ok"] is None:
            entry["result"] = None
    return history


def mutated(rng: random.Random, history: list[Op]) -> list[Op]:
    """Change the result of one completed operation (often, not always, a violation)."""
    entry = rng.choice(history)
    if entry["ok"] is True:
        if entry["op"] == "get":
            entry["result"] = rng.choice([None, "v0", "v1", "v2"])
        elif entry["op"] in ("cas", "delete"):
            entry["result"] = not entry["result"]
    return history


@pytest.mark.parametrize("seed", range(10))
def test_agrees_with_brute_force_on_random_small_histories(seed: int) -> None:
    rng = random.Random(seed)
    seen = {True: 0, False: 0}
    for n in range(90):
        if n % 3 == 0:
            history = random_history(rng, rng.randint(1, 7))
        else:
            lost = rng.choice([0.05, 0.15, 0.3])
            size, clients, keys = rng.randint(2, 7), rng.randint(2, 4), rng.randint(1, 2)
            history = simulated_history(rng, size, clients, keys, values=3, lost=lost)
            if n % 3 == 2:
                history = mutated(rng, history)
        expected = brute_force(history)
        assert verdict(history) is expected, history
        seen[expected] += 1
    assert seen[True] and seen[False]


@pytest.mark.parametrize(
    ("clients", "keys", "values", "lost"),
    [(6, 2, 3, 0.1), (6, 2, 0, 0.1), (10, 1, 2, 0.2), (3, 1, 0, 0.4)],
)
def test_simulated_histories_are_linearizable(clients: int, keys: int, values: int, lost: float):
    rng = random.Random(clients * 100 + values)
    for _ in range(10):
        history = simulated_history(rng, 300, clients, keys, values, lost)
        result = check_kv_history(history, timeout=10)
        assert result.ok is True, result.explanation


# --- performance ---------------------------------------------------------------------------


def test_a_large_linearizable_history_checks_fast() -> None:
    history = simulated_history(random.Random(7), 2000, clients=8, keys=20)
    started = time.monotonic()
    result = check_kv_history(history)
    elapsed = time.monotonic() - started
    assert result.ok is True, result.explanation
    assert elapsed < 3, f"{elapsed:.2f}s"


def test_a_large_history_with_one_read_from_the_future_is_refuted_fast() -> None:
    history = simulated_history(random.Random(8), 2000, clients=8, keys=20)
    reads = [e for e in history if e["op"] == "get" and e["ok"]]
    victim = reads[len(reads) // 2]
    future = next(
        e for e in history
        if e["op"] == "put" and e["key"] == victim["key"] and e["call"] > victim["return"]
    )  # fmt: skip
    victim["result"] = future["value"]
    started = time.monotonic()
    result = check_kv_history(history)
    elapsed = time.monotonic() - started
    assert result.ok is False and result.key == victim["key"].encode()
    assert f"#{history.index(victim)} " in result.explanation
    assert elapsed < 3, f"{elapsed:.2f}s"


# --- the recorder --------------------------------------------------------------------------


class _Register:
    """A locked dict: linearizable by construction."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, str] = {}

    def put(self, key: str, value: str) -> None:
        with self.lock:
            self.data[key] = value

    def get(self, key: str) -> str | None:
        with self.lock:
            return self.data.get(key)

    def cas(self, key: str, expected: str | None, new: str) -> bool:
        with self.lock:
            if self.data.get(key) != expected:
                return False
            self.data[key] = new
            return True


def _client_ops(rec: HistoryRecorder, reg: _Register, client: int, rng: random.Random) -> None:
    """A few random operations on ``reg``, recorded."""
    for n in range(50):
        key, value = f"k{rng.randrange(3)}", f"{client}-{n}"
        choice = rng.randrange(3)
        if choice == 0:
            h = rec.invoke(client, "put", key=key, value=value)
            reg.put(key, value)
            h.ok()
        elif choice == 1:
            h = rec.invoke(client, "get", key=key)
            h.ok(reg.get(key))
        else:
            expected = reg.get(key)
            h = rec.invoke(client, "cas", key=key, expected=expected, new=value)
            h.ok(reg.cas(key, expected, value))


def test_recorder_from_threads() -> None:
    rec, reg = HistoryRecorder(), _Register()
    threads = [
        threading.Thread(target=_client_ops, args=(rec, reg, c, random.Random(c))) for c in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    history = rec.history()
    assert len(history) == len(rec) == 300
    assert all(e["ok"] is True and e["return"] >= e["call"] for e in history)
    assert check_kv_history(history).ok is True


@pytest.mark.anyio
async def test_recorder_from_tasks() -> None:
    rec, reg = HistoryRecorder(), _Register()

    async def client(c: int) -> None:
        for n in range(20):
            h = rec.invoke(c, "put", key="k", value=f"{c}-{n}")
            await anyio.sleep(0)
            reg.put("k", f"{c}-{n}")
            h.ok()
            h = rec.invoke(c, "get", key="k")
            await anyio.sleep(0)
            h.ok(reg.get("k"))

    async with anyio.create_task_group() as tg:
        for c in range(4):
            tg.start_soon(client, c)
    assert check_kv_history(rec.history()).ok is True


def test_recorder_outcomes() -> None:
    ticks = iter(range(100))
    rec = HistoryRecorder(clock=lambda: float(next(ticks)))
    rec.invoke(1, "put", key="k", value="a").ok()
    rec.invoke(1, "put", key="k", value="b").fail()
    rec.invoke(2, "put", key="k", value="c").unknown()
    with rec.invoke(3, "get", key="k") as h:
        h.ok("a")
    with pytest.raises(TimeoutError), rec.invoke(3, "get", key="k"):
        raise TimeoutError
    pending = rec.invoke(4, "delete", key="k")
    history = rec.history()
    assert [(e["ok"], e["return"]) for e in history] == [
        (True, 1.0), (False, 3.0), (None, None), (True, 6.0), (None, None), (None, None),
    ]  # fmt: skip
    assert history[0]["call"] == 0.0 and history[3]["result"] == "a"
    assert not pending.done and "ok" not in pending._entry  # history() copies
    with pytest.raises(RuntimeError, match="already completed"):
        h.ok("again")
    with pytest.raises(ValueError, match="unknown op"):
        rec.invoke(1, "incr", key="k")
    assert isinstance(check_kv_history(history), CheckResult)

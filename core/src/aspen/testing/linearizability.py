"""A linearizability checker for key-value histories (Wing & Gong search, Lowe's improvements).

A *history* is a list of dicts, one per client operation::

    {"client": 1, "op": "put", "key": b"k", "value": b"v", "call": 0.0, "return": 0.2,
     "ok": True, "result": None}

``op`` is ``put`` (``value``), ``get`` (``result`` is the value read, ``None`` if absent),
``delete`` or ``cas`` (``expected``, ``new``; ``result`` True if it swapped, False if the
comparison failed; ``expected=None`` means "the key is absent"). ``ok`` True: the operation
completed with ``result``. ``ok`` False: it definitely did not take effect (dropped).
``ok`` None or ``return`` None: the outcome is unknown, it may have taken effect at any time
after ``call`` (its return is treated as +infinity, as in Jepsen and Porcupine). A
``delete`` whose ``result`` is a bool or int is also checked against "the key existed".

Keys and values may be str or bytes (str is compared as its UTF-8 bytes). Operations with
equal timestamps count as concurrent.

Keys are independent, so the history is split by key (P-compositionality) and each key is
searched separately, smallest first: a Wing & Gong search with Lowe's just-in-time
candidates and memoised configurations, plus the reductions listed on ``_Search``. Each key
is bounded by :data:`MAX_PARTITION_OPS` and :data:`MAX_CONFIGURATIONS`, the whole check by
``timeout``; past a bound the verdict is unknown rather than a hang.
:func:`check_kv_history` is the entry point; :class:`HistoryRecorder` builds histories from
threads or async tasks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_CONFIGURATIONS",
    "MAX_PARTITION_OPS",
    "CheckResult",
    "HistoryRecorder",
    "OpHandle",
    "check_kv_history",
]

#: Partitions (keys) with more operations than this are not searched; the result is unknown.
MAX_PARTITION_OPS = 20_000
#: Default wall-clock budget, in seconds, for one :func:`check_kv_history` call.
DEFAULT_TIMEOUT = 30.0
#: A key whose search explores more configurations than this is unknown (bounds memory:
#: about 100 bytes each).
MAX_CONFIGURATIONS = 3_000_000
#: At most this many operations are listed in a failure explanation.
_EXPLAIN_OPS = 30
#: Search steps between two looks at the clock.
_CLOCK_EVERY = 2048

_OPS = ("put", "get", "delete", "cas")
_PUT, _GET, _DELETE, _CAS = range(4)
_ANY = object()  # "result not checked"


@dataclass(frozen=True)
class CheckResult:
    """Verdict: ``ok`` True (linearizable), False (not), None (unknown: search bound hit)."""

    ok: bool | None
    explanation: str = ""
    key: Any = None

    def __bool__(self) -> bool:
        """True only for a definite "linearizable"."""
        return self.ok is True


@dataclass(frozen=True)
class _Op:
    """One operation of a partition, normalised."""

    index: int  # position in the caller's history
    kind: int
    arg: Any  # put: value; cas: (expected, new)
    result: Any  # _ANY when not checked
    call: float
    ret: float  # math.inf when the outcome is unknown
    raw: Mapping[str, Any]


def _norm(value: Any) -> Any:
    """Make values comparable and hashable: str and buffers become bytes."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _step(state: Any, op: _Op) -> tuple[bool, Any]:
    """Apply ``op`` to a register holding ``state``; return (result matches, new state)."""
    kind, want = op.kind, op.result
    if kind == _GET:
        return state == want, state
    if kind == _PUT:
        return True, op.arg
    if kind == _DELETE:
        return want is _ANY or bool(want) == (state is not None), None
    swapped = state == op.arg[0]
    return want is _ANY or want == swapped, (op.arg[1] if swapped else state)


def _parse(history: Iterable[Mapping[str, Any]]) -> dict[Any, list[_Op]]:
    """Validate and normalise ``history``; group the operations that matter by key."""
    parts: dict[Any, list[_Op]] = {}
    for index, entry in enumerate(history):
        name = entry.get("op")
        if name not in _OPS:
            raise ValueError(f"history[{index}]: unknown op {name!r}")
        kind = _OPS.index(name)
        ok, ret = entry.get("ok"), entry.get("return")
        if ok is False:
            continue  # definitely not applied
        unknown = ok is None or ret is None
        if unknown and kind == _GET:
            continue  # a read that may not have happened constrains nothing
        if kind == _PUT:
            arg: Any = _norm(entry["value"])
        elif kind == _CAS:
            arg = (_norm(entry.get("expected")), _norm(entry["new"]))
        else:
            arg = None
        result: Any = _ANY
        if not unknown:
            result = entry.get("result")
            if kind == _GET:
                result = _norm(result)
            elif kind == _CAS and not isinstance(result, bool):
                raise ValueError(f"history[{index}]: a completed cas needs a bool result")
            elif kind == _DELETE:
                result = bool(result) if isinstance(result, bool | int) else _ANY
            elif kind == _PUT:
                result = _ANY
        call = float(entry["call"])
        end = math.inf if unknown else float(ret)  # type: ignore[arg-type]
        if end < call:
            raise ValueError(f"history[{index}]: returns ({end}) before its call ({call})")
        op = _Op(index, kind, arg, result, call, end, entry)
        parts.setdefault(_norm(entry["key"]), []).append(op)
    return parts


def _describe(op: _Op) -> str:
    """One line for an explanation."""
    raw = op.raw
    name = _OPS[op.kind]
    if op.kind == _PUT:
        args = f"{raw['value']!r}"
    elif op.kind == _CAS:
        args = f"{raw.get('expected')!r} -> {raw['new']!r}"
    else:
        args = ""
    if op.ret == math.inf:
        outcome, end = "outcome unknown", "?"
    else:
        outcome, end = f"-> {raw.get('result')!r}", f"{op.ret:.6f}"
    client = raw.get("client", "?")
    return f"#{op.index} client {client}: {name}({args}) {outcome} [{op.call:.6f}, {end}]"


class _OutOfBudget(Exception):
    """The search hit its time or memory bound."""


@dataclass
class _Failure:
    """Where the deepest branch of a failed search got stuck."""

    prefix: list[_Op]
    state: Any
    blocked: _Op


class _Events:
    """Call and return events of the known-outcome ops: a doubly linked list in time order.

    Event 0 is the head sentinel and ``n + 1`` the tail; calls sort before returns at equal
    times, so operations that touch count as concurrent.
    """

    def __init__(self, known: list[_Op]) -> None:
        calls = [(op.call, 0, i) for i, op in enumerate(known)]
        events = sorted(calls + [(op.ret, 1, i) for i, op in enumerate(known)])
        n = len(events)
        self.nxt = [*range(1, n + 2), n + 1]
        self.prv = [0, *range(0, n + 1)]
        self.op_of = [-1] * (n + 2)
        self.is_call = [False] * (n + 2)
        self.pair = [(0, 0)] * len(known)  # op -> (call event, return event)
        for pos, (_, kind, i) in enumerate(events, start=1):
            self.op_of[pos] = i
            self.is_call[pos] = kind == 0
            self.pair[i] = (pos, self.pair[i][1]) if kind == 0 else (self.pair[i][0], pos)

    def lift(self, i: int) -> None:
        """Take op ``i``'s call and return out of the list."""
        nxt, prv = self.nxt, self.prv
        for e in self.pair[i]:
            nxt[prv[e]], prv[nxt[e]] = nxt[e], prv[e]

    def unlift(self, i: int) -> None:
        """Undo the most recent :meth:`lift`, of op ``i``."""
        nxt, prv = self.nxt, self.prv
        for e in reversed(self.pair[i]):
            nxt[prv[e]] = prv[nxt[e]] = e


class _Unknowns:
    """Unknown-outcome ops, looked up by what could make them worth linearising.

    Ops with the same effect are interchangeable and the one called first can stand in for
    any other wherever that one could go, so only the first unused one of a kind is tried.
    """

    def __init__(self, maybe: list[_Op]) -> None:
        self.ops = maybe  # sorted by call
        self.blind: dict[tuple[int, Any], list[int]] = {}  # (kind, value) -> ops
        self.cas: dict[Any, dict[Any, list[int]]] = {}  # expected -> new -> ops
        for j, op in enumerate(maybe):
            if op.kind == _CAS:
                self.cas.setdefault(op.arg[0], {}).setdefault(op.arg[1], []).append(j)
            else:
                self.blind.setdefault((op.kind, op.arg), []).append(j)

    def candidates(self, state: Any, umask: int, before: float, after_unknown: bool) -> list[int]:
        """Unknown ops called by ``before``, not yet linearised, that would change ``state``."""
        groups = [] if after_unknown else [g for (_, v), g in self.blind.items() if v != state]
        groups += [g for new, g in self.cas.get(state, {}).items() if new != state]
        out = []
        for group in groups:
            for j in group:
                if not umask >> j & 1:
                    if self.ops[j].call <= before:
                        out.append(j)
                    break
        return out


class _Unread:
    """Stands for every value that no get returns and no CAS expects: they act alike."""

    def __repr__(self) -> str:
        """Shown in explanations."""
        return "<a value never read>"


_UNREAD = _Unread()


def _abstract(ops: list[_Op]) -> list[_Op]:
    """Replace the values written that nothing reads by :data:`_UNREAD`."""
    read = {op.result for op in ops if op.kind == _GET}
    read |= {op.arg[0] for op in ops if op.kind == _CAS}
    out = []
    for op in ops:
        if op.kind == _PUT and op.arg not in read:
            op = replace(op, arg=_UNREAD)
        elif op.kind == _CAS and op.arg[1] not in read:
            op = replace(op, arg=(op.arg[0], _UNREAD))
        out.append(op)
    return out


def _first_visit(seen: dict[Any, list[int]], key: Any, umask: int) -> bool:
    """Record (key, umask) unless an explored configuration with a subset of umask covers it."""
    explored = seen.get(key)
    if explored is None:
        seen[key] = [umask]
        return True
    for other in explored:
        if not other & ~umask:
            return False
    explored[:] = [other for other in explored if umask & ~other]  # drop what umask covers
    explored.append(umask)
    return True


class _Search:
    """Wing & Gong search over one partition, with Lowe's just-in-time candidates.

    A configuration is (known ops linearised, state, unknown ops linearised); one is skipped
    when an explored one has the same known set and state and a subset of its unknown ops
    (it can do all the other can). The candidates at a configuration are the known ops
    called before the first pending return, earliest return first, then unknown-outcome ops
    (return at +infinity). Pruning, each sound because what a skipped branch could do an
    explored one can do too:

    * a *reader* (get, refused CAS, delete of an absent key) never changes the state, so
      if one can go now it goes first and alone;
    * of pending known ops with the same effect, only the one returning first is tried;
    * an unknown op that leaves the state as it is, is never linearised;
    * right after an unknown op no *blind* write (put, unchecked delete) is tried: it would
      hide the unknown op's effect, and the parent reaches the same state directly.
    """

    def __init__(self, ops: list[_Op], deadline: float) -> None:
        ops = _abstract(ops)
        self.known = sorted((op for op in ops if op.ret != math.inf), key=lambda op: op.call)
        maybe = sorted((op for op in ops if op.ret == math.inf), key=lambda op: op.call)
        self.unknowns = _Unknowns(maybe)
        self.events = _Events(self.known)
        self.reader = [op.kind == _GET or op.result is False for op in self.known]
        self.blind = [op.kind == _PUT or op.result is _ANY for op in self.known]
        self.effect = [(op.kind, op.arg, op.result) for op in self.known]
        self.deadline = deadline

    def candidates(self, state: Any, umask: int, after_unknown: bool) -> tuple[list[int], int]:
        """Ops worth trying next, best first (known ``i``, unknown ``~j``), and the known
        op that must return first (or the forced reader)."""
        known, events = self.known, self.events
        nxt, op_of, is_call = events.nxt, events.op_of, events.is_call
        best: dict[Any, int] = {}
        e = nxt[0]
        while is_call[e]:
            i = op_of[e]
            if self.reader[i]:
                if _step(state, known[i])[0]:
                    return [i], i
            elif not (after_unknown and self.blind[i]):
                other = best.get(self.effect[i])
                if other is None or known[i].ret < known[other].ret:
                    best[self.effect[i]] = i
            e = nxt[e]
        first = op_of[e]
        out = sorted(best.values(), key=lambda i: known[i].ret)
        before = known[first].ret if first >= 0 else math.inf  # -1: no known op pending
        maybe = self.unknowns.candidates(state, umask, before, after_unknown)
        return out + [~j for j in maybe], first

    def run(self) -> _Failure | None:
        """None if the partition is linearizable, else the deepest dead end found."""
        known, maybe, events = self.known, self.unknowns.ops, self.events
        state: Any = None
        base = rest = umask = 0  # known ops linearised: the first ``base`` by call, + ``rest``
        after_unknown = False  # the last op linearised has an unknown outcome
        seen: dict[tuple[int, int, Any], list[int]] = {}  # -> unknown-op sets explored
        stack: list[tuple[list[int], int, int, Any, int, int, int, bool]] = []
        best: _Failure | None = None
        known_left = len(known)
        cands, first = self.candidates(state, umask, after_unknown)
        pos = steps = 0
        while known_left:
            steps += 1
            if steps % _CLOCK_EVERY == 0:
                if time.monotonic() > self.deadline:
                    raise _OutOfBudget(f"the time budget ran out after {len(seen)} configurations")
                if len(seen) > MAX_CONFIGURATIONS:
                    raise _OutOfBudget("the search exceeded MAX_CONFIGURATIONS")
            if pos < len(cands):
                c = cands[pos]
                matches, new_state = _step(state, known[c] if c >= 0 else maybe[~c])
                if matches:
                    if c >= 0:
                        new_rest = rest | (1 << (c - base))
                        shift = (~new_rest & (new_rest + 1)).bit_length() - 1  # trailing ones
                        new_base, new_rest, new_umask = base + shift, new_rest >> shift, umask
                    else:
                        new_base, new_rest, new_umask = base, rest, umask | (1 << ~c)
                    if _first_visit(seen, (new_base, new_rest, new_state), new_umask):
                        stack.append((cands, first, pos, state, base, rest, umask, after_unknown))
                        state, base, rest, umask = new_state, new_base, new_rest, new_umask
                        after_unknown = c < 0
                        if c >= 0:
                            known_left -= 1
                            events.lift(c)
                        cands, first = self.candidates(state, umask, after_unknown)
                        pos = 0
                        continue
                pos += 1
                continue
            if best is None or len(stack) > len(best.prefix):  # dead end: backtrack
                prefix = [
                    known[f[0][f[2]]] if f[0][f[2]] >= 0 else maybe[~f[0][f[2]]] for f in stack
                ]
                best = _Failure(prefix, state, known[first])
            if not stack:
                return best
            cands, first, pos, state, base, rest, umask, after_unknown = stack.pop()
            if cands[pos] >= 0:
                known_left += 1
                events.unlift(cands[pos])
            pos += 1
        return None


def _never_written(ops: list[_Op]) -> _Op | None:
    """A read or successful CAS comparing against a value no operation ever writes."""
    written = {None} | {
        op.arg if op.kind == _PUT else op.arg[1] for op in ops if op.kind in (_PUT, _CAS)
    }
    for op in ops:
        if op.kind == _GET and op.result not in written:
            return op
        if op.kind == _CAS and op.result is True and op.arg[0] not in written:
            return op
    return None


def _explain(key: Any, ops: list[_Op], failure: _Failure) -> str:
    """Say why partition ``key`` is not linearizable: where the search got stuck, and the
    operations around that point."""
    blocked, prefix = failure.blocked, failure.prefix
    original = {op.index: op for op in ops}
    state = None
    for op in prefix:  # replay with the real values (the search abstracts unread ones)
        state = _step(state, original[op.index])[1]
    lines = [f"key {key!r}: {len(ops)} operations are not linearizable."]
    if prefix:
        tail = prefix[-10:]
        more = f" (the last {len(tail)} shown)" if len(prefix) > len(tail) else ""
        lines.append(f"At most {len(prefix)} ops can be linearised{more}, leaving {state!r}:")
        lines += [f"  {_describe(op)}" for op in tail]
    lines.append(f"and then nothing can take effect before this returns:\n  {_describe(blocked)}")
    recent = [op.call for op in prefix if op.ret != math.inf][-3:]
    start = min([blocked.call, *recent])
    around = [
        op
        for op in ops
        if start <= op.ret and op.call <= blocked.ret and (op.ret != math.inf or op.call >= start)
    ]
    around.sort(key=lambda op: (op.call, op.index))
    lines.append(f"Operations on the key around that point ({len(around)}):")
    lines += [f"  {_describe(op)}" for op in around[:_EXPLAIN_OPS]]
    if len(around) > _EXPLAIN_OPS:
        lines.append(f"  ... and {len(around) - _EXPLAIN_OPS} more")
    return "\n".join(lines)


def check_kv_history(
    history: Iterable[Mapping[str, Any]], *, timeout: float = DEFAULT_TIMEOUT
) -> CheckResult:
    """Check that ``history`` is linearizable for a put/get/delete/CAS key-value store.

    Keys are checked smallest first; the first failing one is explained. If a key is too
    big (:data:`MAX_PARTITION_OPS`) or the ``timeout`` runs out, and no key fails, the
    verdict is unknown (``ok`` None).
    """
    deadline = time.monotonic() + timeout
    parts = _parse(history)
    unknown: list[str] = []
    for key, ops in sorted(parts.items(), key=lambda kv: len(kv[1])):
        stale = _never_written(ops)
        if stale is not None:
            what = "reads" if stale.kind == _GET else "compares against"
            return CheckResult(
                False, f"key {key!r}: {_describe(stale)} {what} a value never written", key
            )
        if len(ops) > MAX_PARTITION_OPS:
            unknown.append(f"key {key!r}: {len(ops)} operations exceed MAX_PARTITION_OPS")
            continue
        if time.monotonic() > deadline:
            unknown.append(f"key {key!r}: not searched, the time budget ran out")
            continue
        try:
            failure = _Search(ops, deadline).run()
        except _OutOfBudget as exc:
            unknown.append(f"key {key!r}: {exc}")
            continue
        if failure is not None:
            return CheckResult(False, _explain(key, ops, failure), key)
    if unknown:
        return CheckResult(
            None, f"unknown: {len(unknown)} keys not decided: " + "; ".join(unknown[:5])
        )
    total = sum(len(ops) for ops in parts.values())
    return CheckResult(True, f"linearizable: {total} operations over {len(parts)} keys")


class OpHandle:
    """One invoked operation of a :class:`HistoryRecorder`; complete it exactly once."""

    def __init__(self, recorder: HistoryRecorder, entry: dict[str, Any]) -> None:
        self._recorder = recorder
        self._entry = entry

    @property
    def done(self) -> bool:
        """Whether ok/fail/unknown was called."""
        return "ok" in self._entry

    def ok(self, result: Any = None) -> None:
        """The operation completed and returned ``result``."""
        self._recorder._complete(self._entry, True, result)

    def fail(self) -> None:
        """The operation definitely did not take effect."""
        self._recorder._complete(self._entry, False, None)

    def unknown(self) -> None:
        """The outcome is unknown (timeout, lost connection, crashed node)."""
        self._recorder._complete(self._entry, None, None)

    def __enter__(self) -> OpHandle:
        """Use as ``with rec.invoke(...) as h:``; an uncompleted op becomes unknown on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Mark the operation unknown if nobody completed it."""
        if not self.done:
            self.unknown()


class HistoryRecorder:
    """Collects a history from many threads or async tasks (never blocks for long)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def invoke(self, client: int, op: str, **fields: Any) -> OpHandle:
        """Record the call of ``op`` (``key=``, ``value=``, ``expected=``, ``new=``) now."""
        if op not in _OPS:
            raise ValueError(f"unknown op {op!r}")
        entry = {"client": client, "op": op, **fields}
        with self._lock:
            entry["call"] = self._clock()
            self._entries.append(entry)
        return OpHandle(self, entry)

    def _complete(self, entry: dict[str, Any], ok: bool | None, result: Any) -> None:
        """Record a return (or its absence, when ``ok`` is None)."""
        with self._lock:
            if "ok" in entry:
                raise RuntimeError(f"operation already completed: {entry!r}")
            entry["return"] = None if ok is None else self._clock()
            entry["ok"] = ok
            entry["result"] = result

    def history(self) -> list[dict[str, Any]]:
        """A copy of the history so far; operations still running count as unknown."""
        with self._lock:
            return [
                {**entry}
                if "ok" in entry
                else {**entry, "return": None, "ok": None, "result": None}
                for entry in self._entries
            ]

    def __len__(self) -> int:
        """Number of operations invoked."""
        with self._lock:
            return len(self._entries)

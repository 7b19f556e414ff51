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

Keys are independent, so the history is split by key (P-compositionality) and each part is
searched separately, memoising (linearised-set, state) pairs and trying operations just in
time over a linked list of call and return events. :func:`check_kv_history` is the entry
point; :class:`HistoryRecorder` builds histories from threads or async tasks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TIMEOUT",
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
        end = math.inf if unknown else float(ret)
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


class _Timeout(Exception):
    """The time budget ran out."""


@dataclass
class _Failure:
    """Where the deepest branch of a failed search got stuck."""

    prefix: list[_Op]
    state: Any
    blocked: _Op


def _search(ops: list[_Op], deadline: float) -> _Failure | None:
    """Wing & Gong search over one partition; None if linearizable, else the deepest dead end.

    Known-outcome ops sit in a linked list of call and return events, tried just in time;
    unknown-outcome ops (return at +infinity) are tried after them. A configuration is the
    set of known ops linearised, the state, and the set of unknown ops linearised; one is
    skipped when an explored one has the same known set and state and fewer unknown ops
    (it can do all the other can). Further reductions, each sound because what a skipped
    branch could do an explored one can do too:

    * a *reader* (get, refused CAS, delete of an absent key) never changes the state, so
      if one can go now it goes first and nothing else is tried at that point;
    * an unknown op that leaves the state as it is is never linearised;
    * right after an unknown op no *blind* write (put, unchecked delete) is tried: it would
      hide the unknown op's effect, and the parent reaches the same state directly.
    """
    known = sorted((op for op in ops if op.ret != math.inf), key=lambda op: op.call)
    maybe = sorted((op for op in ops if op.ret == math.inf), key=lambda op: op.call)
    calls = [(op.call, 0, i) for i, op in enumerate(known)]
    events = sorted(calls + [(op.ret, 1, i) for i, op in enumerate(known)])
    # Doubly linked list over events 1..n; 0 is the head sentinel, n + 1 the tail sentinel.
    n = len(events)
    nxt = [*range(1, n + 2), n + 1]
    prv = [0, *range(0, n + 1)]
    op_of = [-1] * (n + 2)
    is_call = [False] * (n + 2)
    ret_event = [0] * len(known)
    for pos, (_, kind, i) in enumerate(events, start=1):
        op_of[pos] = i
        if kind == 0:
            is_call[pos] = True
        else:
            ret_event[i] = pos
    reader = [op.kind == _GET or op.result is False for op in known]
    blind = [op.kind == _PUT or (op.kind == _DELETE and op.result is _ANY) for op in known]
    maybe_blind = [op.kind != _CAS for op in maybe]

    # Known ops linearised: the first ``base`` by call, plus bitmask ``rest`` above them.
    state: Any = None
    base = rest = umask = 0
    after_unknown = False  # the last op linearised has an unknown outcome
    seen = set()
    stack: list[tuple[int, Any, int, int, int, bool, bool, int]] = []
    best: _Failure | None = None
    known_left = len(known)
    entry = limit = 0  # limit: the return event that closed the known candidates
    j = -1  # -1 while trying known ops, else the index into ``maybe`` being tried
    fresh = True  # at a configuration not yet scanned
    steps = 0
    while known_left:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            raise _Timeout
        forced = False
        if fresh:  # a reader that can go now goes first, alone
            fresh, j, entry = False, -1, nxt[0]
            while is_call[entry]:
                i = op_of[entry]
                if reader[i] and _step(state, known[i])[0]:
                    forced = True
                    break
                entry = nxt[entry]
            else:
                entry = nxt[0]
        if j < 0:
            if not is_call[entry]:
                j, limit = 0, entry
                continue
            i = op_of[entry]
            if not forced and (reader[i] or (after_unknown and blind[i])):
                entry = nxt[entry]
                continue
            op = known[i]
        elif j < len(maybe) and maybe[j].call <= known[op_of[limit]].ret:
            if umask >> j & 1 or (after_unknown and maybe_blind[j]):
                j += 1
                continue
            op = maybe[j]
        else:
            op = None
        if op is not None:
            matches, new_state = _step(state, op)
            if matches and (j < 0 or new_state != state):
                if j < 0:
                    new_rest = rest | (1 << (i - base))
                    shift = (~new_rest & (new_rest + 1)).bit_length() - 1  # trailing ones
                    new_base, new_rest, new_umask = base + shift, new_rest >> shift, umask
                else:
                    new_base, new_rest, new_umask = base, rest, umask | (1 << j)
                key = (new_base, new_rest, new_state, new_umask)
                if key not in seen:
                    seen.add(key)
                    cursor = entry if j < 0 else ~j
                    stack.append((cursor, state, base, rest, umask, after_unknown, forced, limit))
                    state, base, rest, umask = new_state, new_base, new_rest, new_umask
                    after_unknown = j >= 0
                    if j < 0:
                        known_left -= 1
                        r = ret_event[i]  # lift the call and its return out of the list
                        nxt[prv[entry]], prv[nxt[entry]] = nxt[entry], prv[entry]
                        nxt[prv[r]], prv[nxt[r]] = nxt[r], prv[r]
                    fresh = True
                    continue
            if not forced:
                if j < 0:
                    entry = nxt[entry]
                else:
                    j += 1
                continue
        # Dead end: no candidate left before the first pending return, or a forced reader
        # led to an explored configuration. Backtrack past every forced step.
        if best is None or len(stack) > len(best.prefix):
            prefix = [known[op_of[c]] if c > 0 else maybe[~c] for c, *_ in stack]
            best = _Failure(prefix, state, known[op_of[entry if j < 0 else limit]])
        while True:
            if not stack:
                return best
            cursor, state, base, rest, umask, after_unknown, forced, limit = stack.pop()
            if cursor > 0:
                known_left += 1
                r = ret_event[op_of[cursor]]  # unlift, in the reverse order
                nxt[prv[r]] = prv[nxt[r]] = r
                nxt[prv[cursor]] = prv[nxt[cursor]] = cursor
            if not forced:
                break
        if cursor > 0:
            j, entry = -1, nxt[cursor]
        else:
            j = ~cursor + 1
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
    """Say why partition ``key`` is not linearizable, listing its operations."""
    shown = sorted(ops, key=lambda op: (op.call, op.index))
    lines = [f"key {key!r}: {len(ops)} operations are not linearizable."]
    if failure.prefix:
        lines.append(
            f"Longest linearizable prefix ({len(failure.prefix)} ops), leaving {failure.state!r}:"
        )
        lines += [f"  {_describe(op)}" for op in failure.prefix[-_EXPLAIN_OPS:]]
    else:
        lines.append("No operation can be linearised first.")
    lines.append(f"Then this cannot be linearised before it returns: {_describe(failure.blocked)}")
    lines.append("Operations on the key, by call time:")
    lines += [f"  {_describe(op)}" for op in shown[:_EXPLAIN_OPS]]
    if len(shown) > _EXPLAIN_OPS:
        lines.append(f"  ... and {len(shown) - _EXPLAIN_OPS} more")
    return "\n".join(lines)


def check_kv_history(
    history: Iterable[Mapping[str, Any]], *, timeout: float = DEFAULT_TIMEOUT
) -> CheckResult:
    """Check that ``history`` is linearizable for a put/get/delete/CAS key-value store."""
    deadline = time.monotonic() + timeout
    parts = _parse(history)
    unknown: list[str] = []
    for key, ops in sorted(parts.items(), key=lambda kv: len(kv[1])):  # smallest first
        stale = _never_written(ops)
        if stale is not None:
            what = "reads" if stale.kind == _GET else "compares against"
            return CheckResult(
                False, f"key {key!r}: {_describe(stale)} {what} a value never written", key
            )
        if len(ops) > MAX_PARTITION_OPS:
            unknown.append(f"key {key!r}: {len(ops)} operations exceed MAX_PARTITION_OPS")
            continue
        try:
            failure = _search(ops, deadline)
        except _Timeout:
            unknown.append(f"key {key!r}: time budget of {timeout:g}s ran out")
            break
        if failure is not None:
            return CheckResult(False, _explain(key, ops, failure), key)
    if unknown:
        return CheckResult(None, "unknown: " + "; ".join(unknown))
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

"""The replicated state machine: etcd's MVCC key-value model over LMDB.

The store revision starts at 1 on an empty store; every command that changes at least one
key or publishes an event (a ``publish`` op, appended to the event journal of
:mod:`aspen.journal` in the same nested transaction) bumps it by one, and all changes and
events of one command share that revision. Each key record
carries ``create_revision``, ``mod_revision``, ``version`` (1 on create, +1 per put; a
deleted key is gone) and ``lease``. Every change is appended to the ``history`` db under
its position (``revision + sub-index``), the one place a record is stored; the ``kv`` and
``keyrevs`` dbs index the positions by key (see :mod:`aspen.kv.layout`). History serves
current reads, reads at old revisions and watches until it is compacted.

:meth:`KVStateMachine.apply` is a pure function of (stored state, command): it never reads
a clock or randomness. Each command runs in a nested write transaction, so a command that
fails half-way (an :class:`~aspen.errors.AspenError`) leaves nothing behind; its error is
returned as the result. The applied index is recorded for every command, failed or not.

Meta keys: ``kv/state`` = applied index, applied term, revision (three 8-byte BE ints);
``kv/compact_revision`` = 8 bytes BE; ``kv/compact_position`` = the history position
compaction has reached.

Compaction sets the compact revision at once; the changes below it are compacted (see
:meth:`aspen.kv.layout.KeyIndex.compact_entry`) in slices of ``COMPACT_SLICE_ENTRIES`` /
``COMPACT_SLICE_BYTES`` examined: one with the compact command, then one per write
transaction (write cycle) that applies anything, so compacting millions of entries never
holds a cycle up for long. Reads are correct between slices, so replicas may hold
different leftovers below the compact revision.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb
import msgpack

from aspen import limits
from aspen.auth.access import lease_key_error
from aspen.auth.kvscope import first_outside, prefixes_for
from aspen.errors import (
    AspenError,
    CompactedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen.events import Event, KeyValue, KvBatch, KvDelete, KvPut, LeaseExpired
from aspen.journal.store import JournalAppended, JournalStore
from aspen.kv.budget import ReadBudget
from aspen.kv.commands import RangeRequest
from aspen.kv.keycodec import encode_key
from aspen.kv.layout import index_row
from aspen.kv.leases import LeaseTable
from aspen.kv.reads import KVReader
from aspen.kv.records import (
    POSITION_BYTES,
    U64,
    Record,
    entry_record,
    history_key,
    pack_delete,
    pack_put,
    record_to_kv,
    record_to_wire,
    tombstone,
)
from aspen.storage.env import Storage

__all__ = ["FIRST_REVISION", "KVStateMachine"]

#: The revision of an empty store (the first write makes it 2, as in etcd).
FIRST_REVISION = 1

_STATE_KEY = b"kv/state"
_COMPACT_KEY = b"kv/compact_revision"
_COMPACT_POSITION_KEY = b"kv/compact_position"
_STATE = struct.Struct(">QQQ")


class KVStateMachine:
    """Applies commands to, and answers reads from, the kv/history/lease databases."""

    def __init__(self, storage: Storage) -> None:
        """Bind to ``storage``."""
        self._env = storage.env
        self._meta = storage.db("meta")
        self.reader = KVReader(storage)
        self.index = self.reader.index
        self.leases = LeaseTable(storage)
        #: The event journal (:mod:`aspen.journal`), written by ``publish`` ops.
        self.journal = JournalStore(storage)
        self._packer = msgpack.Packer(use_bin_type=True)
        # Revision cache, valid only for the write transaction it was read in: a new parent
        # transaction (e.g. after the caller aborted one) reloads it from meta.
        self._cached_txn: lmdb.Transaction | None = None
        self._revision = FIRST_REVISION
        #: History entries deleted by compaction slices so far (tests pin slice sizes with it).
        self.compacted_entries = 0

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        txn: lmdb.Transaction,
        index: int,
        term: int,
        command: dict[str, Any],
        *,
        answer: bool = True,
    ) -> tuple[dict[str, Any] | AspenError, list[Event]]:
        """Apply one command in write transaction ``txn``; return (result or error, events).

        Without ``answer`` (a replica that will not answer the client) the kvs of a txn's
        ranges are not built: they are only counted against the command's
        :class:`ReadBudget`, so that every replica reaches the same verdict.
        """
        if txn is not self._cached_txn:
            self._new_cycle(txn)
        revision = self._revision
        op = command.get("op") if isinstance(command, dict) else None
        handler = _HANDLERS.get(op) if isinstance(op, str) else None
        ctx = _Apply(self, index, term, revision + 1, _budget_for(op), answer=answer)
        result: dict[str, Any] | AspenError
        try:
            if handler is None:
                raise InvalidArgumentError(f"unknown command op {op!r}")
            with self._env.begin(write=True, parent=txn) as child:
                ctx.txn = child
                result = handler(ctx, command)
                if ctx.published:
                    ctx.journaled()
                result["header"] = ctx.header()
        except AspenError as exc:
            result = exc
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            result = InvalidArgumentError(f"malformed {op} command: {exc!r}")
        else:
            if ctx.changed:
                self._revision = revision + 1
        events = ctx.finish() if not isinstance(result, AspenError) else []
        txn.put(_STATE_KEY, _STATE.pack(index, term, self._revision), db=self._meta)
        return result, events

    def read_txn(self, txn: lmdb.Transaction, command: dict[str, Any]) -> dict[str, Any]:
        """Answer a read-only ``txn`` command (compares and ranges only, see
        :func:`aspen.kv.commands.is_read_only`) from read transaction ``txn``, as ``apply``
        would, without entering the log."""
        ctx = _Apply(self, 0, 0, self.current_revision(txn) + 1, _budget_for("txn"))
        ctx.txn = txn
        result = _txn(ctx, command)
        result["header"] = ctx.header()
        return result

    def check_delete(self, txn: lmdb.Transaction, command: dict[str, Any]) -> None:
        """Refuse, before it is proposed, a ``delete`` command whose ``prev_kv`` answer is
        over its read budget in the state of ``txn`` (apply checks again)."""
        if command["prev_kv"]:
            budget = _budget_for("delete")
            for _, _, _, raw in self.reader.scan(txn, command["key"], command["end"]):
                budget.take(len(raw))

    def mark_applied(self, txn: lmdb.Transaction, index: int, term: int) -> None:
        """Record that log entry ``index`` (a no-op or membership change) was applied."""
        if txn is not self._cached_txn:
            self._new_cycle(txn)
        txn.put(_STATE_KEY, _STATE.pack(index, term, self._revision), db=self._meta)

    def _new_cycle(self, txn: lmdb.Transaction) -> None:
        """First command of write transaction ``txn``: load the revision, compact a slice."""
        self._revision = self.current_revision(txn)
        self._cached_txn = txn
        self.compact_slice(txn)

    def compact_slice(self, txn: lmdb.Transaction) -> int:
        """Compact up to one slice of the changes below the compact revision (see the module
        docstring); return how many history entries were deleted."""
        raw = txn.get(_COMPACT_KEY, db=self._meta)
        if raw is None:
            return 0
        bound = history_key(U64.unpack(raw)[0])
        start = txn.get(_COMPACT_POSITION_KEY, db=self._meta) or b""
        if start >= bound:
            return 0
        todo: list[tuple[bytes, bytes]] = []
        size = 0
        reached = bound  # unless a slice bound stops it short
        with txn.cursor(db=self.index.history) as cur:
            if cur.set_range(start):
                for position, entry in cur:
                    if position >= bound:
                        break
                    if (
                        len(todo) >= limits.COMPACT_SLICE_ENTRIES
                        or size >= limits.COMPACT_SLICE_BYTES
                    ):
                        reached = position
                        break
                    todo.append((position, entry))
                    size += len(position) + len(entry)
        deleted = sum(self.index.compact_entry(txn, pos, entry) for pos, entry in todo)
        txn.put(_COMPACT_POSITION_KEY, reached, db=self._meta)
        self.compacted_entries += deleted
        return deleted

    def forget_cache(self) -> None:
        """Drop the cached revision (after the state was replaced by a snapshot)."""
        self._cached_txn = None

    def pack(self, obj: Any) -> bytes:
        """msgpack ``obj`` with the apply loop's reused packer."""
        return self._packer.pack(obj)

    # ------------------------------------------------------------------ reads
    @contextmanager
    def _reading(self, txn: lmdb.Transaction | None) -> Iterator[lmdb.Transaction]:
        """Use ``txn``, or a fresh read transaction when it is None."""
        if txn is not None:
            yield txn
        else:
            with self._env.begin() as fresh:
                yield fresh

    def _state(self, txn: lmdb.Transaction | None) -> tuple[int, int, int]:
        """(applied index, applied term, revision)."""
        with self._reading(txn) as t:
            raw = t.get(_STATE_KEY, db=self._meta)
        return _STATE.unpack(raw) if raw is not None else (0, 0, FIRST_REVISION)

    def current_revision(self, txn: lmdb.Transaction | None = None) -> int:
        """The store revision."""
        return self._state(txn)[2]

    def applied_index(self, txn: lmdb.Transaction | None = None) -> int:
        """Index of the last applied log entry (0 if none)."""
        return self._state(txn)[0]

    def applied_term(self, txn: lmdb.Transaction | None = None) -> int:
        """Term of the last applied log entry (0 if none)."""
        return self._state(txn)[1]

    def compact_revision(self, txn: lmdb.Transaction | None = None) -> int:
        """The revision history was last compacted to (0 if never)."""
        with self._reading(txn) as t:
            raw = t.get(_COMPACT_KEY, db=self._meta)
        return U64.unpack(raw)[0] if raw is not None else 0

    def range(self, txn: lmdb.Transaction | None, req: RangeRequest) -> dict[str, Any]:
        """The ``kv.range`` result: ``{header, kvs, more}`` and ``count`` when asked for; a
        page is cut at MAX_RANGE_PAGE_BYTES (with ``more`` true)."""
        with self._reading(txn) as t:
            current = self.current_revision(t)
            compacted = self.compact_revision(t)
            page_bytes = limits.MAX_RANGE_PAGE_BYTES
            result = self.reader.range(t, req, current, compacted, page_bytes=page_bytes)
        result["header"] = {"revision": current}
        return result

    def get(self, txn: lmdb.Transaction | None, key: bytes) -> KeyValue | None:
        """The current record of ``key``, or None."""
        with self._reading(txn) as t:
            rec = self.reader.get_record(t, key)
        return None if rec is None else record_to_kv(rec)

    def history(
        self,
        txn: lmdb.Transaction | None,
        start_revision: int,
        key: bytes,
        end: bytes | None = None,
        limit: int = limits.MAX_WATCH_EVENTS_PER_MESSAGE,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` watch events (``{type, kv, prev_kv, revision}``) from ``start_revision``.

        Key range semantics as for range (see :meth:`KVReader.history`). Raises
        :class:`~aspen.errors.CompactedError` if ``start_revision`` was compacted away.
        """
        with self._reading(txn) as t:
            compacted = self.compact_revision(t)
            if 0 < start_revision < compacted:
                raise CompactedError(
                    f"watch start revision {start_revision} has been compacted "
                    f"(compact revision {compacted})",
                    compact_revision=compacted,
                )
            start = max(start_revision, compacted)  # below it: leftovers of compaction
            return self.reader.history(t, start, key, end, limit)

    def lease_ids(self, txn: lmdb.Transaction | None = None) -> list[int]:
        """Every granted lease id, ascending."""
        with self._reading(txn) as t:
            return self.leases.ids(t)

    def lease_ttls(self, txn: lmdb.Transaction | None = None) -> list[tuple[int, int]]:
        """(id, granted ttl) of every lease, ascending by id."""
        with self._reading(txn) as t:
            return self.leases.ttls(t)

    def lease_info(
        self, txn: lmdb.Transaction | None, lease_id: int, keys: bool = False
    ) -> dict[str, Any] | None:
        """``{id, granted_ttl, keys}`` of a lease (keys capped at MAX_LEASE_KEYS_LISTED)."""
        with self._reading(txn) as t:
            ttl = self.leases.ttl(t, lease_id)
            if ttl is None:
                return None
            listed: list[bytes] = []
            if keys:
                attached = self.leases.keys(t, lease_id)
                listed = [k for _, k in itertools.islice(attached, limits.MAX_LEASE_KEYS_LISTED)]
        return {"id": lease_id, "granted_ttl": ttl, "keys": listed}

    def lease_key_outside(
        self, lease_id: int, prefixes: dict[str, tuple[tuple[bytes, bytes], ...]], operation: str
    ) -> bytes | None:
        """The first key attached to the lease that ``prefixes`` (by operation, as
        :func:`aspen.auth.kvscope.kv_prefixes` gives them) do not allow ``operation`` on;
        ``None`` when they cover every key (or there is no such lease)."""
        with self._reading(None) as t:
            return first_outside(prefixes, operation, (k for _, k in self.leases.keys(t, lease_id)))

    def lease_count(self, txn: lmdb.Transaction | None = None) -> int:
        """Number of granted leases."""
        with self._reading(txn) as t:
            return self.leases.count(t)


class _Apply:
    """One command being applied: its nested transaction, revision, changes and events."""

    __slots__ = (
        "answer",
        "budget",
        "events",
        "history_db",
        "index",
        "keys",
        "kv_db",
        "kv_events",
        "published",
        "revision",
        "sm",
        "sub",
        "term",
        "txn",
    )

    def __init__(
        self,
        sm: KVStateMachine,
        index: int,
        term: int,
        revision: int,
        budget: ReadBudget,
        *,
        answer: bool = True,
    ) -> None:
        self.sm = sm
        self.budget = budget  # what this command may read into its answer
        self.answer = answer  # build the kvs of ranges (only the answering replica does)
        self.txn: lmdb.Transaction = None  # type: ignore[assignment]  # set by apply
        self.keys = sm.index
        self.kv_db = sm.index.kv
        self.history_db = sm.index.history
        self.index = index
        self.term = term
        self.revision = revision  # the revision this command's changes get
        self.sub = 0  # changes so far (the next history sub-index)
        self.events: list[Event] = []
        self.kv_events: list[KvPut | KvDelete] = []
        self.published: list[int] = []  # journal positions of the events published

    @property
    def changed(self) -> bool:
        """Whether the command changed a key or published an event (either takes a revision)."""
        return bool(self.sub or self.published)

    def header(self) -> dict[str, int]:
        """The result header: the store revision after this command."""
        return {"revision": self.revision if self.changed else self.revision - 1}

    def finish(self) -> list[Event]:
        """All events, with a KvBatch when more than one key changed."""
        if len(self.kv_events) > 1:
            self.events.append(
                KvBatch(self.index, self.term, self.revision, events=tuple(self.kv_events))
            )
        return self.events

    # ------------------------------------------------------------------ journal
    def publish(self, op: dict[str, Any]) -> dict[str, Any]:
        """Append a validated ``publish`` op to the journal; result ``{position}``."""
        position = self.sm.journal.append(self.txn, self.revision, op)
        self.published.append(position)
        return {"position": position}

    def journaled(self) -> None:
        """After a command that published: apply the retention, tell the node."""
        self.sm.journal.trim(self.txn, len(self.published))
        first, last = self.published[0], self.published[-1]
        self.events.append(JournalAppended(self.index, self.term, self.revision, first, last))

    # ------------------------------------------------------------------ changes
    def _changed(self, entry: bytes, event: KvPut | KvDelete) -> bytes:
        """Append a change (its stored ``entry``) to history and its event to the command's
        events; return its position."""
        position = history_key(self.revision, self.sub)
        self.txn.put(position, entry, db=self.history_db, append=True)
        self.sub += 1
        self.events.append(event)
        self.kv_events.append(event)
        return position

    def put(self, key: bytes, value: bytes, lease: int, want_prev: bool) -> dict[str, Any]:
        """Write one key; result ``{prev_kv}``."""
        txn, rev = self.txn, self.revision
        encoded = encode_key(key)
        row = txn.get(encoded, db=self.kv_db)
        prev: Record | None = None
        if row is not None:
            prev_position = row[:POSITION_BYTES]
            prev_raw = self.sm.reader.entry(txn, prev_position)
            prev = entry_record(prev_position, prev_raw)[1]
            if want_prev:
                self.budget.take(len(prev_raw))
            self.keys.supersede(txn, encoded, prev_position)
        if lease and not self.sm.leases.exists(txn, lease):
            raise NotFoundError(f"lease {lease} not found", lease=lease)
        if prev is None:
            rec = [key, value, rev, rev, 1, lease]
            old_lease = 0
        else:
            rec = [key, value, prev[2], rev, prev[4] + 1, lease]
            old_lease = prev[5]
        if old_lease != lease:
            if old_lease:
                self.sm.leases.detach(txn, old_lease, encoded)
            if lease:
                self.sm.leases.attach(txn, lease, encoded, key)
        prev_kv = record_to_kv(prev) if prev is not None else None
        event = KvPut(self.index, self.term, rev, record_to_kv(rec), prev_kv)
        position = self._changed(pack_put(self.sm._packer, rec), event)
        txn.put(encoded, index_row(position, key, encoded), db=self.kv_db)
        return {"prev_kv": record_to_wire(prev) if want_prev else None}

    def delete(self, key: bytes, end: bytes | None, want_prev: bool) -> dict[str, Any]:
        """Delete one key or a range; result ``{deleted, prev_kvs}``."""
        bound = limits.MAX_DELETE_RANGE_KEYS
        targets = list(itertools.islice(self.sm.reader.scan(self.txn, key, end), bound + 1))
        if len(targets) > bound:
            raise InvalidArgumentError(
                f"delete range covers more than MAX_DELETE_RANGE_KEYS ({bound}) keys; "
                "delete it in smaller ranges"
            )
        if want_prev:
            for _, _, _, raw in targets:  # before any change: refuse as a whole
                self.budget.take(len(raw))
        prev_kvs = []
        for encoded, _, position, raw in targets:
            prev = self._delete_key(encoded, position, raw, detach=True)
            if want_prev:
                prev_kvs.append(record_to_wire(prev))
        return {"deleted": len(targets), "prev_kvs": prev_kvs}

    def _delete_key(self, encoded: bytes, position: bytes, raw: bytes, *, detach: bool) -> Record:
        """Delete a stored key whose current record (stored ``raw``) is at ``position``;
        return that record."""
        prev = entry_record(position, raw)[1]
        self.txn.delete(encoded, db=self.kv_db)
        self.keys.supersede(self.txn, encoded, position)
        if detach and prev[5]:
            self.sm.leases.detach(self.txn, prev[5], encoded)
        tomb = tombstone(prev[0], self.revision)
        event = KvDelete(
            self.index, self.term, self.revision, record_to_kv(tomb), record_to_kv(prev)
        )
        tomb_position = self._changed(pack_delete(self.sm._packer, prev[0]), event)
        self.keys.supersede(self.txn, encoded, tomb_position)
        return prev

    def range(self, op: dict[str, Any]) -> dict[str, Any]:
        """A range inside a txn: sees the txn's earlier writes; result ``{kvs, more, count}``."""
        current = self.revision if self.sub else self.revision - 1
        compacted = self.sm.compact_revision(self.txn)
        req = RangeRequest.from_command(op)
        return self.sm.reader.range(
            self.txn, req, current, compacted, self.budget, materialise=self.answer
        )

    # ------------------------------------------------------------------ txn
    def txn_path(self, cmd: dict[str, Any], path: list[bool]) -> list[bool]:
        """Evaluate the compares of ``cmd`` and of the nested txns on its chosen branches.

        As in etcd, every compare is evaluated against the state before the txn's writes;
        the outcomes are listed in the order the txns will run (pre-order).
        """
        ok = all(self.sm.reader.compare(self.txn, c, self.budget) for c in cmd["compare"])
        path.append(ok)
        for op in cmd["success" if ok else "failure"]:
            if op["op"] == "txn":
                self.txn_path(op, path)
        return path

    def run_txn(self, cmd: dict[str, Any], path: Iterator[bool]) -> dict[str, Any]:
        """Run the chosen branch of ``cmd``; result ``{succeeded, responses}``."""
        ok = next(path)
        responses = [self.run_op(op, path) for op in cmd["success" if ok else "failure"]]
        return {"succeeded": ok, "responses": responses}

    def run_op(self, op: dict[str, Any], path: Iterator[bool]) -> dict[str, Any]:
        """Run one txn op; its response is ``{kind: result}``."""
        kind = op["op"]
        if kind == "put":
            return {"put": self.put(op["key"], op["value"], op["lease"], op["prev_kv"])}
        if kind == "delete":
            return {"delete": self.delete(op["key"], op["end"], op["prev_kv"])}
        if kind == "range":
            return {"range": self.range(op)}
        if kind == "txn":
            return {"txn": self.run_txn(op, path)}
        if kind == "publish":
            return {"publish": self.publish(op)}
        raise InvalidArgumentError(f"unknown txn op {kind!r}")

    # ------------------------------------------------------------------ leases
    def delete_lease(self, lease_id: int, attached: list[tuple[bytes, bytes]]) -> None:
        """Delete a lease and its ``attached`` keys (``(encoded, key)`` from LeaseTable.keys)."""
        self.delete_attached(attached, detach=False)
        self.sm.leases.remove(self.txn, lease_id)

    def delete_attached(self, attached: list[tuple[bytes, bytes]], *, detach: bool = True) -> None:
        """Delete keys attached to a lease (``(encoded, key)``); with ``detach`` the lease
        forgets them (it keeps the rest)."""
        for encoded, _ in attached:
            row = self.txn.get(encoded, db=self.kv_db)
            if row is not None:
                position = row[:POSITION_BYTES]
                raw = self.sm.reader.entry(self.txn, position)
                self._delete_key(encoded, position, raw, detach=detach)


# ---------------------------------------------------------------------------- commands
#: What to do instead, per command op, when a command reads over its budget.
_BUDGET_HINTS = {
    "delete": "delete in smaller ranges, or without prev_kv",
    "txn": "read less in one txn (smaller range limits, keys_only, fewer prev_kv), "
    "or read with kv.range outside the txn",
}


def _budget_for(op: Any) -> ReadBudget:
    """The read budget of one command of kind ``op``."""
    return ReadBudget(_BUDGET_HINTS.get(op, "ask for less"))


def _put(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    return ctx.put(cmd["key"], cmd["value"], cmd["lease"], cmd["prev_kv"])


def _delete(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    return ctx.delete(cmd["key"], cmd["end"], cmd["prev_kv"])


def _range(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    return ctx.range(cmd)


def _txn(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    return ctx.run_txn(cmd, iter(ctx.txn_path(cmd, [])))


def _compact(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    revision = cmd["revision"]
    current = ctx.revision - 1
    compacted = ctx.sm.compact_revision(ctx.txn)
    if revision > current:
        raise InvalidArgumentError(
            f"compact revision {revision} is a future revision (current revision {current})"
        )
    if revision <= compacted:
        raise CompactedError(
            f"revision {revision} has already been compacted (compact revision {compacted})",
            compact_revision=compacted,
        )
    ctx.txn.put(_COMPACT_KEY, U64.pack(revision), db=ctx.sm._meta)
    ctx.sm.compact_slice(ctx.txn)  # the rest in the next write cycles
    return {}


def _lease_grant(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    lease_id, ttl = cmd["id"], cmd["ttl"]
    leases = ctx.sm.leases
    if leases.exists(ctx.txn, lease_id):
        raise InvalidArgumentError(f"lease {lease_id} already exists")
    if leases.count(ctx.txn) >= limits.MAX_LEASES:
        raise ResourceExhaustedError(f"MAX_LEASES ({limits.MAX_LEASES}) leases are granted")
    leases.grant(ctx.txn, lease_id, ttl)
    return {"id": lease_id, "ttl": ttl}


def _lease_revoke(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    """Delete a lease and its keys, or only a slice of its keys (within the command's
    ``max_keys`` / ``max_bytes``; ``remaining`` says so) when they do not all fit. A command
    carrying ``writable`` prefixes (a capability token's) is refused whole unless they
    cover every key it would delete."""
    lease_id = cmd["id"]
    if not ctx.sm.leases.exists(ctx.txn, lease_id):
        raise NotFoundError(f"lease {lease_id} not found", lease=lease_id)
    budget = _ExpiryBudget(cmd.get("max_keys"), cmd.get("max_bytes"))
    attached, whole = budget.take(ctx, lease_id, first=True)
    if "writable" in cmd:
        outside = first_outside(
            prefixes_for("write", cmd["writable"]), "write", (key for _, key in attached)
        )
        if outside is not None:
            raise lease_key_error(lease_id, "write", outside, "lease.revoke")
    if not whole:
        ctx.delete_attached(attached)
        return {"remaining": True}
    ctx.delete_lease(lease_id, attached)
    return {}


def _lease_expire(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    """Expire whole leases (all their keys, one ``LeaseExpired`` each) while they fit in the
    command's ``max_keys`` / ``max_bytes``; when the first lease alone does not fit, delete
    a slice of its keys (the lease stays). ``remaining``: the ids that still exist, which
    the leader proposes again. A command without bounds (older log) expires every lease."""
    leases = ctx.sm.leases
    ids = [i for i in dict.fromkeys(cmd["ids"]) if leases.exists(ctx.txn, i)]
    budget = _ExpiryBudget(cmd.get("max_keys"), cmd.get("max_bytes"))
    whole: list[tuple[int, list[tuple[bytes, bytes]]]] = []
    partial: list[tuple[bytes, bytes]] = []
    for lease_id in ids:
        attached, fits = budget.take(ctx, lease_id, first=not whole)
        if not fits:
            partial = [] if whole else attached
            break
        whole.append((lease_id, attached))
    changed = bool(partial) or any(attached for _, attached in whole)
    revision = ctx.revision if changed else ctx.revision - 1
    for lease_id, attached in whole:
        keys = tuple(key for _, key in attached)
        ctx.events.append(LeaseExpired(ctx.index, ctx.term, revision, lease_id, keys))
        ctx.delete_lease(lease_id, attached)
    ctx.delete_attached(partial)
    return {"expired": [i for i, _ in whole], "remaining": ids[len(whole) :]}


class _ExpiryBudget:
    """What one ``lease_expire`` command may still delete: keys, and bytes of key + record."""

    def __init__(self, max_keys: int | None, max_bytes: int | None) -> None:
        self.keys = math.inf if max_keys is None else max_keys
        self.bytes = math.inf if max_bytes is None else max_bytes

    def take(
        self, ctx: _Apply, lease_id: int, *, first: bool
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """The lease's keys and whether all of them fit (then they are taken from the
        budget); if not, the keys that fit, at least one when ``first`` (progress)."""
        taken: list[tuple[bytes, bytes]] = []
        keys, size = 0, 0
        for encoded, key in ctx.sm.leases.keys(ctx.txn, lease_id):
            row = ctx.txn.get(encoded, db=ctx.kv_db)
            raw = None if row is None else ctx.sm.reader.entry(ctx.txn, row[:POSITION_BYTES])
            cost = len(encoded) + (len(raw) if raw is not None else 0)
            if keys + 1 > self.keys or size + cost > self.bytes:
                if first and not taken:
                    taken.append((encoded, key))
                return taken, False
            taken.append((encoded, key))
            keys, size = keys + 1, size + cost
        self.keys -= keys
        self.bytes -= size
        return taken, True


def _events_retention(ctx: _Apply, cmd: dict[str, Any]) -> dict[str, Any]:
    return {"retention": ctx.sm.journal.set_retention(ctx.txn, cmd).to_json()}


_HANDLERS: dict[str, Callable[[_Apply, dict[str, Any]], dict[str, Any]]] = {
    "put": _put,
    "delete": _delete,
    "range": _range,
    "txn": _txn,
    "compact": _compact,
    "lease_grant": _lease_grant,
    "lease_revoke": _lease_revoke,
    "lease_expire": _lease_expire,
    "events_retention": _events_retention,
}

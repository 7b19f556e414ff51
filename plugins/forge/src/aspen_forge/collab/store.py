"""Issues and patches in KV: numbered by a per-repository counter, each an op log plus a
summary, every op appended by one ``kv.txn`` that also publishes its event.

Keys (:mod:`aspen_forge.keys`): ``counters/<repo>/<kind>`` (the last number, taken by
compare-and-swap), ``ops/<repo>/<kind>/<number>/<op id>`` (the log) and
``objects/<repo>/<kind>/<number>`` (the summary a list reads: the folded state without
comments, the log's ``heads`` and its size). An append reads the log, folds it, checks
the new op against that state, and commits the op, the new summary and a
``forge.<kind>`` event on the condition that the summary has not changed since it was
read (else it reads again, up to MAX_CAS_ATTEMPTS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import msgpack

from aspen.client.leader import LeaderCaller
from aspen.errors import (
    CompareFailedError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from aspen.kv import paging
from aspen_forge import keys, limits
from aspen_forge.collab.oplog import Op, fold, heads, make_op
from aspen_forge.repos import Repo

__all__ = ["Loaded", "Objects", "Prepared", "actor_of", "event_name"]


def actor_of(authority: Any) -> str:
    """Who an op is by: ``root`` for the root token, else the token's id."""
    if authority is None:
        return "anonymous"
    return "root" if authority.unrestricted else str(authority.token_id)


def event_name(kind: ModuleType) -> str:
    """``forge.issue`` or ``forge.patch``."""
    return f"forge.{kind.KIND}"


@dataclass
class Prepared:
    """An op ready to commit: the txn's ``compare`` and ``ops`` (op, summary, event) and
    the object's ``state`` once it has."""

    compare: list[dict[str, Any]]
    ops: list[dict[str, Any]]
    state: dict[str, Any]


class Loaded:
    """One object as read: its folded ``state``, its ``ops`` and the summary's revision."""

    def __init__(self, state: dict[str, Any], ops: list[Op], revision: int, size: int) -> None:
        self.state = state
        self.ops = ops
        self.revision = revision
        self.size = size


def _summary_value(kind: ModuleType, state: dict[str, Any], ops: list[Op], size: int) -> bytes:
    return msgpack.packb(
        {**kind.summary(state), "heads": heads(ops), "bytes": size}, use_bin_type=True
    )


class Objects:
    """Issues and patches of every repository, as one node reads and writes them."""

    def __init__(self, node: Any, writer: LeaderCaller) -> None:
        self.node = node
        self.writer = writer

    # ------------------------------------------------------------------ reads
    async def load(self, repo: Repo, kind: ModuleType, number: int) -> Loaded:
        """Fold ``kind`` ``number`` of ``repo`` (``not_found`` if there is none)."""
        key = keys.object_key(repo.id, kind.KIND, number)
        kvs = (await self.node.call("kv.range", {"key": key}))["kvs"]
        if not kvs:
            raise NotFoundError(f"{kind.KIND} #{number} not found in {repo.full}")
        prefix = keys.ops_prefix(repo.id, kind.KIND, number)
        records, _, _ = await paging.collect(
            self.node.call, prefix, most=limits.MAX_OPS_PER_OBJECT, local=True
        )
        ops = [Op.from_value(kv["value"]) for kv in records]
        size = sum(len(kv["value"]) for kv in records)
        state = fold(ops, kind.apply, kind.initial(number))
        return Loaded(state, ops, int(kvs[0]["mod_revision"]), size)

    async def summaries(
        self, repo: Repo, kind: ModuleType, state: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Summaries of ``repo``'s ``kind`` objects (in ``state`` if given), by number, at
        most MAX_LIST_OBJECTS, and whether more exist."""
        records, truncated, _ = await paging.collect(
            self.node.call,
            keys.objects_prefix(repo.id, kind.KIND),
            most=limits.MAX_LIST_OBJECTS,
            local=True,
        )
        out = [msgpack.unpackb(kv["value"], raw=False) for kv in records]
        return [s for s in out if state is None or s["state"] == state], truncated

    # ------------------------------------------------------------------ writes
    async def create(
        self, repo: Repo, kind: ModuleType, actor: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A new ``kind`` object of ``repo`` numbered by the repository's counter; its
        state after the ``create`` op."""
        counter = keys.counter_key(repo.id, kind.KIND)
        for _ in range(limits.MAX_CAS_ATTEMPTS):
            kvs = (await self.node.call("kv.range", {"key": counter}))["kvs"]
            last = int(kvs[0]["value"]) if kvs else 0
            compare = (
                {
                    "key": counter,
                    "target": "mod_revision",
                    "op": "==",
                    "value": kvs[0]["mod_revision"],
                }
                if kvs
                else {"key": counter, "target": "version", "op": "==", "value": 0}
            )
            number = last + 1
            state = kind.initial(number)
            op = make_op("create", actor, time.time(), (), kind.check(state, "create", body))
            state = kind.apply(state, op)
            value = op.to_value()
            self._bound(kind, number, 1, len(value), len(value))
            answer = await self.writer.call(
                "kv.txn",
                {
                    "compare": [compare],
                    "success": [
                        {"put": {"key": counter, "value": str(number).encode()}},
                        {
                            "put": {
                                "key": keys.op_key(repo.id, kind.KIND, number, op.id),
                                "value": value,
                            }
                        },
                        {
                            "put": {
                                "key": keys.object_key(repo.id, kind.KIND, number),
                                "value": _summary_value(kind, state, [op], len(value)),
                            }
                        },
                        self._event(repo, kind, state, op),
                    ],
                    "failure": [],
                },
            )
            if answer["succeeded"]:
                return state
        raise ResourceExhaustedError(
            f"{repo.full}'s {kind.KIND} counter kept changing: gave up after "
            f"MAX_CAS_ATTEMPTS ({limits.MAX_CAS_ATTEMPTS})"
        )

    async def prepare(
        self,
        repo: Repo,
        kind: ModuleType,
        number: int,
        actor: str,
        op_type: str,
        body: dict[str, Any],
        *,
        loaded: Loaded | None = None,
        authorize: Callable[[dict[str, Any]], None] | None = None,
    ) -> Prepared:
        """The compares and ops of a txn appending an ``op_type`` op to ``kind``
        ``number`` (as read now, or as ``loaded``), and the state after it; typed errors
        if the op does not fit."""
        current = loaded or await self.load(repo, kind, number)
        if authorize is not None:
            authorize(current.state)
        op = make_op(
            op_type,
            actor,
            time.time(),
            heads(current.ops),
            kind.check(current.state, op_type, body),
        )
        value = op.to_value()
        size = current.size + len(value)
        self._bound(kind, number, len(current.ops) + 1, size, len(value))
        state = kind.apply(current.state, op)
        key = keys.object_key(repo.id, kind.KIND, number)
        summary = _summary_value(kind, state, [*current.ops, op], size)
        return Prepared(
            compare=[{"key": key, "target": "mod_revision", "op": "==", "value": current.revision}],
            ops=[
                {"put": {"key": keys.op_key(repo.id, kind.KIND, number, op.id), "value": value}},
                {"put": {"key": key, "value": summary}},
                self._event(repo, kind, state, op),
            ],
            state=state,
        )

    async def append(
        self,
        repo: Repo,
        kind: ModuleType,
        number: int,
        actor: str,
        op_type: str,
        body: dict[str, Any],
        *,
        extra_compare: list[dict[str, Any]] | None = None,
        extra_ops: list[dict[str, Any]] | None = None,
        loaded: Loaded | None = None,
        authorize: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Append an ``op_type`` op to ``kind`` ``number``; its state after it. With
        ``extra_compare``/``extra_ops`` (a merge's ref update) the op commits with them in
        one transaction, once: ``compare_failed`` if anything changed since ``loaded``.
        ``authorize(state)`` may refuse the op on the state it would land on."""
        once = extra_compare is not None or extra_ops is not None
        for _ in range(1 if once else limits.MAX_CAS_ATTEMPTS):
            prepared = await self.prepare(
                repo, kind, number, actor, op_type, body, loaded=loaded, authorize=authorize
            )
            loaded = None
            answer = await self.writer.call(
                "kv.txn",
                {
                    "compare": prepared.compare + (extra_compare or []),
                    "success": prepared.ops + (extra_ops or []),
                    "failure": [],
                },
            )
            if answer["succeeded"]:
                return prepared.state
        if once:
            raise CompareFailedError(
                f"{kind.KIND} #{number} or its target changed meanwhile; retry"
            )
        raise ResourceExhaustedError(
            f"{kind.KIND} #{number} kept changing: gave up after MAX_CAS_ATTEMPTS "
            f"({limits.MAX_CAS_ATTEMPTS})"
        )

    def _event(self, repo: Repo, kind: ModuleType, state: dict[str, Any], op: Op) -> dict[str, Any]:
        payload = {
            "repo": repo.full,
            "number": state["number"],
            "op": op.type,
            "op_id": op.id,
            "actor": op.actor,
            "state": state["state"],
            "title": state["title"],
        }
        return self.node.events.op(event_name(kind), repo.full, payload)

    @staticmethod
    def _bound(kind: ModuleType, number: int, count: int, size: int, op_size: int) -> None:
        if op_size > limits.MAX_OP_BYTES:
            raise InvalidArgumentError(
                f"the op is {op_size} bytes encoded, over MAX_OP_BYTES ({limits.MAX_OP_BYTES})",
                field="body",
            )
        if count > limits.MAX_OPS_PER_OBJECT:
            raise ResourceExhaustedError(
                f"{kind.KIND} #{number} has MAX_OPS_PER_OBJECT ({limits.MAX_OPS_PER_OBJECT}) ops"
            )
        if size > limits.MAX_OBJECT_BYTES:
            raise ResourceExhaustedError(
                f"{kind.KIND} #{number} would hold {size} bytes of ops, over MAX_OBJECT_BYTES "
                f"({limits.MAX_OBJECT_BYTES})"
            )

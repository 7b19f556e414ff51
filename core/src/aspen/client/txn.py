"""Transaction builders: compares and ops for ``kv.txn`` (docs/protocol.md).

c.kv.txn(
    compare=[Compare.value("k") == b"old", Compare.version("lock") == 0],
    success=[Op.put("k", b"new"), Op.get("k")],
    failure=[Op.get("k")],
)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aspen.client.records import to_bytes
from aspen.errors import InvalidArgumentError
from aspen.kv.keys import prefix_range
from aspen.limits import MAX_VALUE_BYTES

__all__ = [
    "Compare",
    "CompareTarget",
    "Comparison",
    "Op",
    "TxnOp",
    "delete_params",
    "get_params",
    "put_params",
    "range_params",
    "txn_params",
]

Target = Literal["value", "version", "create_revision", "mod_revision", "lease"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One txn compare: ``target`` of ``key`` (or every key in [key, end)) ``op`` ``value``."""

    key: bytes
    target: Target
    op: str
    value: bytes | int
    end: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the wire map."""
        return {
            "key": self.key,
            "end": self.end,
            "target": self.target,
            "op": self.op,
            "value": self.value,
        }


class CompareTarget:
    """The left side of a compare; use ``==``, ``!=``, ``<`` or ``>`` to get a Comparison."""

    __slots__ = ("end", "key", "target")
    __hash__ = None  # type: ignore[assignment]  # == builds a Comparison

    def __init__(self, target: Target, key: bytes | str, end: bytes | str | None) -> None:
        self.target = target
        self.key = to_bytes(key)
        self.end = None if end is None else to_bytes(end, "end")

    def _cmp(self, op: str, other: Any) -> Comparison:
        """Build a Comparison, checking the operand's type against the target."""
        if self.target == "value":
            value: bytes | int = to_bytes(other, "compare value")
        elif type(other) is int:
            value = other
        else:
            raise TypeError(f"a {self.target} compare needs an int, not {type(other).__name__}")
        return Comparison(self.key, self.target, op, value, self.end)

    def __eq__(self, other: Any) -> Comparison:  # type: ignore[override]
        """``target == other``."""
        return self._cmp("==", other)

    def __ne__(self, other: Any) -> Comparison:  # type: ignore[override]
        """``target != other``."""
        return self._cmp("!=", other)

    def __lt__(self, other: Any) -> Comparison:
        """``target < other``."""
        return self._cmp("<", other)

    def __gt__(self, other: Any) -> Comparison:
        """``target > other``."""
        return self._cmp(">", other)

    def __repr__(self) -> str:
        return f"Compare.{self.target}({self.key!r})"


class Compare:
    """Starts a compare: ``Compare.version(key) > 0``, ``Compare.value(key) == b"x"``."""

    @staticmethod
    def value(key: bytes | str, end: bytes | str | None = None) -> CompareTarget:
        """Compare the value of ``key`` (a missing key has none: every value compare fails)."""
        return CompareTarget("value", key, end)

    @staticmethod
    def version(key: bytes | str, end: bytes | str | None = None) -> CompareTarget:
        """Compare the version of ``key`` (0 if it does not exist)."""
        return CompareTarget("version", key, end)

    @staticmethod
    def create_revision(key: bytes | str, end: bytes | str | None = None) -> CompareTarget:
        """Compare the revision that created ``key`` (0 if it does not exist)."""
        return CompareTarget("create_revision", key, end)

    @staticmethod
    def mod_revision(key: bytes | str, end: bytes | str | None = None) -> CompareTarget:
        """Compare the revision that last modified ``key`` (0 if it does not exist)."""
        return CompareTarget("mod_revision", key, end)

    @staticmethod
    def lease(key: bytes | str, end: bytes | str | None = None) -> CompareTarget:
        """Compare the lease attached to ``key`` (0 for none)."""
        return CompareTarget("lease", key, end)


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One txn operation: ``kind`` is put, delete, range, txn or publish; ``params`` its wire
    params."""

    kind: Literal["put", "delete", "range", "txn", "publish"]
    params: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """Return the wire map (``{kind: params}``)."""
        return {self.kind: self.params}


def range_params(
    prefix: bytes | str = b"",
    *,
    end: bytes | str | None = None,
    limit: int = 0,
    revision: int = 0,
    keys_only: bool = False,
    count_only: bool = False,
    serializable: bool = False,
    count: bool = False,
) -> dict[str, Any]:
    """Build ``kv.range`` params: a prefix scan of ``prefix``, or [prefix, end) with ``end``
    (``count``: also answer the total number of keys in range, which reads all of them)."""
    key, stop = key_range(prefix, end=end, prefix=end is None)
    params: dict[str, Any] = {"key": key, "end": stop}
    return _with_options(
        params,
        limit=limit,
        revision=revision,
        keys_only=keys_only,
        count_only=count_only,
        serializable=serializable,
        count=count,
    )


def _with_options(params: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Add the options that differ from their default (0/False): smaller frames."""
    for name, value in options.items():
        if value:
            params[name] = value
    return params


def get_params(
    key: bytes | str, *, revision: int = 0, serializable: bool = False
) -> dict[str, Any]:
    """Build ``kv.range`` params that read the single key ``key``."""
    params = {"key": to_bytes(key)}
    if revision or serializable:
        _with_options(params, revision=revision, serializable=serializable)
    return params


def put_params(
    key: bytes | str, value: bytes | str, *, lease: int = 0, prev_kv: bool = False
) -> dict[str, Any]:
    """Build ``kv.put`` params; a value over ``MAX_VALUE_BYTES`` is refused here, before it
    is framed (the node would refuse it too)."""
    data = to_bytes(value, "value")
    if len(data) > MAX_VALUE_BYTES:
        raise InvalidArgumentError(
            f"value is {len(data)} bytes, over MAX_VALUE_BYTES ({MAX_VALUE_BYTES})",
            field="value",
            size=len(data),
            limit=MAX_VALUE_BYTES,
        )
    params = {"key": to_bytes(key), "value": data}
    if lease or prev_kv:
        _with_options(params, lease=lease, prev_kv=prev_kv)
    return params


def key_range(
    key: bytes | str, *, end: bytes | str | None = None, prefix: bool = False
) -> tuple[bytes, bytes | None]:
    """Resolve (key, end) for the wire: the single ``key``, [key, end), or the prefix ``key``
    (an empty prefix = every key)."""
    k = to_bytes(key)
    if prefix:
        if end is not None:
            raise ValueError("give either end= or prefix=True, not both")
        return prefix_range(k)
    return k, None if end is None else to_bytes(end, "end")


def delete_params(
    key: bytes | str, *, end: bytes | str | None = None, prefix: bool = False, prev_kv: bool = False
) -> dict[str, Any]:
    """Build ``kv.delete`` params: ``key``, [key, end), or every key under ``key``."""
    k, stop = key_range(key, end=end, prefix=prefix)
    return _with_options({"key": k, "end": stop}, prev_kv=prev_kv)


def txn_params(
    compare: list[Comparison] | tuple[Comparison, ...] = (),
    success: list[TxnOp] | tuple[TxnOp, ...] = (),
    failure: list[TxnOp] | tuple[TxnOp, ...] = (),
) -> dict[str, Any]:
    """Build ``kv.txn`` params from Comparison and TxnOp records."""
    for c in compare:
        if not isinstance(c, Comparison):
            raise TypeError(f"compare items must be built with Compare..., not {c!r}")
    for op in (*success, *failure):
        if not isinstance(op, TxnOp):
            raise TypeError(f"txn ops must be built with Op..., not {op!r}")
    return {
        "compare": [c.to_wire() for c in compare],
        "success": [op.to_wire() for op in success],
        "failure": [op.to_wire() for op in failure],
    }


class Op:
    """Builds txn operations: ``Op.put(k, v)``, ``Op.delete(k)``, ``Op.get(k)``, ``Op.range(p)``,
    ``Op.publish(name, subject, payload)``."""

    @staticmethod
    def put(key: bytes | str, value: bytes | str, lease: int = 0, prev_kv: bool = False) -> TxnOp:
        """Put ``value`` at ``key``."""
        return TxnOp("put", put_params(key, value, lease=lease, prev_kv=prev_kv))

    @staticmethod
    def delete(
        key: bytes | str,
        end: bytes | str | None = None,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> TxnOp:
        """Delete ``key``, [key, end), or every key under the prefix ``key``."""
        return TxnOp("delete", delete_params(key, end=end, prefix=prefix, prev_kv=prev_kv))

    @staticmethod
    def get(key: bytes | str, revision: int = 0) -> TxnOp:
        """Read the single key ``key``."""
        return TxnOp("range", get_params(key, revision=revision))

    @staticmethod
    def range(
        prefix: bytes | str = b"",
        end: bytes | str | None = None,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        count: bool = False,
    ) -> TxnOp:
        """Read every key under ``prefix`` (or in [prefix, end) with ``end``); ``count`` also
        answers the total number of keys in range (reading all of them)."""
        params = range_params(
            prefix,
            end=end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
            count=count,
        )
        return TxnOp("range", params)

    @staticmethod
    def publish(name: str, subject: str = "", payload: Any = None) -> TxnOp:
        """Publish an event to the journal if this branch runs (docs/events.md)."""
        return TxnOp("publish", {"name": name, "subject": subject, "payload": payload})

    @staticmethod
    def txn(
        compare: list[Comparison] | tuple[Comparison, ...] = (),
        success: list[TxnOp] | tuple[TxnOp, ...] = (),
        failure: list[TxnOp] | tuple[TxnOp, ...] = (),
    ) -> TxnOp:
        """A nested transaction."""
        return TxnOp("txn", txn_params(compare, success, failure))

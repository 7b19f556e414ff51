"""A KV state machine on real LMDB for the state machine's own tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aspen.errors import AspenError
from aspen.events import Event
from aspen.kv import (
    KVStateMachine,
    delete_command,
    lease_grant_command,
    put_command,
    range_request,
    txn_command,
)
from aspen.storage import Storage

__all__ = ["Store"]


class Store:
    """Applies commands at consecutive indexes, one write transaction per ``apply_all``."""

    def __init__(self, path: Path, term: int = 1) -> None:
        self.storage = Storage(path, sync=False)
        self.sm = KVStateMachine(self.storage)
        self.index = self.sm.applied_index()
        self.term = term

    def apply_all(self, commands: list[dict[str, Any]]) -> list[tuple[Any, list[Event]]]:
        """Apply ``commands`` in one transaction; return each (result, events)."""
        with self.storage.begin(write=True) as txn:
            out = []
            for command in commands:
                self.index += 1
                out.append(self.sm.apply(txn, self.index, self.term, command))
            return out

    def apply(self, command: dict[str, Any]) -> tuple[Any, list[Event]]:
        """Apply one command."""
        return self.apply_all([command])[0]

    def ok(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply one command that must succeed; return its result."""
        result, _ = self.apply(command)
        assert not isinstance(result, AspenError), result
        return result

    def put(self, key: str | bytes, value: str | bytes = "v", **kw: Any) -> dict[str, Any]:
        """Put; return the result."""
        return self.ok(put_command({"key": key, "value": value, **kw}))

    def put_rev(self, key: str | bytes, value: str | bytes = "v", **kw: Any) -> int:
        """Put; return the new revision."""
        return self.put(key, value, **kw)["header"]["revision"]

    def delete(self, key: str | bytes, **kw: Any) -> dict[str, Any]:
        """Delete; return the result."""
        return self.ok(delete_command({"key": key, **kw}))

    def txn(self, **params: Any) -> dict[str, Any]:
        """Run a txn; return the result."""
        return self.ok(txn_command(params))

    def grant(self, lease_id: int, ttl: int = 10) -> dict[str, Any]:
        """Grant a lease with a chosen id."""
        return self.ok(lease_grant_command({"ttl": ttl, "id": lease_id}, 1))

    def range(self, key: str | bytes, **kw: Any) -> dict[str, Any]:
        """Range read."""
        return self.sm.range(None, range_request({"key": key, **kw}))

    def kvs(self, **kw: Any) -> list[dict[str, Any]]:
        """Every record."""
        return self.range("\0", end="\0", **kw)["kvs"]

    def keys(self, key: str | bytes = "\0", end: str | bytes = "\0", **kw: Any) -> list[bytes]:
        """Keys in [key, end)."""
        return [kv["key"] for kv in self.range(key, end=end, **kw)["kvs"]]

    def revision(self) -> int:
        """Current revision."""
        return self.sm.current_revision()

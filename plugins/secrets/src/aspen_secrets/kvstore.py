"""The cluster :class:`~aspen_secrets.store.Store`: encrypted values in the node's KV.

A store path ``p`` lives at the KV key ``/_aspen/secrets/`` + ``p`` (UTF-8). Its value is
the msgpack of the engine's value, sealed by the keyring with the KV key as associated
data. A commit is one ``kv.txn``: every expectation becomes a compare (``create_revision
== 0`` for :data:`~aspen_secrets.store.ABSENT`, ``mod_revision == n`` otherwise) and every
write a put or delete of its success branch, so it is all-or-nothing and replicated.
Scans page through ``kv.range`` at one pinned revision, up to the caller's limit
(:mod:`aspen.kv.paging`); a LIST reads only the names it answers.

Reads are linearizable, but a request pays for that once: inside a
:func:`~aspen_secrets.consistency.read_scope` only its first read is linearizable and
the others are served from this node's state (see :mod:`aspen_secrets.consistency`).
Opened values are kept by ``(key, mod revision)`` (:class:`~aspen_secrets.opencache.
OpenedCache`), so reading an unchanged entry again costs no decryption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from aspen import limits as core_limits
from aspen.errors import InvalidArgumentError
from aspen.kv import paging
from aspen_secrets import consistency, limits
from aspen_secrets.keyring import ClusterKeyring
from aspen_secrets.opencache import OpenedCache
from aspen_secrets.store import ABSENT, Entry, Write, pack_value

__all__ = ["STORE_PREFIX", "KvStore"]

#: KV prefix of every store path.
STORE_PREFIX = b"/_aspen/secrets/"


def _check_limit(limit: int) -> None:
    """Refuse a listing limit outside 0..SECRETS_MAX_LIST_KEYS."""
    if limit > limits.SECRETS_MAX_LIST_KEYS or limit < 0:
        raise InvalidArgumentError(
            f"limit must be in 0..SECRETS_MAX_LIST_KEYS ({limits.SECRETS_MAX_LIST_KEYS})"
        )


class KvStore:
    """A :class:`~aspen_secrets.store.Store` over ``node``'s replicated KV, sealed by
    ``keyring``."""

    def __init__(self, node: Any, keyring: ClusterKeyring) -> None:
        self._node = node
        self._keyring = keyring
        self._opened = OpenedCache()

    @staticmethod
    def kv_key(path: str) -> bytes:
        """The KV key of a store path."""
        return STORE_PREFIX + path.encode()

    # ------------------------------------------------------------------ values
    async def _open(self, key: bytes, blob: bytes, revision: int) -> Any:
        plain = self._opened.get(key, revision)
        if plain is None:
            keyring = self._keyring.keyring
            if keyring.term_of(blob) not in keyring.keys:  # rotated on another node
                keyring = await self._keyring.reload()
            plain = keyring.decrypt(blob, key)
            self._opened.put(key, revision, plain)
        return msgpack.unpackb(plain, strict_map_key=False)

    async def _entry(self, kv: dict[str, Any]) -> Entry:
        revision = kv["mod_revision"]
        return Entry(await self._open(kv["key"], kv["value"], revision), revision)

    async def _range(self, params: dict[str, Any], serializable: bool | None) -> dict[str, Any]:
        """``kv.range`` linearizable unless ``serializable`` says otherwise (``None``: only
        when the request's read scope already had its linearizable read)."""
        if serializable is None:
            serializable = not consistency.needs_barrier()
        if serializable:
            params["serializable"] = True
        result = await self._node.call("kv.range", params)
        if not serializable:
            consistency.mark_fresh()
        return result

    # ------------------------------------------------------------------ reads
    async def get(self, path: str, *, serializable: bool | None = None) -> Entry | None:
        """See :meth:`Store.get`; ``serializable=True`` reads this node's state without a
        round to the leader (possibly a little stale), ``False`` always pays for a
        linearizable read, ``None`` (the default) is linearizable once per read scope."""
        kvs = (await self._range({"key": self.kv_key(path)}, serializable))["kvs"]
        return await self._entry(kvs[0]) if kvs else None

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        """``kv.range`` for :mod:`aspen.kv.paging`: its first page consistent as :meth:`_range`
        decides, the next ones read here at the first page's revision (this node has it)."""
        return await self._range(params, True if params.get("serializable") else None)

    async def _pages(self, prefix: str, limit: int, keys_only: bool) -> list[dict[str, Any]]:
        """Every KV record under ``prefix`` (at most ``limit``), read page by page at the
        revision of the first page."""
        _check_limit(limit)
        if not limit:
            return []
        found, _, _ = await paging.collect(
            self._call,
            self.kv_key(prefix),
            most=limit,
            page_size=limits.SECRETS_STORE_PAGE_SIZE,
            keys_only=keys_only,
            local=True,
        )
        return found

    async def scan(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> list[tuple[str, Entry]]:
        """See :meth:`Store.scan`."""
        cut = len(STORE_PREFIX)
        return [
            (kv["key"][cut:].decode(), await self._entry(kv))
            for kv in await self._pages(prefix, limit, keys_only=False)
        ]

    async def keys(self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS) -> list[str]:
        """See :meth:`Store.keys`."""
        cut = len(STORE_PREFIX)
        return [kv["key"][cut:].decode() for kv in await self._pages(prefix, limit, True)]

    async def children(
        self, prefix: str, *, limit: int = limits.SECRETS_MAX_LIST_KEYS
    ) -> tuple[list[str], bool]:
        """See :meth:`Store.children`: reads what it answers (the paths below a child folder
        are skipped, see :func:`aspen.kv.paging.children`)."""
        _check_limit(limit)
        names, truncated = await paging.children(
            self._call,
            self.kv_key(prefix),
            most=limit,
            page_size=limits.SECRETS_STORE_PAGE_SIZE,
            local=True,
        )
        return [name.decode() for name in names], truncated

    # ------------------------------------------------------------------ writes
    async def commit(self, writes: Sequence[Write]) -> bool:
        """See :meth:`Store.commit`: one ``kv.txn``; ``not_leader`` on a follower."""
        if len(writes) > core_limits.MAX_TXN_OPS:
            raise InvalidArgumentError(
                f"a commit of {len(writes)} writes is over MAX_TXN_OPS ({core_limits.MAX_TXN_OPS})"
            )
        if not writes:
            return True
        keyring = await self._keyring.refresh()
        compares: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        for w in writes:
            key = self.kv_key(w.path)
            if w.expect_revision is not None:
                target = "create_revision" if w.expect_revision == ABSENT else "mod_revision"
                compares.append(
                    {"key": key, "target": target, "op": "==", "value": w.expect_revision}
                )
            if w.delete:
                ops.append({"delete": {"key": key}})
            else:
                sealed = keyring.encrypt(pack_value(w.path, w.value), key)
                if len(sealed) > core_limits.MAX_VALUE_BYTES:
                    raise InvalidArgumentError(
                        f"the value at {w.path} is {len(sealed)} bytes once sealed, over "
                        f"MAX_VALUE_BYTES ({core_limits.MAX_VALUE_BYTES})"
                    )
                ops.append({"put": {"key": key, "value": sealed}})
        result = await self._node.call("kv.txn", {"compare": compares, "success": ops})
        return bool(result["succeeded"])

"""The async client: ``async with aspen.aconnect("127.0.0.1:2379", token=t) as c:``.

Runs on asyncio (and uvloop) with no task of its own, and on trio through anyio.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from aspen.client.blobs import BlobClient
from aspen.client.connection import (
    ClientStream,
    Connection,
    NotSentError,
    open_connection,
    parse_endpoint,
)
from aspen.client.events import EventsClient
from aspen.client.records import (
    DeleteResult,
    KeyValue,
    Lease,
    LeaseInfo,
    PutResult,
    RangeResult,
    TxnResult,
    WatchResponse,
    kv_or_none,
)
from aspen.client.txn import (
    Comparison,
    TxnOp,
    delete_params,
    get_params,
    key_range,
    put_params,
    range_params,
    txn_params,
)
from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    NotLeaderError,
    UnauthorizedError,
    UnavailableError,
)
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.kv import paging
from aspen.limits import (
    CLIENT_FAILOVER_RETRY_SECONDS,
    CLIENT_MAX_REDIRECTS,
    CLIENT_SCAN_PAGE_SIZE,
    CONNECT_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)
from aspen.transport.framing import running_on_asyncio

__all__ = [
    "READ_ONLY_METHODS",
    "AsyncClient",
    "KVClient",
    "LeaseClient",
    "Stream",
    "Watch",
    "aconnect",
    "split_endpoints",
]

_monotonic = time.monotonic

#: Methods that change nothing: a call lost with its connection is retried on another node.
#: (A write whose connection dropped after it was sent may have been applied: it is never
#: retried blindly; the caller gets ``unavailable`` and decides.)
READ_ONLY_METHODS = frozenset(
    {
        "kv.range",
        "node.status",
        "cluster.status",
        "lease.ttl",
        "lease.list",
        "blob.stat",
        "blob.list",
        "blob.pins",
        "blob.status",
        "events.read",
        "events.status",
    }
)
#: First pause before retrying when no leader is known; doubles up to ``_MAX_BACKOFF``.
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 0.5


def split_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    """Return the ``host:port`` endpoints of ``"a:1,b:2"`` (``tcp://`` prefixes dropped)."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        host, port = parse_endpoint(text)
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not out:
        raise ValueError(f"no endpoint in {endpoints!r}")
    return out


@functools.cache
def client_extension(name: str) -> Any:
    """The class an installed plugin offers as ``client.<name>`` (entry point group
    ``aspen.client``), or ``None``."""
    for entry in importlib.metadata.entry_points(group="aspen.client", name=name):
        return entry.load()
    return None


class AsyncClient:
    """An Aspen client: ``call``/``stream`` any method, or use ``kv``, ``lease``, ``watch``.

    Use as ``async with``; the connection is opened on entry and re-opened (trying the
    endpoints in order, starting after the one that failed) on the first call after it
    drops.

    Across a leader change a call is retried for up to ``failover_timeout`` seconds when
    that is safe: it was refused with ``not_leader`` (the node proposed nothing), it was never
    sent (no connection to any endpoint, or the connection closed before it went out), or
    it is read-only (:data:`READ_ONLY_METHODS`). A write whose connection dropped after it
    was sent fails with ``UnavailableError``: it may or may not have been applied.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        token: str | None = None,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        failover_timeout: float = CLIENT_FAILOVER_RETRY_SECONDS,
    ) -> None:
        self.endpoints = split_endpoints(endpoints)
        self.token = token if token is not None else os.environ.get("ASPEN_TOKEN")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        #: Seconds a call keeps retrying what is safe to retry (see the class docstring).
        self.failover_timeout = failover_timeout
        self.kv = KVClient(self)
        self.lease = LeaseClient(self)
        #: The blob store: put, get, stat, pin, unpin, list (:class:`BlobClient`).
        self.blobs = BlobClient(self)
        #: The event journal (:class:`~aspen.client.events.EventsClient`).
        self.events = EventsClient(self)
        self._conn: Connection | None = None
        self._index = -1
        self._lock: anyio.Lock | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __getattr__(self, name: str) -> Any:
        """A plugin's client API, e.g. ``client.pubsub``: the ``aspen.client`` entry point
        named ``name`` (a class taking this client), made once per client."""
        factory = None if name.startswith("_") else client_extension(name)
        if factory is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        api = factory(self)
        setattr(self, name, api)
        return api

    async def __aenter__(self) -> AsyncClient:
        """Connect (raise ``UnavailableError`` if no endpoint answers)."""
        if not running_on_asyncio():
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
        try:
            await self.connect()
        except BaseException:
            await self._exit_task_group()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection."""
        await self.aclose()
        await self._exit_task_group()

    async def _exit_task_group(self) -> None:
        """Leave the task group that runs the connection's tasks outside asyncio."""
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    async def connect(self) -> AsyncClient:
        """Make sure a connection is open; return self."""
        self._closed = False
        await self._connection()
        return self

    async def aclose(self) -> None:
        """Close the connection; later calls fail until :meth:`connect` is called."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def endpoint(self) -> str | None:
        """The endpoint currently connected to (``None`` if not connected)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.endpoint

    @property
    def server_hello(self) -> dict[str, Any]:
        """The hello of the connected node (``node_id``, ``server``, ``features``)."""
        return {} if self._conn is None else self._conn.server_hello

    # ------------------------------------------------------------------ connecting
    async def _connection(self, prefer: str | None = None) -> Connection:
        """Return an open connection, connecting (to ``prefer`` first) if needed."""
        conn = self._conn
        if conn is not None and not conn.closed and (prefer is None or conn.endpoint == prefer):
            return conn
        if self._closed:
            raise UnavailableError("the client is closed; call connect() to reopen it")
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed and (prefer is None or conn.endpoint == prefer):
                return conn
            return await self._connect_any(prefer)

    async def _connect_any(self, prefer: str | None) -> Connection:
        """Try ``prefer``, then every endpoint in order after the last one used."""
        n = len(self.endpoints)
        order = [self.endpoints[(self._index + 1 + i) % n] for i in range(n)]
        if prefer is not None:
            order = [prefer, *(e for e in order if e != prefer)]
        failures: list[str] = []
        for endpoint in order:
            try:
                conn = await open_connection(
                    endpoint,
                    self.token,
                    connect_timeout=self.connect_timeout,
                    hello_timeout=self.connect_timeout,
                    task_group=self._tg,
                )
            except (UnauthorizedError, InvalidArgumentError):
                raise
            except (AspenError, OSError, TimeoutError) as exc:
                failures.append(f"{endpoint} ({_describe(exc)})")
                continue
            if endpoint in self.endpoints:
                self._index = self.endpoints.index(endpoint)
            old, self._conn = self._conn, conn
            if old is not None and not old.closed:
                old.close_when_idle = True
                if not old.pending:
                    old.close()
            return conn
        raise NotSentError(
            "could not connect to any endpoint: " + "; ".join(failures),
            endpoints=order,
            failures=failures,
        )

    # ------------------------------------------------------------------ calls
    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``method`` with ``params``; return its result or raise its error."""
        t = self.timeout if timeout is None else timeout
        p = {} if params is None else params
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                return await conn.request(method, p, t)
            except AspenTimeoutError:
                self._abandon(conn)  # a hung (paused, partitioned) node: use another next time
                raise
            except AspenError as exc:
                if not self._may_retry(exc, method):
                    raise
                return await self._retry(exc, method, p, t)
        return await self._retry(None, method, p, t)

    def _may_retry(self, exc: AspenError, method: str) -> bool:
        """Whether retrying ``method`` after ``exc`` cannot apply it twice."""
        if isinstance(exc, NotLeaderError):
            return True  # refused before it was proposed (or a read)
        if isinstance(exc, NotSentError):
            return len(self.endpoints) > 1 or not exc.details.get("failures")
        return isinstance(exc, UnavailableError) and method in READ_ONLY_METHODS

    async def _retry(
        self, exc: AspenError | None, method: str, params: dict[str, Any], timeout: float
    ) -> Any:
        """Send ``method`` (again) until it succeeds, fails in a way that is not safe to
        retry, or ``failover_timeout`` seconds have passed; then raise the last error."""
        deadline = _monotonic() + self.failover_timeout
        redirects = 0
        backoff = _FIRST_BACKOFF
        while True:
            prefer = None
            if exc is not None:
                if isinstance(exc, NotLeaderError) and redirects < CLIENT_MAX_REDIRECTS:
                    prefer = _leader_endpoint(exc)
                if prefer is None:
                    self._leave_current(exc)
                    pause = min(backoff, deadline - _monotonic())
                    if pause <= 0:
                        raise exc
                    await anyio.sleep(pause)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                else:
                    redirects += 1
            conn: Connection | None = None
            try:
                conn = await self._connection(prefer=prefer)
                return await conn.request(method, params, timeout)
            except AspenTimeoutError:
                if conn is not None:
                    self._abandon(conn)
                raise
            except AspenError as again:
                if not self._may_retry(again, method) or _monotonic() >= deadline:
                    raise
                exc = again

    def _leave_current(self, exc: AspenError) -> None:
        """After a leaderless ``not_leader``, try another endpoint next (if there is one)."""
        if isinstance(exc, NotLeaderError) and self._conn is not None:
            self._abandon(self._conn)

    def _abandon(self, conn: Connection) -> None:
        """Stop using ``conn`` for new requests when other endpoints exist."""
        if len(self.endpoints) > 1 and conn is self._conn:
            self._conn = None
            conn.close_when_idle = True
            if not conn.pending:
                conn.close()

    def stream(self, method: str, params: dict[str, Any] | None = None) -> Stream:
        """Start a streaming call: iterate it (``async for``); closing it cancels it."""
        return Stream(self, method, {} if params is None else params)

    async def status(self) -> dict[str, Any]:
        """Return the node's ``node.status`` map."""
        return await self.call("node.status")

    def watch(
        self,
        key: bytes | str,
        *,
        end: bytes | str | None = None,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filters: Sequence[str] = (),
    ) -> Watch:
        """Watch ``key`` (or [key, end), or the prefix ``key``): ``async with c.watch(k) as w``."""
        k, stop = key_range(key, end=end, prefix=prefix)
        params: dict[str, Any] = {"key": k, "end": stop, "start_revision": start_revision}
        if prev_kv:
            params["prev_kv"] = True
        if progress_notify:
            params["progress_notify"] = True
        if filters:
            params["filters"] = list(filters)
        return Watch(self, "kv.watch", params)


def _describe(exc: BaseException) -> str:
    """A short reason for a failed connection attempt."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, AspenError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _leader_endpoint(exc: NotLeaderError) -> str | None:
    """The ``host:port`` of the leader hinted by a ``not_leader`` error, if usable."""
    leader = exc.details.get("leader")
    if not isinstance(leader, str) or not leader:
        return None
    try:
        return split_endpoints(leader)[0]
    except ValueError:
        return None


class Stream:
    """A streaming call: ``async for item in stream``; ``aclose()`` (or leaving
    ``async with``) cancels it on the server."""

    def __init__(self, client: AsyncClient, method: str, params: dict[str, Any]) -> None:
        self.client = client
        self.method = method
        self.params = params
        self._inner: ClientStream | None = None
        self._closed = False

    async def _open(self) -> None:
        """Send the request (once)."""
        if self._inner is None:
            conn = await self.client._connection()
            self._inner = conn.stream(self.method, self.params)

    async def __aenter__(self) -> Stream:
        """Start the stream."""
        await self._open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Cancel the stream."""
        await self.aclose()

    def __aiter__(self) -> Stream:
        """Return self."""
        return self

    async def __anext__(self) -> Any:
        """Return the next item."""
        if self._closed:
            raise StopAsyncIteration
        if self._inner is None:
            await self._open()
        return await self._inner.__anext__()  # type: ignore[union-attr]

    async def aclose(self) -> None:
        """Stop the stream (sends ``cancel`` if it is still running)."""
        self._closed = True
        if self._inner is not None:
            await self._inner.aclose()

    async def cancel(self) -> None:
        """Same as :meth:`aclose`."""
        await self.aclose()


class Watch(Stream):
    """A watch: yields :class:`WatchResponse`; ``revision`` is the store revision at creation.

    ``async with c.watch(key) as w`` returns once the server has registered the watch, so
    every change after that is seen.
    """

    revision: int = 0

    async def _open(self) -> None:
        """Start the watch and wait for the server's ``created`` message."""
        if self._inner is not None:
            return
        await super()._open()
        try:
            with anyio.fail_after(self.client.timeout):
                first = await self._inner.__anext__()  # type: ignore[attr-defined]
            if not (isinstance(first, dict) and first.get("created")):
                raise UnavailableError(f"unexpected first watch message: {first!r}")
        except BaseException:
            await self.aclose()
            raise
        self.revision = (first.get("header") or {}).get("revision", 0)

    async def __anext__(self) -> WatchResponse:
        """Return the next batch of events (or progress notification)."""
        return WatchResponse.from_wire(await super().__anext__())


class KVClient:
    """``client.kv``: put, get, range, scan, delete, txn, compact."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def put(
        self, key: bytes | str, value: bytes | str, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Write ``value`` at ``key``; return the revision (and the previous record if asked)."""
        result = await self._client.call(
            "kv.put", put_params(key, value, lease=lease, prev_kv=prev_kv)
        )
        return PutResult.from_wire(result)

    async def get(
        self, key: bytes | str, *, revision: int = 0, serializable: bool = False
    ) -> KeyValue | None:
        """Return the record of ``key`` (at ``revision`` if given), or ``None``."""
        result = await self._client.call(
            "kv.range", get_params(key, revision=revision, serializable=serializable)
        )
        kvs = result.get("kvs")
        return kv_or_none(kvs[0]) if kvs else None

    async def range(
        self,
        prefix: bytes | str = b"",
        *,
        end: bytes | str | None = None,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        count: bool = False,
    ) -> RangeResult:
        """Read every key under ``prefix`` (or in [prefix, end)); one page of at most
        ``limit`` keys and ``MAX_RANGE_PAGE_BYTES`` (``more`` says whether keys follow).

        A page costs what it returns. The total ``count`` of the range is answered only
        with ``count=True`` (or ``count_only=True``): it reads every key in range.
        """
        params = range_params(
            prefix,
            end=end,
            limit=limit,
            revision=revision,
            keys_only=keys_only,
            count_only=count_only,
            serializable=serializable,
            count=count,
        )
        return RangeResult.from_wire(await self._client.call("kv.range", params))

    async def scan(
        self,
        prefix: bytes | str = b"",
        *,
        end: bytes | str | None = None,
        page_size: int = CLIENT_SCAN_PAGE_SIZE,
        revision: int = 0,
        keys_only: bool = False,
        serializable: bool = False,
    ) -> AsyncIterator[KeyValue]:
        """Yield every record under ``prefix`` (or in [prefix, end)), page by page, all at
        the revision of the first page; each page continues after the last key of the one
        before (pages are cut at ``page_size`` keys or MAX_RANGE_PAGE_BYTES)."""
        key, stop = key_range(prefix, end=end, prefix=end is None)
        async for page in paging.pages(
            self._client.call,
            key,
            end=stop,
            page_size=page_size,
            revision=revision,
            keys_only=keys_only,
            serializable=serializable,
        ):
            for kv in RangeResult.from_wire(page).kvs:
                yield kv

    async def delete(
        self,
        key: bytes | str,
        *,
        end: bytes | str | None = None,
        prefix: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        """Delete ``key`` (or [key, end), or every key under the prefix ``key``)."""
        params = delete_params(key, end=end, prefix=prefix, prev_kv=prev_kv)
        return DeleteResult.from_wire(await self._client.call("kv.delete", params))

    async def txn(
        self,
        compare: Sequence[Comparison] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        """If every compare holds run ``success``, else ``failure``, atomically."""
        params = txn_params(tuple(compare), tuple(success), tuple(failure))
        return TxnResult.from_wire(await self._client.call("kv.txn", params))

    async def compact(self, revision: int) -> int:
        """Drop history before ``revision``; return the store revision."""
        result = await self._client.call("kv.compact", {"revision": revision})
        return (result.get("header") or {}).get("revision", revision)


class LeaseClient:
    """``client.lease``: grant, revoke, keepalive, ttl, list."""

    __slots__ = ("_client",)

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def grant(self, ttl: int, *, id: int = 0) -> Lease:
        """Grant a lease of ``ttl`` seconds (``id`` 0: the node picks one)."""
        result = await self._client.call("lease.grant", {"ttl": ttl, "id": id})
        return Lease(result["id"], result["ttl"])

    async def revoke(self, id: int) -> None:
        """Revoke lease ``id``, deleting its keys."""
        await self._client.call("lease.revoke", {"id": id})

    async def keepalive(self, id: int) -> int:
        """Renew lease ``id``; return its TTL."""
        result = await self._client.call("lease.keepalive", {"id": id})
        return result["ttl"]

    async def ttl(self, id: int, *, keys: bool = False) -> LeaseInfo:
        """Return the remaining and granted TTL of lease ``id`` (and its keys if asked)."""
        result = await self._client.call("lease.ttl", {"id": id, "keys": keys})
        return LeaseInfo(
            result["id"], result["ttl"], result["granted_ttl"], list(result.get("keys") or ())
        )

    async def list(self) -> list[int]:
        """Return the ids of every live lease."""
        result = await self._client.call("lease.list")
        return list(result.get("leases") or ())


def aconnect(
    endpoints: str | Sequence[str],
    token: str | None = None,
    *,
    timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    failover_timeout: float = CLIENT_FAILOVER_RETRY_SECONDS,
) -> AsyncClient:
    """Return an :class:`AsyncClient`; ``async with aconnect(...) as c`` connects it.

    ``endpoints`` is ``"host:port[,host:port...]"``; ``token`` defaults to ``$ASPEN_TOKEN``;
    ``failover_timeout`` is how long a call retries what is safe to retry across a leader
    change (see :class:`AsyncClient`).
    """
    return AsyncClient(
        endpoints,
        token,
        timeout=timeout,
        connect_timeout=connect_timeout,
        failover_timeout=failover_timeout,
    )

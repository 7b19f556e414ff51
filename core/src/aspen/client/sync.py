"""The blocking client: ``with aspen.connect("127.0.0.1:2379", token=t) as c:``.

An :class:`~aspen.client.aclient.AsyncClient` runs on an event loop in a background thread
(``anyio.from_thread.start_blocking_portal``); every method mirrors the async one without
``await``. Streams, watches and scans become blocking iterators with ``cancel()``/``close()``.

A client that is never closed is closed when it is garbage-collected or, at the latest, when
the interpreter exits (a ``weakref.finalize``, run by ``atexit`` while the loop thread still
runs), so forgetting ``close()`` never hangs the interpreter at exit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from aspen.client.aclient import AsyncClient, Stream
from aspen.limits import (
    CLIENT_FAILOVER_RETRY_SECONDS,
    CONNECT_TIMEOUT_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)

__all__ = ["SyncClient", "SyncIterator", "connect"]


async def _next_item(iterator: Any) -> tuple[bool, Any]:
    """Return ``(True, item)`` or ``(False, None)`` at the end of ``iterator``."""
    try:
        return True, await iterator.__anext__()
    except StopAsyncIteration:
        return False, None


class SyncIterator:
    """A blocking iterator over an async stream, watch or scan; ``close()`` cancels it."""

    def __init__(self, portal: BlockingPortal, aiterator: Any) -> None:
        self._portal = portal
        self._aiterator = aiterator
        self._done = False

    def __iter__(self) -> SyncIterator:
        """Return self."""
        return self

    def __next__(self) -> Any:
        """Block until the next item arrives (``StopIteration`` at the end or after close)."""
        if self._done:
            raise StopIteration
        ok, item = self._portal.call(_next_item, self._aiterator)
        if not ok:
            self._done = True
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop iterating and cancel the stream on the server; safe from any thread."""
        if not self._done:
            self._done = True
            self._portal.call(self._aiterator.aclose)

    cancel = close

    def __enter__(self) -> SyncIterator:
        """Return self."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the iterator."""
        self.close()

    @property
    def revision(self) -> int:
        """For a watch: the store revision when it was created."""
        return getattr(self._aiterator, "revision", 0)

    def __getattr__(self, name: str) -> Any:
        """Other public attributes of the async iterator (a subscription's ``offsets``)."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._aiterator, name)


class _Mirror:
    """Exposes an async object's coroutine methods as blocking ones (same signatures)."""

    def __init__(self, owner: SyncClient, target: Any) -> None:
        self._owner = owner
        self._target = target

    def __getattr__(self, name: str) -> Any:
        """Wrap ``target.name`` so that calling it blocks until the coroutine is done."""
        attr = getattr(self._target, name)
        if name.startswith("_") or not callable(attr):
            return attr
        wrapped = self._owner._blocking(attr)
        setattr(self, name, wrapped)  # found directly next time
        return wrapped

    def __dir__(self) -> list[str]:
        """List the target's public names."""
        return [n for n in dir(self._target) if not n.startswith("_")]


class SyncClient:
    """A blocking Aspen client; use as ``with connect(...) as c:`` or call :meth:`close`."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        token: str | None = None,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        failover_timeout: float = CLIENT_FAILOVER_RETRY_SECONDS,
        use_uvloop: bool = False,
    ) -> None:
        self.aclient = AsyncClient(
            endpoints,
            token,
            timeout=timeout,
            connect_timeout=connect_timeout,
            failover_timeout=failover_timeout,
        )
        self._use_uvloop = use_uvloop
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._client_cm: AbstractContextManager[AsyncClient] | None = None
        self._portal: BlockingPortal | None = None
        self._finalizer: weakref.finalize | None = None
        #: ``c.kv.put(...)`` and the rest of :class:`~aspen.client.aclient.KVClient`, blocking.
        self.kv = _Mirror(self, self.aclient.kv)
        #: :class:`~aspen.client.aclient.LeaseClient`, blocking.
        self.lease = _Mirror(self, self.aclient.lease)
        #: :class:`~aspen.client.blobs.BlobClient`, blocking (``get`` is an iterator).
        self.blobs = _Mirror(self, self.aclient.blobs)
        #: :class:`~aspen.client.events.EventsClient`, blocking (``tail`` is an iterator).
        self.events = _Mirror(self, self.aclient.events)

    def __getattr__(self, name: str) -> Any:
        """A plugin's client API (``c.pubsub``), blocking: see ``AsyncClient.__getattr__``."""
        if name.startswith("_") or name == "aclient":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        api = _Mirror(self, getattr(self.aclient, name))
        setattr(self, name, api)
        return api

    def open(self) -> SyncClient:
        """Start the background loop and connect; return self."""
        if self._portal is not None:
            return self
        portal_cm = start_blocking_portal(
            "asyncio", backend_options={"use_uvloop": self._use_uvloop}
        )
        portal = portal_cm.__enter__()
        try:
            client_cm = portal.wrap_async_context_manager(self.aclient)
            client_cm.__enter__()
        except BaseException as exc:
            portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._portal_cm, self._portal, self._client_cm = portal_cm, portal, client_cm
        self._finalizer = weakref.finalize(self, _close_loop, client_cm, portal_cm)
        return self

    def close(self) -> None:
        """Close the connection and stop the background loop."""
        finalizer, self._finalizer = self._finalizer, None
        self._portal_cm = self._client_cm = self._portal = None
        if finalizer is not None:
            finalizer()

    def __enter__(self) -> SyncClient:
        """Connect."""
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        """Close."""
        self.close()

    @property
    def portal(self) -> BlockingPortal:
        """The portal into the client's event loop (opening the client if needed)."""
        if self._portal is None:
            self.open()
        return self._portal  # type: ignore[return-value]

    def _blocking(self, afunc: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a coroutine function (or async generator function) as a blocking one."""
        if inspect.isasyncgenfunction(afunc):

            @functools.wraps(afunc)
            def iterate(*args: Any, **kwargs: Any) -> SyncIterator:
                return SyncIterator(self.portal, afunc(*args, **kwargs))

            return iterate

        @functools.wraps(afunc)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = self.portal.call(functools.partial(afunc, *args, **kwargs))
            if hasattr(result, "__anext__"):  # an opened stream: iterate it blocking
                return SyncIterator(self.portal, result)
            return result

        return call

    # ------------------------------------------------------------------ the client's own methods
    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``method``; return its result or raise its error."""
        return self.portal.call(
            functools.partial(self.aclient.call, method, params, timeout=timeout)
        )

    def status(self) -> dict[str, Any]:
        """Return the node's ``node.status`` map."""
        return self.portal.call(self.aclient.status)

    def _open_stream(self, stream: Stream) -> SyncIterator:
        """Start ``stream`` on the loop and wrap it as a blocking iterator."""
        self.portal.call(stream._open)
        return SyncIterator(self.portal, stream)

    def stream(self, method: str, params: dict[str, Any] | None = None) -> SyncIterator:
        """Start a streaming call; iterate the result, ``close()`` it to cancel."""
        return self._open_stream(self.aclient.stream(method, params))

    def watch(self, key: bytes | str, **options: Any) -> SyncIterator:
        """Start a watch (same options as ``AsyncClient.watch``); registered on return."""
        return self._open_stream(self.aclient.watch(key, **options))

    @property
    def endpoint(self) -> str | None:
        """The endpoint currently connected to."""
        return self.aclient.endpoint


def _close_loop(
    client_cm: AbstractContextManager[AsyncClient],
    portal_cm: AbstractContextManager[BlockingPortal],
) -> None:
    """Close the client, then stop its loop and join its thread (holds no SyncClient)."""
    try:
        client_cm.__exit__(None, None, None)
    except RuntimeError:  # collected on the loop's own thread: the loop stops with the thread
        return
    finally:
        with contextlib.suppress(RuntimeError):
            portal_cm.__exit__(None, None, None)


def connect(
    endpoints: str | Sequence[str],
    token: str | None = None,
    *,
    timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    failover_timeout: float = CLIENT_FAILOVER_RETRY_SECONDS,
    use_uvloop: bool = False,
) -> SyncClient:
    """Return a :class:`SyncClient`; ``with connect(...) as c`` connects and closes it
    (one that is never closed is closed when the interpreter exits)."""
    return SyncClient(
        endpoints,
        token,
        timeout=timeout,
        connect_timeout=connect_timeout,
        failover_timeout=failover_timeout,
        use_uvloop=use_uvloop,
    )

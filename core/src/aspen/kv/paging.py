"""Read a key range page by page: what plugins (and clients) use to list a prefix.

The rule (docs/plugins.md): **a page costs what it returns; never count or materialise a
whole prefix.** Every helper here reads ``kv.range`` pages of at most ``page_size`` keys
(the node also cuts a page at ``MAX_RANGE_PAGE_BYTES`` and says ``more``), continues after
the last key of the page before, and reads every page at the revision of the first, so a
listing is one consistent snapshot however many pages it takes. Nothing asks the node for
a ``count``.

``call`` is any ``async (method, params) -> result``: a plugin's ``node.call`` or a client's
``call``. With ``local=True`` (a plugin's ``node.call``: every page comes from the same
node), the pages after the first are read ``serializable`` at the first page's revision,
which that node has, so only the first page pays for a linearizable read.

    async for kv in paging.scan(node.call, b"/_aspen/myplugin/items/"):
        ...
    names, truncated = await paging.children(node.call, b"/_aspen/myplugin/", most=1000)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypedDict, Unpack

from aspen.kv.keys import prefix_range
from aspen.limits import CLIENT_SCAN_PAGE_SIZE

__all__ = [
    "CHILDREN_FIRST_PAGE",
    "Call",
    "ScanOptions",
    "children",
    "collect",
    "page_after",
    "pages",
    "scan",
]

#: Keys the first page of :func:`children` asks for (later pages follow what they find).
CHILDREN_FIRST_PAGE = 8
#: ``async (method, params) -> result``: ``NodeAPI.call`` or ``AsyncClient.call``.
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


def _continue_at(params: dict[str, Any], key: bytes, page: dict[str, Any], local: bool) -> None:
    """Point the ``kv.range`` ``params`` of the last ``page`` at the next page: from ``key``,
    at the first page's revision, and (``local``) from this node's own state."""
    params["key"] = key
    params.setdefault("revision", page["header"]["revision"])  # the first page's
    if local:
        params["serializable"] = True


async def pages(
    call: Call,
    prefix: bytes,
    *,
    end: bytes | None = None,
    page_size: int = CLIENT_SCAN_PAGE_SIZE,
    revision: int = 0,
    keys_only: bool = False,
    serializable: bool = False,
    local: bool = False,
    most: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield the ``kv.range`` answers (wire maps: ``header``, ``kvs``, ``more``) of every key
    under ``prefix`` (or in [prefix, end) with ``end``), page by page, all at one revision
    (``revision``, or the first page's); with ``most``, no more than that many records in
    all (the last page asks for what is left)."""
    key, stop = prefix_range(prefix) if end is None else (prefix, end)
    params: dict[str, Any] = {"key": key, "end": stop}
    left = most
    if keys_only:
        params["keys_only"] = True
    if serializable:
        params["serializable"] = True
    if revision:
        params["revision"] = revision
    while left is None or left > 0:
        params["limit"] = page_size if left is None else min(page_size, left)
        page = await call("kv.range", params)
        yield page
        kvs = page["kvs"]
        if not page.get("more") or not kvs:
            return
        if left is not None:
            left -= len(kvs)
        _continue_at(params, kvs[-1]["key"] + b"\0", page, local)


class ScanOptions(TypedDict, total=False):
    """What :func:`scan` passes on to :func:`pages` (the same keywords, same defaults)."""

    end: bytes | None
    page_size: int
    revision: int
    keys_only: bool
    serializable: bool
    local: bool


async def scan(
    call: Call, prefix: bytes, **options: Unpack[ScanOptions]
) -> AsyncIterator[dict[str, Any]]:
    """Yield every record (wire ``kv`` map) under ``prefix`` (or in [prefix, end)), in key
    order, read as :func:`pages` reads them (``options`` are its keywords); stop iterating
    to stop reading."""
    async for page in pages(call, prefix, **options):
        for kv in page["kvs"]:
            yield kv


async def collect(
    call: Call,
    prefix: bytes,
    *,
    most: int,
    page_size: int = CLIENT_SCAN_PAGE_SIZE,
    keys_only: bool = False,
    serializable: bool = False,
    local: bool = False,
) -> tuple[list[dict[str, Any]], bool, int]:
    """``(records, truncated, revision)``: the first ``most`` records under ``prefix``, whether
    more follow, and the revision they were read at. For prefixes the caller bounds (a
    plugin's ``MAX_…`` constant): it reads ``most + 1`` keys at the very most."""
    records: list[dict[str, Any]] = []
    revision = 0
    async for page in pages(
        call,
        prefix,
        page_size=page_size,
        keys_only=keys_only,
        serializable=serializable,
        local=local,
        most=most + 1,
    ):
        revision = revision or page["header"]["revision"]
        records.extend(page["kvs"])
        if len(records) > most:
            return records[:most], True, revision
    return records, False, revision


async def children(
    call: Call,
    prefix: bytes,
    *,
    most: int,
    delimiter: bytes = b"/",
    page_size: int = CLIENT_SCAN_PAGE_SIZE,
    serializable: bool = False,
    local: bool = False,
) -> tuple[list[bytes], bool]:
    """``(names, truncated)``: the distinct next segments of the keys under ``prefix``, in
    order, at most ``most`` of them; a segment with keys below it ends in ``delimiter``
    (keys ``a/b``, ``a/c/d``, ``a/c/e`` under ``a/`` give ``[b"b", b"c/"]``, a Vault LIST).

    Costs what it answers: a page that ends inside a child folder goes on from the
    folder's end (its other keys are never read), and pages grow only while they find new
    names: the first asks for CHILDREN_FIRST_PAGE keys, each next one for twice as many as
    the one before found names (at least CHILDREN_FIRST_PAGE, at most ``page_size``)."""
    key, end = prefix_range(prefix)
    names: list[bytes] = []
    params: dict[str, Any] = {"key": key, "end": end, "keys_only": True}
    if serializable:
        params["serializable"] = True
    limit = CHILDREN_FIRST_PAGE
    while True:
        params["limit"] = min(limit, page_size, most + 1 - len(names))
        page = await call("kv.range", params)
        found, skip_to = 0, None
        for kv in page["kvs"]:
            if skip_to is not None and kv["key"] < skip_to:
                continue  # below a folder already named
            head, sep, _ = kv["key"][len(prefix) :].partition(delimiter)
            skip_to = None
            if not head and not sep:
                continue  # the prefix itself
            names.append(head + sep)
            found += 1
            if len(names) > most:
                return names[:most], True
            if sep:
                skip_to = prefix_range(prefix + head + sep)[1]
                if skip_to == b"\0":  # the folder runs to the end of the keyspace
                    return names, False
        if not page.get("more") or not page["kvs"]:
            return names, False
        _continue_at(params, skip_to or page["kvs"][-1]["key"] + b"\0", page, local)
        limit = max(CHILDREN_FIRST_PAGE, 2 * found)


async def page_after(
    call: Call,
    prefix: bytes,
    *,
    limit: int,
    after: bytes = b"",
    keys_only: bool = False,
    serializable: bool = False,
) -> dict[str, Any]:
    """One page of a paginated listing: the ``kv.range`` answer for up to ``limit`` records
    under ``prefix`` whose key comes after ``prefix + after`` (from the first when ``after``
    is empty). What a plugin's ``list`` method answers, with ``more``: the caller asks again
    with its last name as ``after``."""
    start, end = prefix_range(prefix)
    key = prefix + after + b"\0" if after else start
    params: dict[str, Any] = {"key": key, "end": end, "limit": limit}
    if keys_only:
        params["keys_only"] = True
    if serializable:
        params["serializable"] = True
    return await call("kv.range", params)

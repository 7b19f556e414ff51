"""The Aspen client: :func:`aconnect` (async) and :func:`connect` (blocking).

async with aspen.aconnect("127.0.0.1:2379", token=t) as c:
    await c.kv.put(b"k", b"v")
    kv = await c.kv.get(b"k")
"""

from __future__ import annotations

from aspen.client.aclient import (
    AsyncClient,
    KVClient,
    LeaseClient,
    Stream,
    Watch,
    aconnect,
    split_endpoints,
)
from aspen.client.connection import ClientStream, Connection, open_connection, parse_endpoint
from aspen.client.records import (
    DeleteResult,
    KeyValue,
    Lease,
    LeaseInfo,
    PublishResult,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
    WatchResponse,
)
from aspen.client.sync import SyncClient, SyncIterator, connect
from aspen.client.txn import Compare, CompareTarget, Comparison, Op, TxnOp
from aspen.kv.keys import prefix_end

__all__ = [
    "AsyncClient",
    "ClientStream",
    "Compare",
    "CompareTarget",
    "Comparison",
    "Connection",
    "DeleteResult",
    "KVClient",
    "KeyValue",
    "Lease",
    "LeaseClient",
    "LeaseInfo",
    "Op",
    "PublishResult",
    "PutResult",
    "RangeResult",
    "Stream",
    "SyncClient",
    "SyncIterator",
    "TxnOp",
    "TxnResult",
    "Watch",
    "WatchEvent",
    "WatchResponse",
    "aconnect",
    "connect",
    "open_connection",
    "parse_endpoint",
    "prefix_end",
    "split_endpoints",
]

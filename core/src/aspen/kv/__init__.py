"""aspen.kv: the replicated state machine (etcd's MVCC model), its commands and reads.

Importing this package stays light (no LMDB): the state machine is loaded on first use of
``aspen.kv.KVStateMachine``, so the client can use :mod:`aspen.kv.keys` cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aspen.kv.commands import (
    RangeRequest,
    WatchRequest,
    compact_command,
    delete_command,
    lease_expire_command,
    lease_grant_command,
    lease_id_param,
    lease_revoke_command,
    put_command,
    range_request,
    txn_command,
    watch_request,
)
from aspen.kv.keys import prefix_end
from aspen.lazy import lazy_getattr

if TYPE_CHECKING:
    from aspen.kv.records import watch_event
    from aspen.kv.state_machine import FIRST_REVISION, KVStateMachine

__all__ = [
    "FIRST_REVISION",
    "KVStateMachine",
    "RangeRequest",
    "WatchRequest",
    "compact_command",
    "delete_command",
    "lease_expire_command",
    "lease_grant_command",
    "lease_id_param",
    "lease_revoke_command",
    "prefix_end",
    "put_command",
    "range_request",
    "txn_command",
    "watch_event",
    "watch_request",
]

_LAZY = {
    "FIRST_REVISION": "aspen.kv.state_machine",
    "KVStateMachine": "aspen.kv.state_machine",
    "watch_event": "aspen.kv.records",
}


__getattr__ = lazy_getattr(__name__, _LAZY)  # the LMDB-backed parts load on first use

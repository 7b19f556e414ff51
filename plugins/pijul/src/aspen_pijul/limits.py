"""Bounds of the pijul plugin. Every bound is in bytes or counts of things that cost bytes."""

from __future__ import annotations

#: Largest file (bytes) that may be recorded; bigger files are refused with a named error.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Largest serialised change (bytes, hashed part plus contents) that is recorded or accepted.
MAX_CHANGE_BYTES = 16 * 1024 * 1024
#: Most hunks one change may carry.
MAX_HUNKS = 100_000
#: Most lines one file may have (each line is a vertex of the graph).
MAX_FILE_LINES = 200_000
#: Most changes a channel's log walk (log, dependency closure) visits.
MAX_HISTORY_WALK = 1_000_000
#: Longest commit message / description (bytes, UTF-8).
MAX_MESSAGE_BYTES = 64 * 1024
#: Longest path of a tracked file (bytes, UTF-8).
MAX_PATH_BYTES = 4096
#: Shortest hash prefix accepted where a change is named.
MIN_PREFIX_CHARS = 2
#: Bytes of a file inspected to decide whether it is binary (a NUL byte in them means binary).
BINARY_SNIFF_BYTES = 8000
#: Largest change a cluster repository stores (bytes). A change over
#: ``INLINE_CHANGE_BYTES`` lives in the core blob store, so this is bounded by what a
#: working copy records or accepts (``MAX_CHANGE_BYTES``), not by one KV value.
MAX_CLUSTER_CHANGE_BYTES = MAX_CHANGE_BYTES
#: Largest change (bytes) kept inline in its index record in KV; bigger ones are blobs.
INLINE_CHANGE_BYTES = 64 * 1024
#: Largest change (bytes) a push sends inside ``pijul.put_changes``; bigger ones are put
#: in the blob store first and named by their blob hash (under MAX_TRANSFER_BYTES).
PUSH_INLINE_BYTES = 1024 * 1024
#: Most change bytes one ``pijul.put_changes`` / ``pijul.get_changes`` request carries
#: (under the core's MAX_FRAME_BYTES with room for the envelope).
MAX_TRANSFER_BYTES = 2 * 1024 * 1024
#: Most change bytes stored by one kv.txn of ``pijul.put_changes`` (under MAX_ENTRY_BYTES).
PUT_TXN_BYTES = 1024 * 1024
#: Most hashes one ``pijul.append`` adds to a channel (one kv.txn of two puts per hash,
#: under MAX_TXN_OPS).
MAX_APPEND_HASHES = 200
#: Most log entries one ``pijul.log`` page returns.
MAX_LOG_PAGE = 5000
#: Longest repository or channel name (bytes).
MAX_NAME_BYTES = 200
#: Most changes stored by one kv.txn of ``pijul.put_changes`` (under MAX_TXN_OPS).
PUT_TXN_OPS = 500

"""The events handlers receive, as JSON-able maps, and their idempotency keys.

A kv event (from the KV history) becomes::

    {"name": "kv.put", "key": "/orders/7", "revision": 42, "create_revision": 40,
     "mod_revision": 42, "version": 3, "lease": 0, "prev_revision": 41, "value_size": 5,
     "value": "hello"}

``value`` holds the value as text when it is UTF-8 (``value_b64`` when it is not), up to
``HOOKS_MAX_PAYLOAD_VALUE_BYTES``; beyond that only ``value_size`` is given and
``value_truncated`` is true. Keys that are not UTF-8 come as ``key_b64``. ``kv.delete``
events carry the deleted record's revisions in ``prev_*`` fields.

A journaled ``raft.*`` / ``cluster.*`` event is the record the leader wrote (see
:mod:`aspen_hooks.journal`) plus the ``revision`` it was written at.

An event of the core's event journal (``forge.push``…) is as ``events.watch`` gives it::

    {"name": "forge.push", "subject": "acme/widgets", "position": 17, "revision": 42,
     "time": 1765000000.5, "payload": {...}}
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgpack

from aspen_hooks import limits
from aspen_hooks.keys import JOURNAL

__all__ = ["event_from_history", "event_key", "idempotency_key", "percent_encode", "text_or_b64"]


def text_or_b64(field: str, data: bytes) -> dict[str, Any]:
    """``{field: text}`` for UTF-8 data, else ``{field + "_b64": base64}``."""
    try:
        return {field: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{field}_b64": base64.b64encode(data).decode()}


def event_key(event: dict[str, Any]) -> bytes | None:
    """The key bytes of a kv event (from ``key`` or ``key_b64``); ``None`` for other events."""
    key = event.get("key")
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    key_b64 = event.get("key_b64")
    if isinstance(key_b64, str):
        try:
            return base64.b64decode(key_b64, validate=True)
        except ValueError:
            return None
    return None


def percent_encode(data: bytes) -> str:
    """``data`` as text, losslessly: valid UTF-8 stays as it is, except that ``%``, control
    characters (C0, DEL, C1) and every byte that is not part of valid UTF-8 become ``%XX``
    (upper-case hex of each byte). ``urllib.parse.unquote_to_bytes`` gives ``data`` back."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8
            out.append(f"%{code - 0xDC00:02X}")
        elif char == "%" or code < 0x20 or 0x7F <= code <= 0x9F:
            out.append("".join(f"%{b:02X}" for b in char.encode()))
        else:
            out.append(char)
    return "".join(out)


def event_from_history(item: dict[str, Any]) -> dict[str, Any] | None:
    """The payload of one watch event (``None`` for journal records that do not decode)."""
    kv = item["kv"]
    key: bytes = kv["key"]
    if key.startswith(JOURNAL):
        if item["type"] != "put":
            return None
        try:
            record = msgpack.unpackb(kv["value"])
        except (ValueError, msgpack.UnpackException):
            return None
        if not isinstance(record, dict) or "name" not in record:
            return None
        return {**record, "revision": kv["mod_revision"]}
    prev = item.get("prev_kv") or {}
    if item["type"] == "put":
        event: dict[str, Any] = {
            "name": "kv.put",
            **text_or_b64("key", key),
            "revision": kv["mod_revision"],
            "create_revision": kv["create_revision"],
            "mod_revision": kv["mod_revision"],
            "version": kv["version"],
            "lease": kv.get("lease", 0),
            "prev_revision": prev.get("mod_revision", 0),
            **_value_fields(kv["value"]),
        }
        return event
    return {
        "name": "kv.delete",
        **text_or_b64("key", key),
        "revision": kv["mod_revision"],
        "prev_revision": prev.get("mod_revision", 0),
        "prev_create_revision": prev.get("create_revision", 0),
        "prev_version": prev.get("version", 0),
        "lease": prev.get("lease", 0),
        "value_size": 0,
    }


def _value_fields(value: bytes) -> dict[str, Any]:
    if len(value) > limits.HOOKS_MAX_PAYLOAD_VALUE_BYTES:
        return {"value_size": len(value), "value_truncated": True}
    return {"value_size": len(value), **text_or_b64("value", value)}


def idempotency_key(cluster_id: str, event: dict[str, Any], handler: str) -> str:
    """A key stable across retries and runners: cluster, revision, which key, handler.

    Events of one revision (a transaction) differ by key; journal events by name.
    """
    what = event.get("key") or event.get("key_b64") or event.get("name", "")
    if "position" in event:  # a journal event: several may share a revision and a name
        what = f"{event.get('name', '')}@{event['position']}"
    digest = hashlib.blake2b(str(what).encode(), digest_size=6).hexdigest()
    return f"{cluster_id}:{event.get('revision', 0)}:{digest}:{handler}"

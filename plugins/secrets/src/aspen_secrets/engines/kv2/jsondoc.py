"""JSON document helpers of KV v2: merge patch (RFC 7396) and the ``subkeys`` skeleton."""

from __future__ import annotations

from typing import Any

__all__ = ["merge_patch", "subkeys"]


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge ``patch`` applied (neither argument is changed).

    A ``null`` in the patch removes that key, nested objects merge key by key, anything
    else (lists included) replaces the old value.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def subkeys(data: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """The key structure of ``data`` with every leaf ``None`` (Vault's ``subkeys``).

    Non-object values and empty objects are leaves; with ``depth`` > 0 keys at that
    level are leaves too.
    """

    def walk(node: dict[str, Any], level: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            deeper = isinstance(value, dict) and value and (depth == 0 or level < depth)
            out[key] = walk(value, level + 1) if deeper else None
        return out

    return walk(data, 1)

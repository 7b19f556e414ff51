"""Vault's ``batch_input``: run one operation per item, report per-item errors.

An item that fails with a user error gets ``{"error": "..."}`` in its slot; the request
still succeeds unless every item failed (then HTTP 400 with the results, as Vault does),
or ``partial_failure_response_code`` asks for another status when only some failed.
Items may carry a ``reference`` that is echoed in their result. Heavy work runs in a
worker thread (:func:`run`) so that a batch of RSA operations does not stall the node's
event loop; cheap work (symmetric ciphers and HMACs on small inputs, microseconds) runs
inline, as a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aspen.errors import InvalidArgumentError
from aspen_secrets import limits
from aspen_secrets.fields import get_status_code
from aspen_secrets.logical import Response

__all__ = ["BATCH_FIELD", "batch_items", "inherit", "run", "single_or_batch"]

#: The request field holding the items.
BATCH_FIELD = "batch_input"

Operation = Callable[[dict[str, Any]], dict[str, Any]]


def batch_items(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The items of ``batch_input`` (``None`` when the request is not a batch)."""
    items = data.get(BATCH_FIELD)
    if items is None:
        return None
    if not isinstance(items, list):
        raise InvalidArgumentError(f"field {BATCH_FIELD!r} must be a list of objects")
    if not items:
        raise InvalidArgumentError("missing batch input to process")
    if len(items) > limits.TRANSIT_MAX_BATCH_ITEMS:
        raise InvalidArgumentError(
            f"batch_input has {len(items)} items; at most {limits.TRANSIT_MAX_BATCH_ITEMS}"
        )
    return items


def _run_one(item: Any, operation: Operation) -> tuple[dict[str, Any], bool]:
    if not isinstance(item, dict):
        return {"error": "batch item must be an object"}, False
    try:
        result = operation(item)
        ok = True
    except InvalidArgumentError as exc:
        result, ok = {"error": exc.message}, False
    if item.get("reference") is not None:
        result["reference"] = item["reference"]
    return result, ok


def single_or_batch(data: dict[str, Any], operation: Operation) -> Response:
    """``operation(data)`` for a plain request (errors raised), or over every
    ``batch_input`` item with results under ``batch_results``."""
    items = batch_items(data)
    if items is None:
        return Response(data=operation(data))
    partial = get_status_code(data, "partial_failure_response_code", 0)
    results, successes = [], 0
    for item in items:
        result, ok = _run_one(item, operation)
        results.append(result)
        successes += ok
    status = None
    if successes == 0:
        status = 400
    elif successes < len(items) and partial:
        status = partial
    return Response(data={"batch_results": results}, status=status)


def _small(data: dict[str, Any]) -> bool:
    """Whether a request is small enough to serve on the event loop: at most
    ``TRANSIT_INLINE_MAX_ITEMS`` items of at most ``TRANSIT_INLINE_MAX_CHARS`` characters
    of string fields in all."""
    items = data.get(BATCH_FIELD)
    if items is None:
        items = [data]
    elif not isinstance(items, list) or len(items) > limits.TRANSIT_INLINE_MAX_ITEMS:
        return False
    chars = 0
    for item in items:
        if isinstance(item, dict):
            chars += sum(len(v) for v in item.values() if isinstance(v, str))
    return chars <= limits.TRANSIT_INLINE_MAX_CHARS


async def run(data: dict[str, Any], operation: Operation, *, cheap: bool = False) -> Response:
    """:func:`single_or_batch`: inline when the operation is ``cheap`` (symmetric or HMAC)
    and the request small (see :func:`_small`), else in a worker thread."""
    if cheap and _small(data):
        return single_or_batch(data, operation)
    return await asyncio.to_thread(single_or_batch, data, operation)


def inherit(data: dict[str, Any], item: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``item`` with the request-level ``names`` fields it does not set itself."""
    if item is data:
        return item
    shared = {name: data[name] for name in names if data.get(name) is not None}
    return {**shared, **item}

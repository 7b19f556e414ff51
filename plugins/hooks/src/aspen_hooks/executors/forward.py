"""The ``forward`` executor: hand the event to another Aspen cluster's ``hooks.trigger``.

The remote call carries ``{"event", "payload", "idempotency_key", "hops"}``; ``hops``
counts the clusters the event has crossed (the remote puts it in the event it dispatches
as ``forward_hops``), and an event that already crossed ``HOOKS_MAX_FORWARD_HOPS`` is not
forwarded again, so a forwarding loop between clusters ends. A run is ok when the call
succeeds and every per-handler result the remote answers with is ok.
"""

from __future__ import annotations

import re
from typing import Any

import anyio

from aspen import limits as core_limits
from aspen.client import aconnect, split_endpoints
from aspen.errors import (
    AspenError,
    InvalidArgumentError,
    UnauthorizedError,
    UnavailableError,
)
from aspen.errors import TimeoutError as AspenTimeoutError
from aspen.transport.tokens import JOIN_TOKEN_PREFIX, parse_cluster_token
from aspen_hooks import limits
from aspen_hooks.executors.base import ExecutorSettings, Invocation, Outcome, failed, jsonable
from aspen_hooks.executors.fields import check_fields, require_text

__all__ = ["check", "execute", "redact", "remote_failures", "validate"]

#: The method a forward target must serve, and the harmless one used to check it.
TRIGGER_METHOD = "hooks.trigger"
PROBE_METHOD = "hooks.list"
_EVENT_NAME_RE = re.compile(r"[^\s\x00-\x1f\x7f]+")
_REDACTED = "<redacted>"


def validate(target: Any, settings: ExecutorSettings) -> dict[str, Any]:
    """Check a forward target ``{"endpoint": "host:port[,...]", "token": str, "event"?}``."""
    target = check_fields("forward", target, ("endpoint", "token", "event"))
    endpoint = _endpoints(target)
    token = require_text(
        "forward",
        target,
        "token",
        limits.HOOKS_MAX_FORWARD_TOKEN_CHARS,
        limit_name="HOOKS_MAX_FORWARD_TOKEN_CHARS",
    ).strip()
    _check_token(token)
    normal = {"endpoint": endpoint, "token": token}
    if target.get("event") is not None:
        event = require_text(
            "forward",
            target,
            "event",
            limits.HOOKS_MAX_EVENT_NAME_CHARS,
            limit_name="HOOKS_MAX_EVENT_NAME_CHARS",
        )
        if not _EVENT_NAME_RE.fullmatch(event):
            raise InvalidArgumentError(
                f"forward event name {event!r} must not contain spaces or control characters",
                field="event",
            )
        normal["event"] = event
    return normal


def _endpoints(target: dict[str, Any]) -> str:
    """The target's endpoints, normalised to ``host:port[,host:port...]``."""
    text = require_text(
        "forward",
        target,
        "endpoint",
        limits.HOOKS_MAX_FORWARD_ENDPOINTS * core_limits.MAX_ADDRESS_CHARS,
        limit_name="HOOKS_MAX_FORWARD_ENDPOINTS x MAX_ADDRESS_CHARS",
    )
    try:
        endpoints = split_endpoints(text)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"forward endpoint: {exc} (expected host:port, or several separated by commas)",
            field="endpoint",
        ) from None
    if len(endpoints) > limits.HOOKS_MAX_FORWARD_ENDPOINTS:
        raise InvalidArgumentError(
            f"forward target has {len(endpoints)} endpoints, over the limit of "
            f"{limits.HOOKS_MAX_FORWARD_ENDPOINTS} (HOOKS_MAX_FORWARD_ENDPOINTS)",
            field="endpoint",
        )
    return ",".join(endpoints)


def _check_token(token: str) -> None:
    """Refuse a malformed cluster token, a join token, or one with whitespace."""
    if any(ch.isspace() for ch in token):
        raise InvalidArgumentError("forward token must not contain whitespace", field="token")
    if token.startswith(JOIN_TOKEN_PREFIX + "."):
        raise InvalidArgumentError(
            "forward token is a join token; give the target cluster's client token "
            "(aspen1.<ca-key>.<secret>)",
            field="token",
        )
    try:
        parse_cluster_token(token)
    except ValueError as exc:
        raise InvalidArgumentError(f"forward token is malformed: {exc}", field="token") from None


def redact(target: dict[str, Any]) -> dict[str, Any]:
    """``target`` with its token hidden (for ``hooks list``/``show`` and logs)."""
    return {**target, "token": _REDACTED} if "token" in target else dict(target)


async def check(target: dict[str, Any]) -> None:
    """Connect, authenticate and make sure the remote serves the hooks plugin.

    Raises ``UnavailableError`` if the target cannot be reached (or does not run
    aspen-hooks) within ``HOOKS_CHECK_TIMEOUT_SECONDS``, ``InvalidArgumentError`` if it
    refuses the token.
    """
    endpoint = target["endpoint"]
    wait = limits.HOOKS_CHECK_TIMEOUT_SECONDS
    try:
        with anyio.fail_after(wait):
            async with aconnect(
                endpoint, token=target["token"], timeout=wait, connect_timeout=wait
            ) as client:
                await client.call(PROBE_METHOD, {})
    except (TimeoutError, AspenTimeoutError):
        raise UnavailableError(
            f"forward target {endpoint} is unreachable: no answer within {wait:g}s "
            "(HOOKS_CHECK_TIMEOUT_SECONDS)",
            endpoint=endpoint,
        ) from None
    except UnauthorizedError as exc:
        raise InvalidArgumentError(
            f"forward target {endpoint} refused the token: {exc.message}", field="token"
        ) from None
    except UnavailableError as exc:
        if exc.details.get("method") == PROBE_METHOD:
            raise UnavailableError(
                f"forward target {endpoint} does not run aspen-hooks, so it cannot serve "
                f"{TRIGGER_METHOD}: {exc.message}",
                endpoint=endpoint,
                plugin="hooks",
            ) from None
        raise UnavailableError(
            f"forward target {endpoint} is unreachable: {exc.message}", endpoint=endpoint
        ) from None
    except AspenError:
        pass  # it answered from the hooks plugin: the target serves it
    except (OSError, ValueError) as exc:
        raise UnavailableError(
            f"forward target {endpoint} is unreachable: {exc}", endpoint=endpoint
        ) from None


def remote_failures(answer: Any) -> list[str]:
    """Names of the handlers the remote reports as failed (``results``: a list of maps with
    ``ok`` and ``handler``/``name``, or a map of name to result)."""
    results = answer.get("results") if isinstance(answer, dict) else answer
    if isinstance(results, dict):
        items = [(str(name), result) for name, result in results.items()]
    elif isinstance(results, list):
        items = [
            (
                str(r.get("handler") or r.get("name") or f"#{i}")
                if isinstance(r, dict)
                else f"#{i}",
                r,
            )
            for i, r in enumerate(results)
        ]
    else:
        return []
    return [name for name, result in items if not (isinstance(result, dict) and result.get("ok"))]


def _hops(event: dict[str, Any]) -> int | None:
    """How many clusters the event has crossed (None if the field is malformed)."""
    hops = event.get("forward_hops", 0)
    return hops if type(hops) is int and hops >= 0 else None


async def execute(
    target: dict[str, Any], invocation: Invocation, settings: ExecutorSettings
) -> Outcome:
    """Send the event once; see the module docstring."""
    endpoint = target["endpoint"]
    event = invocation.event
    hops = _hops(event)
    if hops is None:
        return failed(f"event field forward_hops is {event.get('forward_hops')!r}, not an int >= 0")
    if hops >= limits.HOOKS_MAX_FORWARD_HOPS:
        return failed(
            f"not forwarded to {endpoint}: the event already crossed {hops} clusters "
            f"(HOOKS_MAX_FORWARD_HOPS = {limits.HOOKS_MAX_FORWARD_HOPS}); a forwarding loop?"
        )
    params = {
        "event": target.get("event") or event.get("name"),
        "payload": event,
        "idempotency_key": invocation.idempotency_key,
        "hops": hops + 1,
    }
    timeout = invocation.timeout
    try:
        with anyio.move_on_after(timeout) as deadline:
            async with aconnect(
                endpoint,
                token=target["token"],
                timeout=timeout,
                connect_timeout=min(timeout, core_limits.CONNECT_TIMEOUT_SECONDS),
            ) as client:
                answer = await client.call(TRIGGER_METHOD, params)
    except UnauthorizedError as exc:
        return failed(f"forward target {endpoint} refused the token: {exc.message}")
    except AspenError as exc:
        return failed(f"forward to {endpoint} failed: {exc.code}: {exc.message}")
    except (OSError, ValueError) as exc:
        return failed(f"forward target {endpoint} is unreachable: {exc}")
    if deadline.cancelled_caught:
        return failed(f"timed out after {float(timeout)!r}s forwarding to {endpoint}")
    output = jsonable(answer)
    bad = remote_failures(answer)
    if bad:
        return failed(f"{len(bad)} remote handler(s) failed: {', '.join(bad)}", output=output)
    return Outcome(ok=True, duration=0.0, output=output)

"""What one connection may do: the root token's :data:`ROOT` or a scoped :class:`Authority`.

The RPC layer calls :meth:`Authority.check` before a handler runs (see
:mod:`aspen.rpc.session`). A method declares what it needs in its
:class:`~aspen.plugins.types.RpcHandler`:

* ``capability="blob:read"``: the token must hold a capability covering ``blob:read``
  (an unscoped one: a method without ``scope`` serves every name);
* ``capability="secrets:read", scope=f``: the token must hold some capability of that
  resource, then ``f(params)`` returns what this request touches, each item a capability
  string or :class:`~aspen.auth.capability.Capability` (``secrets:read:secret/data/x``) or a
  KV span (:mod:`aspen.auth.kvscope`); every item must be covered, so one forbidden key
  refuses the whole request;
* ``capability=ANY_TOKEN``: any valid token (the handler checks further, e.g. ``token.create``);
* nothing: **root only**, so a plugin that forgets cannot open a hole.

Handlers that need a finer check call ``ctx.authority.require("secrets:read:<path>")``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from aspen.auth.capability import Capability, covered, parse_capability
from aspen.auth.kvscope import Span, key_allowed, kv_prefixes, span_allowed
from aspen.errors import UnauthorizedError

if TYPE_CHECKING:
    from aspen.auth.tokens import VerifiedToken
    from aspen.rpc.handler import RpcHandler

__all__ = ["ANY_TOKEN", "ROOT", "Authority", "Gate", "capability_error", "lease_key_error"]

#: ``RpcHandler.capability`` for a method any valid token may call.
ANY_TOKEN = "token"


class Gate(Protocol):
    """The node's side of the checks (:class:`aspen.auth.service.TokenService`):
    revocation, rate and stream limits, and the audit of denials."""

    def admit(self, authority: Authority, handler: RpcHandler) -> Exception | None:
        """The error refusing the request (revoked, over its rate), or ``None``."""
        ...

    def stream_started(self, authority: Authority) -> None:
        """A stream :meth:`admit` let through has started."""
        ...

    def stream_ended(self, authority: Authority) -> None:
        """A started stream has ended."""
        ...

    def denied(self, authority: Authority, method: str, error: Exception) -> None:
        """Record a refused request."""
        ...


def capability_error(missing: str, method: str = "", *, token_id: str = "") -> UnauthorizedError:
    """The ``unauthorized`` error naming the capability a request lacks."""
    where = f" for {method}" if method else ""
    who = f" (token {token_id})" if token_id else ""
    return UnauthorizedError(
        f"missing capability {missing}{where}: the token{who} does not grant it",
        capability=missing,
        method=method,
    )


def lease_key_error(
    lease_id: int, operation: str, key: bytes, method: str, *, token_id: str = ""
) -> UnauthorizedError:
    """The ``unauthorized`` error of a lease operation refused because a key attached to the
    lease lies outside the token's ``kv:<operation>`` prefixes (docs/tokens.md, Leases)."""
    missing = f"kv:{operation}:{key.decode('utf-8', 'backslashreplace')}"
    who = f" (token {token_id})" if token_id else ""
    return UnauthorizedError(
        f"missing capability {missing} for {method}: lease {lease_id} has that key attached "
        f"and the token{who} does not grant it",
        capability=missing,
        method=method,
        lease=lease_id,
    )


class Authority:
    """What a connection's token allows. ``unrestricted`` authorities (the root token and
    the node itself) skip every check."""

    __slots__ = (
        "expires",
        "gate",
        "grant",
        "identity",
        "kv",
        "resources",
        "state",
        "unrestricted",
    )

    def __init__(
        self,
        identity: str,
        grant: VerifiedToken | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.identity = identity
        self.grant = grant
        self.unrestricted = grant is None
        self.expires = grant.expires if grant is not None else None
        self.gate = gate
        #: The granted ``kv`` prefixes by operation (:func:`~aspen.auth.kvscope.kv_prefixes`).
        self.kv = kv_prefixes(grant.capabilities) if grant is not None else {}
        #: The resources the grant names (``kv``, ``blob``…).
        self.resources = frozenset(c.resource for c in self.capabilities)
        #: The node's per-token state (revocation generation seen, bucket), set by the gate.
        self.state: Any = None

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        """The capabilities granted (empty for an unrestricted authority: it holds all)."""
        return self.grant.capabilities if self.grant is not None else ()

    @property
    def token_id(self) -> str:
        """The token's id (``""`` for root)."""
        return self.grant.id if self.grant is not None else ""

    def allows(self, wanted: Capability | str) -> bool:
        """Whether this authority covers ``wanted``."""
        if self.unrestricted:
            return True
        cap = parse_capability(wanted) if isinstance(wanted, str) else wanted
        return covered(self.capabilities, cap)

    def require(self, wanted: Capability | str, method: str = "") -> None:
        """Raise ``unauthorized`` naming ``wanted`` unless this authority covers it."""
        if not self.allows(wanted):
            raise capability_error(str(wanted), method, token_id=self.token_id)

    def check(self, handler: RpcHandler, params: Any) -> Exception | None:
        """The error refusing this request before ``handler`` runs, or ``None``."""
        if self.unrestricted:
            return None
        operation = _SINGLE_KEY.get(handler.name)
        live = self.expires is None or time.time() <= self.expires
        if operation is not None and live and type(params) is dict:
            key = params.get("key")
            if (  # the hot path: one plain key
                type(key) is bytes
                and key
                and params.get("end") is None
                and key_allowed(self.kv, operation, key)
            ):
                refused = self.gate.admit(self, handler) if self.gate is not None else None
                if refused is not None and self.gate is not None:
                    self.gate.denied(self, handler.name, refused)
                return refused
        refused = self._refusal(handler, params)
        if refused is not None and self.gate is not None:
            self.gate.denied(self, handler.name, refused)
        return refused

    def _refusal(self, handler: RpcHandler, params: Any) -> Exception | None:
        """The body of :meth:`check` (expiry, capability, then the node's gate)."""
        if self.expires is not None and time.time() > self.expires:
            from aspen.auth.tokens import ExpiredTokenError

            return ExpiredTokenError(f"capability token {self.token_id} has expired")
        try:
            refused = self._check_capability(handler, params)
        except Exception as exc:  # malformed params: what the handler would answer
            return exc
        if refused is None and self.gate is not None:
            return self.gate.admit(self, handler)
        return refused

    def stream_started(self) -> None:
        """A stream this authority was admitted for has started (counted until it ends)."""
        if self.gate is not None:
            self.gate.stream_started(self)

    def stream_ended(self) -> None:
        """A started stream of this authority has ended."""
        if self.gate is not None:
            self.gate.stream_ended(self)

    def _check_capability(self, handler: RpcHandler, params: Any) -> Exception | None:
        """The capability part of :meth:`check`."""
        declared = handler.capability
        if declared is not None and handler.scope is not None:
            if declared.partition(":")[0] not in self.resources:
                return capability_error(declared, handler.name, token_id=self.token_id)
            if not isinstance(params, dict):
                from aspen.errors import InvalidArgumentError

                return InvalidArgumentError(f"{handler.name} params must be a map")
            return self._check_items(handler, handler.scope(params))
        if declared is None:
            return capability_error("root (the method declares no capability)", handler.name)
        if declared == ANY_TOKEN:
            return None
        if not covered(self.capabilities, _declared(declared)):
            return capability_error(declared, handler.name, token_id=self.token_id)
        return None

    def _check_items(
        self, handler: RpcHandler, items: Iterable[Capability | str | Span]
    ) -> Exception | None:
        """Every item of a request's scope must be covered."""
        caps = self.capabilities
        for item in items:
            if type(item) is tuple:
                if not span_allowed(self.kv, item):
                    return capability_error(
                        _describe_span(item), handler.name, token_id=self.token_id
                    )
                continue
            cap = parse_capability(item) if isinstance(item, str) else item
            if not isinstance(cap, Capability) or not covered(caps, cap):
                return capability_error(str(cap), handler.name, token_id=self.token_id)
        return None


def _describe_span(span: Span) -> str:
    """``kv:write:/other`` (or ``kv:read:[/a, /b)`` for a range) for an error message."""
    operation, key, end = span
    text = key.decode("utf-8", "backslashreplace")
    if end is None:
        return f"kv:{operation}:{text}"
    end_text = "(all keys)" if end == b"\x00" else end.decode("utf-8", "backslashreplace")
    return f"kv:{operation}:[{text}, {end_text})"


#: Core methods on one key, by the operation they do: checked on a fast path when the key is
#: plain bytes (anything else takes the general path through ``scope``).
_SINGLE_KEY = {"kv.put": "write", "kv.range": "read", "kv.delete": "write"}
#: A method's declared capability, parsed once.
_declared = functools.lru_cache(maxsize=1024)(parse_capability)

#: The authority of the root token and of the node's own in-process calls.
ROOT = Authority("root")

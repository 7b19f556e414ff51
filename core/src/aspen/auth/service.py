"""A node's token service: authenticate hellos, revocation, per-token limits, audit.

* :meth:`TokenService.authenticate` maps a hello's token to an
  :class:`~aspen.auth.access.Authority`: the root token (compared in constant time) to
  :data:`~aspen.auth.access.ROOT`, a capability token to a scoped authority once its
  signatures, Datalog checks, chain depth and expiry verify (verified grants are cached by
  token text, so a reconnect costs a dictionary lookup).
* Revocation: the revoked ids live in the replicated KV under
  :data:`REVOKED_PREFIX`; every node keeps them in a set updated in the same event-loop
  step that delivers the commit (:meth:`TokenService.on_applied`), so a revocation is seen on
  a node as soon as it applies that one commit. Each authority remembers the set's
  generation it was last checked against, so an unchanged set costs one comparison.
* Limits (:meth:`TokenService.admit`): a token bucket per token id (attenuations share their
  token's bucket) and a count of open streams, with the token's own overrides; over them the
  request is answered ``resource_exhausted`` with ``retry_after`` seconds.
* Audit: denials and token creates/revokes in a bounded ring (``MAX_AUDIT_RECORDS``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aspen.auth.access import ROOT, Authority
from aspen.auth.tokens import (
    ExpiredTokenError,
    TokenSigner,
    VerifiedToken,
    is_capability_token,
)
from aspen.errors import AspenError, ResourceExhaustedError, UnauthorizedError
from aspen.events import KvDelete, KvPut, SnapshotInstalled
from aspen.limits import (
    MAX_AUDIT_FIELD_BYTES,
    MAX_AUDIT_RECORDS,
    MAX_TRACKED_TOKENS,
    TOKEN_MAX_STREAMS,
    TOKEN_RATE_BURST,
    TOKEN_RATE_PER_SECOND,
)
from aspen.transport.tokens import secrets_match, token_secret

if TYPE_CHECKING:
    from aspen.rpc.handler import RpcHandler

__all__ = ["ISSUED_PREFIX", "REVOKED_PREFIX", "TokenBucket", "TokenService"]

#: ``<prefix><token id>``: one record per issued token (no secret in it).
ISSUED_PREFIX = b"/_aspen/tokens/issued/"
#: ``<prefix><id>``: a revoked token id (or Biscuit block revocation id).
REVOKED_PREFIX = b"/_aspen/tokens/revoked/"


class TokenBucket:
    """A token bucket: ``rate`` per second sustained, ``burst`` at once."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.level = float(burst)
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> float:
        """Take one; return 0 if it was there, else the seconds until one will be."""
        now = time.monotonic() if now is None else now
        level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if level >= 1:
            self.level = level - 1
            return 0.0
        self.level = level
        return (1 - level) / self.rate if self.rate > 0 else float("inf")


@dataclass(slots=True)
class _TokenState:
    """What a node keeps per token id."""

    bucket: TokenBucket
    max_streams: int
    streams: int = 0


@dataclass(slots=True)
class _Checked:
    """Per-authority: the revocation generation it was last checked against."""

    generation: int = -1
    refused: AspenError | None = None
    state: _TokenState | None = field(default=None)


def _clip(text: str) -> str:
    """``text`` cut to ``MAX_AUDIT_FIELD_BYTES`` bytes."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_AUDIT_FIELD_BYTES:
        return text
    return raw[:MAX_AUDIT_FIELD_BYTES].decode("utf-8", "ignore") + "…"


class TokenService:
    """Authentication, revocation, limits and audit of one node (see the module doc)."""

    def __init__(
        self,
        signer: TokenSigner,
        root_token: str,
        *,
        node_id: str = "",
        rate: float = TOKEN_RATE_PER_SECOND,
        burst: int = TOKEN_RATE_BURST,
        max_streams: int = TOKEN_MAX_STREAMS,
    ) -> None:
        self.signer = signer
        self._root = token_secret(root_token)
        self.node_id = node_id
        self.rate, self.burst, self.max_streams = rate, burst, max_streams
        self.revoked: set[str] = set()
        #: Bumped whenever ``revoked`` changes.
        self.generation = 0
        self._grants: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._states: OrderedDict[str, _TokenState] = OrderedDict()
        self._audit: deque[dict[str, Any]] = deque(maxlen=MAX_AUDIT_RECORDS)
        self.denials = 0

    # ------------------------------------------------------------------ authentication
    def authenticate(self, token: str | None) -> Authority | None:
        """The authority of ``token``; ``None`` if it is no valid token at all; raises a
        typed :class:`~aspen.auth.tokens.TokenError` for a refused capability token."""
        if not isinstance(token, str) or not token:
            return None
        if not is_capability_token(token):
            return ROOT if secrets_match(token_secret(token), self._root) else None
        grant = self._grants.get(token)
        if grant is None:
            grant = self.signer.verify(token)
            self._remember(self._grants, token, grant)
        else:
            self._grants.move_to_end(token)
            if grant.expires is not None and time.time() > grant.expires:
                raise ExpiredTokenError(f"capability token {grant.id} has expired")
        revoked = self._revoked(grant)
        if revoked is not None:
            self.record("denied", grant.id, method="hello", message=revoked.message)
            raise revoked
        authority = Authority(f"token:{grant.id}", grant, self)
        authority.state = _Checked(self.generation)
        return authority

    @staticmethod
    def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        if len(cache) > MAX_TRACKED_TOKENS:
            cache.popitem(last=False)

    def _revoked(self, grant: VerifiedToken) -> UnauthorizedError | None:
        """The error for a revoked ``grant``, or ``None``."""
        if not self.revoked:
            return None
        for key in grant.revocation_keys:
            if key in self.revoked:
                why = "" if key == grant.id else f" with the token it derives from ({key[:16]})"
                return UnauthorizedError(
                    f"capability token {grant.id} was revoked{why}", token=grant.id
                )
        return None

    # ------------------------------------------------------------------ the Gate
    def admit(self, authority: Authority, handler: RpcHandler) -> Exception | None:
        """Revocation (when the set changed since this authority was checked), then the
        token's rate bucket and, for a stream, its stream count."""
        grant = authority.grant
        checked: _Checked = authority.state
        if grant is None or checked is None:
            return None
        if checked.generation != self.generation:
            checked.generation = self.generation
            checked.refused = self._revoked(grant)
        if checked.refused is not None:
            return checked.refused
        state = checked.state
        if state is None:
            state = checked.state = self._state(grant)
        wait = state.bucket.take()
        if wait:
            return ResourceExhaustedError(
                f"token {grant.id} is over its request rate ({state.bucket.rate:g}/s, burst "
                f"{state.bucket.burst}; TOKEN_RATE_PER_SECOND unless set at creation): retry "
                f"in {wait:.3f} s",
                retry_after=round(wait, 3),
                limit=state.bucket.rate,
            )
        if handler.streaming and state.streams >= state.max_streams:
            return ResourceExhaustedError(
                f"token {grant.id} has {state.streams} streams open, its limit "
                f"(TOKEN_MAX_STREAMS unless set at creation): close one and retry",
                retry_after=1.0,
                limit=state.max_streams,
            )
        return None

    def stream_started(self, authority: Authority) -> None:
        """A stream of ``authority`` started: one more open (counted from its runner, so a
        request cancelled before it ran is never counted)."""
        checked: _Checked | None = authority.state
        state = checked.state if checked is not None else None
        if state is not None:
            state.streams += 1

    def _state(self, grant: VerifiedToken) -> _TokenState:
        state = self._states.get(grant.id)
        if state is None:
            overrides = grant.limits
            rate = overrides.rate if overrides.rate is not None else self.rate
            burst = overrides.burst if overrides.burst is not None else self.burst
            streams = overrides.streams if overrides.streams is not None else self.max_streams
            state = _TokenState(TokenBucket(rate, max(1, burst)), streams)
            self._remember(self._states, grant.id, state)
        return state

    def stream_ended(self, authority: Authority) -> None:
        """A stream of ``authority`` ended: one fewer open."""
        checked: _Checked | None = authority.state
        state = checked.state if checked is not None else None
        if state is not None and state.streams > 0:
            state.streams -= 1

    def denied(self, authority: Authority, method: str, error: Exception) -> None:
        """Audit a refused request."""
        self.denials += 1
        details = getattr(error, "details", {}) or {}
        self.record(
            "denied",
            authority.token_id,
            method=method,
            code=getattr(error, "code", type(error).__name__),
            capability=str(details.get("capability", "")),
            message=str(error),
        )

    # ------------------------------------------------------------------ revocation
    def load_revoked(self, ids: Iterable[str]) -> None:
        """Replace the revoked set (start-up, after a snapshot was installed)."""
        self.revoked = set(ids)
        self.generation += 1
        self._grants.clear()

    def on_applied(self, events: Iterable[Any]) -> bool:
        """Follow revocations in a commit's events; return True when a snapshot was
        installed (the caller then reloads the whole set with :meth:`load_revoked`)."""
        changed = reload = False
        for event in events:
            kind = type(event)
            if kind is KvPut or kind is KvDelete:
                key = event.kv.key
                if key.startswith(REVOKED_PREFIX):
                    name = key[len(REVOKED_PREFIX) :].decode("utf-8", "replace")
                    if kind is KvPut:
                        self.revoked.add(name)
                    else:
                        self.revoked.discard(name)
                    changed = True
            elif kind is SnapshotInstalled:
                reload = True
        if changed:
            self.generation += 1
        return reload

    # ------------------------------------------------------------------ audit
    def record(self, event: str, token: str, **fields: Any) -> None:
        """Append one audit record (oldest dropped beyond ``MAX_AUDIT_RECORDS``)."""
        entry: dict[str, Any] = {"at": time.time(), "node": self.node_id, "event": event}
        entry["token"] = token
        for name, value in fields.items():
            entry[name] = _clip(value) if isinstance(value, str) else value
        self._audit.append(entry)

    def audit(self, limit: int = MAX_AUDIT_RECORDS) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, oldest first."""
        records = list(self._audit)
        return records[-limit:] if limit else []

"""Capability tokens on Eclipse Biscuit: issue, attenuate offline, verify.

Text form: ``aspen1c.<ca-public-key>.<signing-public-key>.<biscuit>`` (unpadded base64url
fields). Like a root token it pins the cluster CA (the client checks the server's TLS
certificate against ``<ca-public-key>``), so ``ASPEN_TOKEN`` alone is enough. The biscuit's
root key is the cluster's **token signing key**, derived with HKDF from the cluster CA's
private key (:func:`signing_key_from_ca`): every member holds the CA key already (see
:mod:`aspen.transport.join`), so it is stored as safely as the CA and needs no new file.
The signing public key travels in the token only so that :func:`attenuate` can open and
re-serialize it offline; a node verifies with its own derived key and ignores that field.

Blocks (Biscuit Datalog, one fact per line, read back with ``block_source``):

* authority block (signed by the cluster): ``token_id``, ``cluster``, one ``cap`` per
  capability, ``ancestor`` per token it was created from, optional ``expires`` with the
  Datalog check ``check if now($t), $t <= <expires>``, optional ``rate``/``burst``/
  ``streams`` overrides of the token's request limits;
* attenuation blocks (appended by any holder, offline): ``attenuation(true)``, optional
  ``cap`` facts (the token keeps only their meet with what it had, see
  :func:`aspen.auth.capability.narrow`), optional ``expires`` and its check.

The authorizer (at hello) supplies ``now`` and runs every block's checks; the effective
capabilities are the authority's narrowed by every block, so a block can only narrow. A
chain longer than ``MAX_TOKEN_CHAIN_DEPTH`` (attenuation blocks plus creating tokens) is
refused. Revocation: a token is refused when its id, one of its ancestors' ids or one of
its blocks' revocation ids is revoked (:mod:`aspen.auth.service`).
"""

from __future__ import annotations

import datetime
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from biscuit_auth import (
    Algorithm,
    AuthorizationError,
    AuthorizerBuilder,
    Biscuit,
    BiscuitBuilder,
    BiscuitValidationError,
    BlockBuilder,
    KeyPair,
    PrivateKey,
    PublicKey,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aspen.auth.capability import Capability, covered, narrow, parse_capabilities
from aspen.errors import InvalidArgumentError, UnauthorizedError
from aspen.limits import (
    MAX_TOKEN_BYTES,
    MAX_TOKEN_CHAIN_DEPTH,
    MAX_TOKEN_TTL_SECONDS,
    TOKEN_DATALOG_SECONDS,
)
from aspen.transport.tokens import CAPABILITY_TOKEN_PREFIX, b64decode, b64encode

__all__ = [
    "CAPABILITY_TOKEN_PREFIX",
    "ChainTooDeepError",
    "ExpiredTokenError",
    "ForgedTokenError",
    "MalformedTokenError",
    "TokenError",
    "TokenLimits",
    "TokenSigner",
    "VerifiedToken",
    "WrongClusterError",
    "attenuate",
    "inspect_token",
    "is_capability_token",
    "signing_key_from_ca",
]

#: The binding's Ed25519 algorithm tag (its type stubs predate it).
_ED25519 = getattr(Algorithm, "Ed25519")  # noqa: B009
_HKDF_INFO = b"aspen token signing key v1"
_FIELD_RE = re.compile(r"[A-Za-z0-9_-]+")
_FACT_RE = re.compile(r'^([a-z_]+)\((?:"([^"\\]*)"|(-?\d+)|(true))\);$')


class TokenError(UnauthorizedError):
    """A capability token was refused (the subclass says why)."""


class MalformedTokenError(TokenError):
    """The token text is not a capability token (truncated, bad encoding, too big)."""


class ForgedTokenError(TokenError):
    """The token's signatures do not verify with this cluster's signing key."""


class ExpiredTokenError(TokenError):
    """The token (or one of its attenuations) has expired."""


class WrongClusterError(TokenError):
    """The token was issued by another cluster (its CA key is not this cluster's)."""


class ChainTooDeepError(TokenError):
    """The token's delegation chain is deeper than ``MAX_TOKEN_CHAIN_DEPTH``."""


@dataclass(frozen=True, slots=True)
class TokenLimits:
    """Per-token overrides of the request limits (``None``: the node's default)."""

    rate: float | None = None
    burst: int | None = None
    streams: int | None = None


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a verified (or offline-inspected) capability token grants."""

    id: str
    cluster_id: str
    capabilities: tuple[Capability, ...]
    expires: int | None
    ancestors: tuple[str, ...]
    revocation_ids: tuple[str, ...]
    depth: int
    limits: TokenLimits = field(default_factory=TokenLimits)

    @property
    def revocation_keys(self) -> tuple[str, ...]:
        """Every id whose revocation refuses this token."""
        return (self.id, *self.ancestors, *self.revocation_ids)

    def to_json(self) -> dict[str, object]:
        """The JSON form (``aspen token inspect``): no secret in it."""
        return {
            "id": self.id,
            "cluster_id": self.cluster_id,
            "capabilities": [str(c) for c in self.capabilities],
            "expires": self.expires,
            "ancestors": list(self.ancestors),
            "depth": self.depth,
        }


def _unb64(text: str) -> bytes:
    """Decode a base64url field (:class:`MalformedTokenError` if it is not)."""
    try:
        return b64decode(text)
    except ValueError as exc:
        raise MalformedTokenError(f"malformed capability token: {exc}") from None


def signing_key_from_ca(ca_private: Ed25519PrivateKey) -> PrivateKey:
    """The cluster's token signing key: HKDF-SHA256 of the CA's private key (domain
    separated, so the CA key itself never signs a token)."""
    raw = ca_private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(raw)
    return PrivateKey.from_bytes(seed, _ED25519)  # type: ignore[call-arg]


def _public_key(raw: bytes) -> PublicKey:
    """A Biscuit Ed25519 public key from its 32 raw bytes."""
    return PublicKey.from_bytes(raw, _ED25519)  # type: ignore[call-arg]


def is_capability_token(text: str) -> bool:
    """Whether ``text`` starts like a capability token."""
    return text.startswith(CAPABILITY_TOKEN_PREFIX + ".")


@dataclass(frozen=True, slots=True)
class _Parts:
    ca_public_raw: bytes
    signing_public_raw: bytes
    biscuit_b64: str


def _split(text: str) -> _Parts:
    """Split the token text into its fields (raises :class:`MalformedTokenError`)."""
    if not isinstance(text, str):
        raise MalformedTokenError("a capability token is a string")
    text = text.strip()
    if len(text) > MAX_TOKEN_BYTES:
        raise MalformedTokenError(
            f"capability token of {len(text)} bytes exceeds MAX_TOKEN_BYTES ({MAX_TOKEN_BYTES})"
        )
    fields = text.split(".")
    if len(fields) != 4 or fields[0] != CAPABILITY_TOKEN_PREFIX:
        raise MalformedTokenError(
            "malformed capability token: expected aspen1c.<ca-key>.<signing-key>.<biscuit> "
            "(was it truncated?)"
        )
    if not all(_FIELD_RE.fullmatch(f) for f in fields[1:]):
        raise MalformedTokenError("malformed capability token: a field is not base64url")
    ca, signing = _unb64(fields[1]), _unb64(fields[2])
    if len(ca) != 32 or len(signing) != 32:
        raise MalformedTokenError("malformed capability token: a key field is not 32 bytes")
    return _Parts(ca, signing, fields[3])


def _joined(fields: list[str]) -> str:
    """The token text of ``fields``; refuses one over ``MAX_TOKEN_BYTES``."""
    text = ".".join(fields)
    if len(text) > MAX_TOKEN_BYTES:
        raise InvalidArgumentError(
            f"the token would be {len(text)} bytes, over MAX_TOKEN_BYTES ({MAX_TOKEN_BYTES}): "
            "grant fewer or shorter capabilities"
        )
    return text


def _biscuit_text(biscuit: Biscuit) -> str:
    return biscuit.to_base64().rstrip("=")


def _open(parts: _Parts, public: PublicKey) -> Biscuit:
    """Deserialize and check every signature against ``public``."""
    data = parts.biscuit_b64 + "=" * (-len(parts.biscuit_b64) % 4)
    try:
        return Biscuit.from_base64(data, public)
    except BiscuitValidationError as exc:
        raise ForgedTokenError(
            "capability token refused: its signature does not verify with this cluster's "
            "signing key (forged, altered or truncated)"
        ) from exc
    except Exception as exc:  # the binding raises a few other types on garbage
        raise MalformedTokenError(f"malformed capability token: {exc}") from exc


def _facts(biscuit: Biscuit, index: int) -> list[tuple[str, str | int | bool]]:
    """The ``name(value);`` facts of one block (rules and checks are skipped)."""
    out: list[tuple[str, str | int | bool]] = []
    for line in biscuit.block_source(index).splitlines():
        m = _FACT_RE.match(line.strip())
        if m is None:
            continue
        name, text, number, _flag = m.groups()
        value: str | int | bool = text if text is not None else (int(number) if number else True)
        out.append((name, value))
    return out


def _grant(biscuit: Biscuit, now: int | None) -> VerifiedToken:
    """Read what ``biscuit`` grants from its blocks (signatures already checked)."""
    authority = _facts(biscuit, 0)
    ids = [v for k, v in authority if k == "token_id" and isinstance(v, str)]
    clusters = [v for k, v in authority if k == "cluster" and isinstance(v, str)]
    if len(ids) != 1 or len(clusters) != 1:
        raise MalformedTokenError("capability token without exactly one token_id and cluster")
    ancestors = tuple(str(v) for k, v in authority if k == "ancestor")
    caps = parse_capabilities(v for k, v in authority if k == "cap")
    expiries = [int(v) for k, v in authority if k == "expires"]
    limits = TokenLimits(
        rate=next((float(v) for k, v in authority if k == "rate"), None),
        burst=next((int(v) for k, v in authority if k == "burst"), None),
        streams=next((int(v) for k, v in authority if k == "streams"), None),
    )
    blocks = biscuit.block_count()
    for index in range(1, blocks):
        facts = _facts(biscuit, index)
        block_caps = [v for k, v in facts if k == "cap"]
        if block_caps:
            caps = narrow(caps, parse_capabilities(block_caps))
        expiries += [int(v) for k, v in facts if k == "expires"]
    depth = blocks - 1 + len(ancestors)
    if depth > MAX_TOKEN_CHAIN_DEPTH:
        raise ChainTooDeepError(
            f"capability token chain of depth {depth} exceeds MAX_TOKEN_CHAIN_DEPTH "
            f"({MAX_TOKEN_CHAIN_DEPTH})"
        )
    expires = min(expiries) if expiries else None
    if now is not None and expires is not None and now > expires:
        raise ExpiredTokenError(f"capability token {ids[0]} expired at {_when(expires)}")
    return VerifiedToken(
        id=ids[0],
        cluster_id=clusters[0],
        capabilities=caps,
        expires=expires,
        ancestors=ancestors,
        revocation_ids=tuple(biscuit.revocation_ids),
        depth=depth,
        limits=limits,
    )


def _when(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _expiry_code(expires: int | None) -> str:
    if expires is None:
        return ""
    return f"expires({expires});\ncheck if now($t), $t <= {expires};\n"


def _fact_lines(name: str, values: Iterable[object]) -> str:
    """``name("v");`` lines; refuses characters the block source could not round-trip."""
    lines = []
    for value in values:
        text = str(value)
        if '"' in text or "\\" in text or "\n" in text:
            raise InvalidArgumentError(f"{name} value {text!r} has a quote, backslash or newline")
        lines.append(f'{name}("{text}");\n')
    return "".join(lines)


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not 0 < ttl <= MAX_TOKEN_TTL_SECONDS:
        raise InvalidArgumentError(
            f"ttl must be in (0, {MAX_TOKEN_TTL_SECONDS}] seconds (MAX_TOKEN_TTL_SECONDS), "
            f"got {ttl}"
        )


class TokenSigner:
    """Issues and verifies a cluster's capability tokens (held by every node)."""

    def __init__(self, private_key: PrivateKey, ca_public_raw: bytes, cluster_id: str) -> None:
        self._private = private_key
        self.public_key = KeyPair.from_private_key(private_key).public_key
        self._public_raw = bytes(self.public_key.to_bytes())
        self.ca_public_raw = ca_public_raw
        self.cluster_id = cluster_id

    @classmethod
    def from_ca(cls, ca_private: Ed25519PrivateKey, cluster_id: str) -> TokenSigner:
        """The signer of the cluster whose CA private key is ``ca_private``."""
        from aspen.transport.tls import _RAW  # raw public-key encoding

        ca_public = ca_private.public_key().public_bytes(*_RAW)
        return cls(signing_key_from_ca(ca_private), ca_public, cluster_id)

    def issue(
        self,
        capabilities: Sequence[Capability],
        *,
        ttl: float | None = None,
        ancestors: Sequence[str] = (),
        limits: TokenLimits = TokenLimits(),
        now: float | None = None,
    ) -> tuple[str, str, int | None]:
        """Return ``(id, token text, expires)`` for a new token granting ``capabilities``."""
        _check_ttl(ttl)
        if len(ancestors) > MAX_TOKEN_CHAIN_DEPTH:
            raise ChainTooDeepError(
                f"a token created from a chain of {len(ancestors)} tokens would exceed "
                f"MAX_TOKEN_CHAIN_DEPTH ({MAX_TOKEN_CHAIN_DEPTH})"
            )
        token_id = secrets.token_hex(8)
        expires = None if ttl is None else int((now or time.time()) + ttl)
        source = (
            _fact_lines("token_id", [token_id])
            + _fact_lines("cluster", [self.cluster_id])
            + _fact_lines("cap", [str(c) for c in capabilities])
            + _fact_lines("ancestor", ancestors)
            + _expiry_code(expires)
        )
        for name, value in (("rate", limits.rate), ("burst", limits.burst)):
            if value is not None:
                source += f"{name}({int(value)});\n"
        if limits.streams is not None:
            source += f"streams({int(limits.streams)});\n"
        biscuit = BiscuitBuilder(source).build(self._private)
        text = _joined(
            [
                CAPABILITY_TOKEN_PREFIX,
                b64encode(self.ca_public_raw),
                b64encode(self._public_raw),
                _biscuit_text(biscuit),
            ]
        )
        return token_id, text, expires

    def verify(self, text: str, now: float | None = None) -> VerifiedToken:
        """Check ``text``'s cluster, signatures, Datalog checks, depth and expiry; return
        what it grants, or raise a :class:`TokenError` subclass saying why not."""
        parts = _split(text)
        if parts.ca_public_raw != self.ca_public_raw:
            raise WrongClusterError(
                "capability token refused: it was issued by another cluster (its CA key is "
                "not this cluster's)"
            )
        biscuit = _open(parts, self.public_key)
        moment = int(now if now is not None else time.time())
        grant = _grant(biscuit, moment)
        if grant.cluster_id != self.cluster_id:
            raise WrongClusterError("capability token refused: issued for another cluster id")
        builder = AuthorizerBuilder("now({now}); allow if true;", {"now": moment})
        limits = builder.limits()  # type: ignore[attr-defined]
        limits.max_time = datetime.timedelta(seconds=TOKEN_DATALOG_SECONDS)
        builder.set_limits(limits)  # type: ignore[attr-defined]
        try:
            builder.build(biscuit).authorize()
        except AuthorizationError as exc:
            if "now($t)" in str(exc):
                raise ExpiredTokenError(f"capability token {grant.id} has expired") from exc
            raise TokenError(f"capability token {grant.id} refused: {exc}") from exc
        return grant


def inspect_token(text: str) -> VerifiedToken:
    """What ``text`` grants, read offline (signatures checked against the signing key the
    token names; the cluster re-checks them with its own key)."""
    parts = _split(text)
    biscuit = _open(parts, _public_key(parts.signing_public_raw))
    return _grant(biscuit, None)


def attenuate(
    text: str,
    capabilities: Sequence[Capability] = (),
    *,
    ttl: float | None = None,
    now: float | None = None,
) -> str:
    """Append an attenuation block to ``text`` offline: keep only ``capabilities`` (each
    must be covered by what the token grants) and/or expire within ``ttl`` seconds."""
    if not capabilities and ttl is None:
        raise InvalidArgumentError("attenuating needs --cap and/or --ttl: it can only narrow")
    _check_ttl(ttl)
    parts = _split(text)
    biscuit = _open(parts, _public_key(parts.signing_public_raw))
    grant = _grant(biscuit, None)
    if grant.depth + 1 > MAX_TOKEN_CHAIN_DEPTH:
        raise ChainTooDeepError(
            f"attenuating would make a chain of depth {grant.depth + 1}, over "
            f"MAX_TOKEN_CHAIN_DEPTH ({MAX_TOKEN_CHAIN_DEPTH})"
        )
    wider = [c for c in capabilities if not covered(grant.capabilities, c)]
    if wider:
        raise InvalidArgumentError(
            "attenuation can only narrow: the token does not grant "
            + ", ".join(str(c) for c in wider),
            capability=str(wider[0]),
        )
    expires = None if ttl is None else int((now or time.time()) + ttl)
    source = (
        "attenuation(true);\n"
        + _fact_lines("cap", [str(c) for c in capabilities])
        + _expiry_code(expires)
    )
    narrowed = biscuit.append(BlockBuilder(source))
    return _joined([*text.strip().split(".")[:3], _biscuit_text(narrowed)])

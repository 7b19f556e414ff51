"""Biscuit capability tokens (aspen.auth.tokens): issue, attenuate offline, verify, refuse."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from aspen.auth.capability import CapabilityError, covered, parse_capabilities, parse_capability
from aspen.auth.tokens import (
    ChainTooDeepError,
    ExpiredTokenError,
    ForgedTokenError,
    MalformedTokenError,
    TokenLimits,
    TokenSigner,
    WrongClusterError,
    attenuate,
    inspect_token,
    signing_key_from_ca,
)
from aspen.errors import InvalidArgumentError, UnauthorizedError
from aspen.limits import MAX_TOKEN_CHAIN_DEPTH


def _signer(cluster: str = "c1") -> TokenSigner:
    return TokenSigner.from_ca(Ed25519PrivateKey.generate(), cluster)


APP = parse_capabilities(["kv:read:/app/", "kv:write:/app/"])


def test_issue_verify_round_trip() -> None:
    signer = _signer()
    token_id, text, expires = signer.issue(
        APP, ttl=60, limits=TokenLimits(rate=10, burst=20, streams=2), now=1000
    )
    grant = signer.verify(text, now=1001)
    assert grant.id == token_id and grant.capabilities == APP
    assert expires == 1060 and grant.expires == 1060
    assert grant.limits == TokenLimits(rate=10.0, burst=20, streams=2)
    assert grant.depth == 0 and token_id in grant.revocation_keys
    assert inspect_token(text).capabilities == APP


def test_the_signing_key_is_derived_from_the_ca_key() -> None:
    ca = Ed25519PrivateKey.generate()
    a, b = TokenSigner.from_ca(ca, "c"), TokenSigner.from_ca(ca, "c")
    _, text, _ = a.issue(APP)
    assert b.verify(text).capabilities == APP  # another member verifies it


def test_attenuation_narrows_offline() -> None:
    signer = _signer()
    _, text, _ = signer.issue(APP)
    narrower = attenuate(text, [parse_capability("kv:read:/app/")], ttl=30, now=2000)
    grant = signer.verify(narrower, now=2001)
    assert grant.capabilities == (parse_capability("kv:read:/app/"),)
    assert grant.expires == 2030 and grant.depth == 1
    deeper = attenuate(narrower, [parse_capability("kv:read:/app/x/")])
    assert signer.verify(deeper, now=2002).capabilities == (parse_capability("kv:read:/app/x/"),)


def test_attenuation_cannot_widen() -> None:
    _, text, _ = _signer().issue(APP)
    with pytest.raises(InvalidArgumentError, match=r"only narrow.*cluster:admin"):
        attenuate(text, [parse_capability("cluster:admin")])
    with pytest.raises(InvalidArgumentError, match=r"only narrow.*kv:read:/"):
        attenuate(text, [parse_capability("kv:read:/")])
    with pytest.raises(InvalidArgumentError, match="--cap and/or --ttl"):
        attenuate(text)


def test_a_chain_deeper_than_the_bound_is_refused() -> None:
    signer = _signer()
    _, text, _ = signer.issue(APP)
    for _ in range(MAX_TOKEN_CHAIN_DEPTH):
        text = attenuate(text, ttl=3600)
    assert signer.verify(text).depth == MAX_TOKEN_CHAIN_DEPTH
    with pytest.raises(ChainTooDeepError, match="MAX_TOKEN_CHAIN_DEPTH"):
        attenuate(text, ttl=3600)
    with pytest.raises(ChainTooDeepError):
        signer.issue(APP, ancestors=[f"a{i}" for i in range(MAX_TOKEN_CHAIN_DEPTH + 1)])


def test_bad_tokens_are_typed_errors() -> None:
    signer = _signer()
    _, text, _ = signer.issue(APP, ttl=10, now=1000)
    head, body = text.rsplit(".", 1)
    flipped = head + "." + body[:40] + ("A" if body[40] != "A" else "B") + body[41:]
    cases = [
        (flipped, ForgedTokenError),
        (text[: len(text) // 2], (ForgedTokenError, MalformedTokenError)),
        ("aspen1c.garbage", MalformedTokenError),
        ("aspen1c.a.b.c", MalformedTokenError),
        (_signer().issue(APP)[1], WrongClusterError),
    ]
    for bad, error in cases:
        with pytest.raises(error) as info:
            signer.verify(bad, now=1001)
        assert isinstance(info.value, UnauthorizedError)
        assert info.value.code == "unauthorized"
    with pytest.raises(ExpiredTokenError, match="expired"):
        signer.verify(text, now=1011)
    # same CA key, forged signing key: the node verifies with its own key
    forger_key = signing_key_from_ca(Ed25519PrivateKey.generate())
    other = TokenSigner(forger_key, signer.ca_public_raw, signer.cluster_id)
    with pytest.raises(ForgedTokenError):
        signer.verify(other.issue(APP)[1])


def test_an_expired_attenuation_expires_the_token() -> None:
    signer = _signer()
    _, text, _ = signer.issue(APP, now=1000)
    short = attenuate(text, ttl=5, now=1000)
    with pytest.raises(ExpiredTokenError):
        signer.verify(short, now=1006)


def test_bad_capability_syntax() -> None:
    with pytest.raises(CapabilityError):
        parse_capabilities(['kv:read:/a"b'])


_SCOPES = st.sampled_from(["/", "/a/", "/a/b/", "/ab", "/b/", "/a/b/c"])
_CAPS = st.builds(
    lambda op, scope: parse_capability(f"kv:{op}:{scope}"),
    st.sampled_from(["read", "write"]),
    _SCOPES,
)


@settings(max_examples=30, deadline=None)
@given(st.lists(_CAPS, min_size=1, max_size=4), st.lists(st.lists(_CAPS, max_size=3), max_size=4))
def test_no_chain_of_real_attenuations_widens(held: list[Any], blocks: list[list[Any]]) -> None:
    """Attenuate a real token block by block: whatever verifies never grants more."""
    signer = _SIGNER
    _, text, _ = signer.issue(parse_capabilities(str(c) for c in held))
    granted = signer.verify(text).capabilities
    for block in blocks:
        try:
            text = attenuate(text, block, ttl=600)
        except InvalidArgumentError:
            continue  # asked for more than it has: refused offline
        narrowed = signer.verify(text).capabilities
        assert all(covered(granted, c) for c in narrowed)
        granted = narrowed


_SIGNER = TokenSigner.from_ca(Ed25519PrivateKey.generate(), "prop")

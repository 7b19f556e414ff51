"""The capability algebra (aspen.auth.capability) and KV key scopes (aspen.auth.kvscope)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aspen.auth.capability import (
    Capability,
    CapabilityError,
    covered,
    narrow,
    parse_capabilities,
    parse_capability,
)
from aspen.auth.kvscope import kv_prefixes, kv_spans, span_allowed
from aspen.errors import InvalidArgumentError
from aspen.kv.keys import prefix_end
from aspen.limits import MAX_CAPABILITY_BYTES, MAX_TOKEN_CAPABILITIES


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("kv:read:/app/", Capability("kv", "read", "/app/", True)),
        ("kv:write:/app/config/", Capability("kv", "write", "/app/config/", True)),
        ("blob:read", Capability("blob", "read")),
        ("secrets:read:secret/data/app/*", Capability("secrets", "read", "secret/data/app/")),
        ("forge:push:acme/*", Capability("forge", "push", "acme/", True)),
        ("jobs:consume:builds", Capability("jobs", "consume", "builds", False)),
        ("cluster:admin", Capability("cluster", "admin")),
        ("kv:read:*", Capability("kv", "read")),
        ("kv:read:a:b", Capability("kv", "read", "a:b")),
    ],
)
def test_parse_and_format_round_trip(text: str, cap: Capability) -> None:
    assert parse_capability(text) == cap
    assert parse_capability(str(cap)) == cap


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kv", "resource:operation"),
        ("KV:read", "lowercase"),
        ("kv:Read:/x", "lowercase"),
        ("kv::/x", "operation"),
        ("kv:read:", "empty scope"),
        ("kv:read:/a b", "printable"),
        ("kv:read:/a\n", "printable"),
        ("forge:push:a*b", "glob"),
        ("x" * (MAX_CAPABILITY_BYTES + 1), "MAX_CAPABILITY_BYTES"),
    ],
)
def test_bad_syntax_is_a_typed_error(text: str, fragment: str) -> None:
    with pytest.raises(CapabilityError, match=fragment) as info:
        parse_capability(text)
    assert isinstance(info.value, InvalidArgumentError)
    assert info.value.code == "invalid_argument"


def test_non_string_and_too_many() -> None:
    with pytest.raises(CapabilityError, match="string"):
        parse_capability(3)
    with pytest.raises(CapabilityError, match="MAX_TOKEN_CAPABILITIES"):
        parse_capabilities(f"kv:read:/{i}/" for i in range(MAX_TOKEN_CAPABILITIES + 1))


def test_prefix_edge_cases() -> None:
    app_dir = parse_capability("kv:read:/app/")
    app = parse_capability("kv:read:/app")
    assert app_dir.allows("/app/x") and not app_dir.allows("/apple")
    assert app.allows("/apple") and app.allows("/app/x")
    assert app.covers(app_dir) and not app_dir.covers(app)
    assert not parse_capability("kv:write:/app/").covers(app_dir)  # operation differs
    exact = parse_capability("jobs:consume:builds")
    assert exact.allows("builds") and not exact.allows("builds2")
    assert not exact.covers(parse_capability("jobs:consume:build*"))
    assert parse_capability("jobs:consume:build*").covers(exact)
    assert parse_capability("blob:read").covers(parse_capability("blob:read:abc"))


def test_intersect_and_narrow() -> None:
    wide, deep = parse_capability("kv:read:/app/"), parse_capability("kv:read:/app/x/")
    assert wide.intersect(deep) == deep and deep.intersect(wide) == deep
    assert wide.intersect(parse_capability("kv:read:/other/")) is None
    held = parse_capabilities(["kv:read:/app/", "kv:write:/app/"])
    assert narrow(held, parse_capabilities(["kv:read:/"])) == (wide,)
    # asking for more than is held yields nothing wider
    assert narrow(held, parse_capabilities(["cluster:admin"])) == ()


def test_kv_spans_and_prefixes() -> None:
    caps = parse_capabilities(["kv:read:/app/", "kv:write:/app/config/"])
    assert span_allowed(kv_prefixes(caps), ("read", b"/app/x", None))
    assert not span_allowed(kv_prefixes(caps), ("read", b"/apple", None))
    assert span_allowed(kv_prefixes(caps), ("read", b"/app/", prefix_end(b"/app/")))
    assert not span_allowed(kv_prefixes(caps), ("read", b"/app/", b"/b"))
    assert not span_allowed(
        kv_prefixes(caps), ("read", b"/app/", b"\x00")
    )  # every key from /app/ on
    assert not span_allowed(kv_prefixes(caps), ("write", b"/app/x", None))
    assert span_allowed(kv_prefixes(caps), ("write", b"/app/config/a", None))
    root_like = parse_capabilities(["kv:read:/", "kv:write"])
    assert span_allowed(kv_prefixes(root_like), ("read", b"/x", None))
    assert not span_allowed(kv_prefixes(root_like), ("read", b"/_aspen/hooks/x", None))
    assert not span_allowed(kv_prefixes(root_like), ("read", b"/", b"\x00"))  # holds /_aspen/ keys
    plugin = parse_capabilities(["kv:read:/_aspen/hooks/", "kv:write:/_aspen/"])
    assert span_allowed(kv_prefixes(plugin), ("read", b"/_aspen/hooks/a", None))
    assert not span_allowed(kv_prefixes(plugin), ("write", b"/_aspen/tokens/revoked/x", None))


def test_txn_spans_cover_compares_and_nested_ops() -> None:
    params = {
        "compare": [{"key": "/a/c", "target": "version", "op": "==", "value": 0}],
        "success": [{"put": {"key": "/a/p", "value": b"1"}}],
        "failure": [{"txn": {"success": [{"delete": {"key": "/b/d"}}]}}],
    }
    spans = kv_spans("kv.txn", params)
    assert ("read", b"/a/c", None) in spans
    assert ("write", b"/a/p", None) in spans
    assert ("write", b"/b/d", None) in spans
    with pytest.raises(InvalidArgumentError):
        kv_spans("kv.put", {"key": 3})


# --------------------------------------------------------------------- properties
_names = st.text(alphabet="/abc*", max_size=6).map(lambda s: s.replace("*", ""))
_caps = (
    st.builds(
        Capability,
        st.sampled_from(["kv", "jobs"]),
        st.sampled_from(["read", "write"]),
        _names,
        st.booleans(),
    )
    .filter(lambda c: c.scope or c.prefix)
    .map(lambda c: parse_capability(str(c)))
)
_cap_sets = st.lists(_caps, max_size=5).map(lambda cs: tuple(sorted(set(cs))))


@given(_cap_sets, _cap_sets, st.sampled_from(["kv", "jobs"]), _names)
def test_no_attenuation_widens_access(
    held: tuple[Capability, ...], block: tuple[Capability, ...], resource: str, name: str
) -> None:
    """Whatever the block asks for, every name the narrowed set allows, both sides allow."""
    kept = narrow(held, block)
    for operation in ("read", "write"):
        allowed = any(c.allows(name) for c in kept if c.kind == f"{resource}:{operation}")
        by_held = any(c.allows(name) for c in held if c.kind == f"{resource}:{operation}")
        by_block = any(c.allows(name) for c in block if c.kind == f"{resource}:{operation}")
        assert allowed == (by_held and by_block)
    for cap in kept:
        assert covered(held, cap) and covered(block, cap)


@given(_cap_sets, st.lists(_cap_sets, max_size=8))
def test_chained_attenuation_only_narrows(
    held: tuple[Capability, ...], blocks: list[tuple[Capability, ...]]
) -> None:
    current = held
    for block in blocks:
        nxt = narrow(current, block)
        assert all(covered(current, c) for c in nxt)
        current = nxt


@given(_caps, _caps)
def test_covers_agrees_with_allows(a: Capability, b: Capability) -> None:
    if a.covers(b):
        for name in (b.scope, b.scope + "x", b.scope + "/y"):
            if b.allows(name):
                assert a.allows(name)
    assert parse_capability(str(a)) == a

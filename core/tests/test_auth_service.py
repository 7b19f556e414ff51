"""The node's token service (aspen.auth.service): buckets, revocation set, audit bound."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aspen.auth.access import ROOT
from aspen.auth.capability import parse_capabilities
from aspen.auth.kvscope import kv_spans
from aspen.auth.service import REVOKED_PREFIX, TokenBucket, TokenService
from aspen.auth.tokens import TokenSigner
from aspen.errors import UnauthorizedError
from aspen.events import KeyValue, KvDelete, KvPut, SnapshotInstalled
from aspen.limits import MAX_AUDIT_FIELD_BYTES, MAX_AUDIT_RECORDS
from aspen.rpc.handler import RpcHandler


def _service() -> tuple[TokenService, TokenSigner]:
    signer = TokenSigner.from_ca(Ed25519PrivateKey.generate(), "c")
    return TokenService(signer, "aspen_rootsecret"), signer


def _kv(key: bytes) -> KeyValue:
    return KeyValue(key, b"", 1, 1, 1)


def test_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    now = bucket.stamp
    assert bucket.take(now) == 0 and bucket.take(now) == 0
    wait = bucket.take(now)
    assert wait == pytest.approx(0.1)
    assert bucket.take(now + 0.11) == 0


def test_root_and_unknown_tokens() -> None:
    service, _ = _service()
    assert service.authenticate("aspen_rootsecret") is ROOT
    assert service.authenticate("aspen_wrong") is None
    assert service.authenticate("") is None


async def _unused(ctx: Any, params: dict[str, Any]) -> Any:
    raise AssertionError("the check runs before any handler")


def test_revocations_follow_applied_events_and_snapshots() -> None:
    service, signer = _service()
    token_id, text, _ = signer.issue(parse_capabilities(["kv:read:/"]))
    authority = service.authenticate(text)
    assert authority is not None
    key = REVOKED_PREFIX + token_id.encode()
    assert service.on_applied([KvPut(index=1, term=1, revision=2, kv=_kv(key))]) is False
    with pytest.raises(UnauthorizedError, match="revoked"):
        service.authenticate(text)
    get = RpcHandler(
        "kv.range", _unused, capability="kv:read", scope=functools.partial(kv_spans, "kv.range")
    )
    refused = authority.check(get, {"key": b"/x"})  # an open connection sees it too
    assert isinstance(refused, UnauthorizedError)
    service.on_applied([KvDelete(index=2, term=1, revision=3, kv=_kv(key), prev=_kv(key))])
    assert service.authenticate(text) is not None
    snapshot = SnapshotInstalled(index=9, term=2, source="n1", size_bytes=1)
    assert service.on_applied([snapshot]) is True  # the caller reloads the whole set
    service.load_revoked([token_id])
    with pytest.raises(UnauthorizedError):
        service.authenticate(text)


def test_the_audit_log_is_bounded() -> None:
    service, _ = _service()
    for i in range(MAX_AUDIT_RECORDS + 5):
        service.record("denied", f"t{i}", message="x" * (MAX_AUDIT_FIELD_BYTES * 2))
    records = service.audit()
    assert len(records) == MAX_AUDIT_RECORDS
    assert records[0]["token"] == "t5"
    assert len(records[-1]["message"].encode()) <= MAX_AUDIT_FIELD_BYTES + 3

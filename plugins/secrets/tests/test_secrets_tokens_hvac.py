"""Aspen capability tokens as Vault tokens, driven by hvac against a real node's HTTP API:
a token with ``secrets:read:secret/data/app/*`` reads that path and nothing else;
``auth/token/create`` and ``lookup-self`` work for scoped tokens."""

from __future__ import annotations

from typing import Any

import hvac
import pytest
from hvac import exceptions

from aspen.node.runner import NodeThread

READ_APP = "secrets:read:secret/data/app/*"


def _token(node: NodeThread, *caps: str) -> str:
    with node.client() as c:
        return str(c.call("token.create", {"capabilities": list(caps), "ttl": 600})["token"])


def _client(url: str, token: str) -> Any:
    return hvac.Client(url=url, token=token, timeout=30)


def test_a_scoped_token_reads_its_path_and_nothing_else(
    vault: Any, vault_url: str, secrets_node: NodeThread
) -> None:
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(path="app/db", secret={"password": "s3cret"})
    kv.create_or_update_secret(path="other/db", secret={"password": "no"})
    scoped = _client(vault_url, _token(secrets_node, READ_APP))
    try:
        got = scoped.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
        assert got["data"]["data"] == {"password": "s3cret"}
        with pytest.raises(exceptions.Forbidden, match="secrets:read:secret/data/other/db"):
            scoped.secrets.kv.v2.read_secret_version(path="other/db", raise_on_deleted_version=True)
        with pytest.raises(exceptions.Forbidden, match="secrets:write:secret/data/app/db"):
            scoped.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"x": "y"})
        with pytest.raises(exceptions.Forbidden, match="secrets:read:sys/mounts"):
            scoped.sys.list_mounted_secrets_engines()
        me = scoped.auth.token.lookup_self()["data"]
        assert me["policies"] == [READ_APP]
        assert me["ttl"] > 0
    finally:
        scoped.adapter.close()


def test_token_create_for_scoped_tokens(
    vault: Any, vault_url: str, secrets_node: NodeThread
) -> None:
    vault.secrets.kv.v2.create_or_update_secret(path="app/x", secret={"v": "1"})
    vault.secrets.kv.v2.create_or_update_secret(path="app/y", secret={"v": "2"})
    scoped = _client(vault_url, _token(secrets_node, READ_APP))
    try:
        made = scoped.auth.token.create(policies=["secrets:read:secret/data/app/x"], ttl="5m")
        child_token = made["auth"]["client_token"]
        assert made["auth"]["lease_duration"] > 0
        with pytest.raises(exceptions.Forbidden, match="secrets:read:secret/data/"):
            scoped.auth.token.create(policies=["secrets:read:secret/data/*"])
    finally:
        scoped.adapter.close()
    child = _client(vault_url, child_token)
    try:
        x = child.secrets.kv.v2.read_secret_version(path="app/x", raise_on_deleted_version=True)
        assert x["data"]["data"] == {"v": "1"}
        with pytest.raises(exceptions.Forbidden):
            child.secrets.kv.v2.read_secret_version(path="app/y", raise_on_deleted_version=True)
        assert child.auth.token.lookup_self()["data"]["orphan"] is False
    finally:
        child.adapter.close()
    # a bad token is a 403 naming why
    forged = child_token[:-10] + ("A" * 10 if not child_token.endswith("A" * 10) else "B" * 10)
    bad = _client(vault_url, forged)
    try:
        with pytest.raises(exceptions.Forbidden, match="permission denied"):
            bad.secrets.kv.v2.read_secret_version(path="app/x", raise_on_deleted_version=True)
    finally:
        bad.adapter.close()

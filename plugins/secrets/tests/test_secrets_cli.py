"""``aspen secrets …`` in-process against a real node (through ``secrets.request``)."""

from __future__ import annotations

import json
from typing import Any

from aspen.testing import CliInvoker


def test_kv_put_get_list_patch_delete(secrets_cli: CliInvoker) -> None:
    put = secrets_cli("secrets", "kv", "put", "app/db", "user=ann", "pass=s3cret")
    assert put.exit_code == 0, put.output
    assert "version" in put.stdout

    got = secrets_cli("secrets", "kv", "get", "app/db")
    assert got.exit_code == 0, got.output
    assert "pass  s3cret" in got.stdout and "user  ann" in got.stdout
    field = secrets_cli("secrets", "kv", "get", "--field", "pass", "app/db")
    assert field.stdout == "s3cret\n"

    as_json = secrets_cli("--json", "secrets", "kv", "get", "app/db")
    assert json.loads(as_json.stdout)["data"] == {"user": "ann", "pass": "s3cret"}

    assert secrets_cli("secrets", "kv", "patch", "app/db", "pass=n3w").exit_code == 0
    assert secrets_cli("secrets", "kv", "get", "--field", "pass", "app/db").stdout == "n3w\n"
    v1 = secrets_cli("secrets", "kv", "get", "--version", "1", "--field", "pass", "app/db")
    assert v1.stdout == "s3cret\n"

    listed = secrets_cli("secrets", "kv", "list", "app")
    assert listed.exit_code == 0 and listed.stdout == "db\n"

    assert secrets_cli("secrets", "kv", "delete", "app/db").exit_code == 0
    gone = secrets_cli("secrets", "kv", "get", "app/db")
    assert gone.exit_code != 0
    assert secrets_cli("secrets", "kv", "undelete", "--versions", "2", "app/db").exit_code == 0
    assert secrets_cli("secrets", "kv", "get", "--field", "pass", "app/db").stdout == "n3w\n"
    assert secrets_cli("secrets", "kv", "destroy", "--versions", "1", "app/db").exit_code == 0

    meta = secrets_cli("secrets", "kv", "metadata", "put", "--max-versions", "3", "app/db")
    assert meta.exit_code == 0, meta.output
    shown = json.loads(secrets_cli("--json", "secrets", "kv", "metadata", "get", "app/db").stdout)
    assert shown["max_versions"] == 3 and shown["versions"]["1"]["destroyed"] is True
    assert secrets_cli("secrets", "kv", "metadata", "delete", "app/db").exit_code == 0
    assert secrets_cli("secrets", "kv", "list", "app").stdout == ""


def test_generic_verbs(secrets_cli: CliInvoker) -> None:
    body = json.dumps({"data": {"k": "from-stdin"}})
    wrote = secrets_cli("secrets", "write", "secret/data/generic", "-", input=body)
    assert wrote.exit_code == 0, wrote.output
    read = secrets_cli("--json", "secrets", "read", "secret/data/generic")
    assert json.loads(read.stdout)["data"] == {"k": "from-stdin"}
    listed = secrets_cli("secrets", "list", "secret/metadata")
    assert "generic" in listed.stdout.split()
    assert secrets_cli("secrets", "delete", "secret/metadata/generic").exit_code == 0
    missing = secrets_cli("secrets", "read", "nowhere/x")
    assert missing.exit_code != 0 and "no handler for route" in missing.output


def test_status_and_mounts(secrets_cli: CliInvoker, secrets_node: Any) -> None:
    status = json.loads(secrets_cli("--json", "secrets", "status").stdout)
    assert status["state"] == "ready" and status["http_address"] == secrets_node.http_address
    mounts = json.loads(secrets_cli("--json", "secrets", "read", "sys/mounts").stdout)
    assert set(mounts) >= {"secret/", "transit/", "pki/"}
    enable = secrets_cli("secrets", "write", "sys/mounts/extra", "type=kv")
    assert enable.exit_code == 0, enable.output
    bad = secrets_cli("secrets", "write", "sys/mounts/old", "type=kv", "options=x")
    assert bad.exit_code != 0


def test_engine_groups_attach_when_they_import(secrets_cli: CliInvoker) -> None:
    helped = secrets_cli("secrets", "--help")
    assert helped.exit_code == 0
    for name in ("read", "write", "list", "delete", "kv", "status"):
        assert name in helped.stdout

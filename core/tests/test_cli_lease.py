"""`aspen lease …` against a real node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from aspen.cli.output import EXIT_NO, EXIT_USAGE
from aspen.testing import wait_for

pytestmark = pytest.mark.aspen_plugins()  # core only


def _grant(cli, ttl: int = 30) -> int:
    result = cli("--json", "lease", "grant", str(ttl))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def test_grant_list_ttl_revoke(cli):
    text = cli("lease", "grant", "30").stdout
    assert text.startswith("lease ") and text.endswith(" granted with TTL 30s\n")
    lease_id = _grant(cli)
    assert str(lease_id) in cli("lease", "list").stdout.split()
    assert lease_id in json.loads(cli("--json", "lease", "list").stdout)

    cli("kv", "put", "session", "alive", "--lease", str(lease_id))
    ttl = json.loads(cli("--json", "lease", "ttl", str(lease_id), "--keys").stdout)
    assert ttl["granted_ttl"] == 30 and 0 < ttl["ttl"] <= 30
    assert ttl["keys"] == [{"key": "session"}]
    text = cli("lease", "ttl", hex(lease_id), "--keys").stdout
    assert text.startswith(f"lease {lease_id}: ") and "  session" in text

    assert cli("lease", "revoke", str(lease_id)).stdout == f"lease {lease_id} revoked\n"
    assert cli("kv", "get", "session").exit_code == EXIT_NO


def test_ttl_of_unknown_lease_exits_1(cli):
    result = cli("lease", "ttl", "12345")
    assert result.exit_code == EXIT_NO
    assert result.stderr.startswith("error: ")


def test_bad_lease_id_is_a_usage_error(cli):
    result = cli("lease", "revoke", "twelve")
    assert result.exit_code == EXIT_USAGE
    assert "is not a lease id" in result.stderr


def test_keepalive_once(cli):
    lease_id = _grant(cli, 20)
    result = cli("lease", "keepalive", str(lease_id), "--once")
    assert result.exit_code == 0
    assert result.stdout == f"lease {lease_id} kept alive, TTL 20s\n"
    out = json.loads(cli("--json", "lease", "keepalive", str(lease_id), "--once").stdout)
    assert out == {"id": lease_id, "ttl": 20}


def test_keepalive_of_unknown_lease_fails(cli):
    assert cli("lease", "keepalive", "999", "--once").exit_code == EXIT_NO


def test_keepalive_loops_until_ctrl_c(node, cli):
    """A real `aspen lease keepalive` process renews a short lease until SIGINT.

    Starting a Python process can take longer than the 2 s TTL on a loaded machine, so the
    test renews the lease itself until the process's first renewal: from then on only the
    process keeps it, and four more renewals (2/3 s apart: 2.7 s) outlast the TTL."""
    lease_id = _grant(cli, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASPEN_")}
    env.update(ASPEN_ENDPOINT=node.endpoint, ASPEN_TOKEN=node.token, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "aspen", "lease", "keepalive", str(lease_id)]
    started = threading.Event()

    def bridge() -> None:
        with node.client() as c:
            while not started.wait(0.25):
                c.lease.keepalive(lease_id)

    helper = threading.Thread(target=bridge, name="keepalive-bridge")
    helper.start()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        try:
            first = proc.stdout.readline()
        finally:
            started.set()
            helper.join()
        lines = [first]
        wait_for(
            lambda: lines.append(proc.stdout.readline()) or len(lines) >= 5,
            timeout=30,
            message="five keepalives",
        )
        assert all(b"kept alive" in line for line in lines), lines
        assert lease_id in json.loads(cli("--json", "lease", "list").stdout)
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0
    assert b"Traceback" not in proc.stderr.read()

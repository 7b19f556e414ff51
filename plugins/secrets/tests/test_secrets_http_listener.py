"""The secrets HTTP API on the core's hardened listener, on a real node: half-sent
requests (slowloris) are cut off after the header timeout, connections beyond the cap are
refused, and neither starves the node's RPC clients; the listener's own errors come in
Vault's ``{"errors": [...]}`` shape. The bounds are shortened for the test."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest

from aspen_secrets import http as secrets_http

#: Seconds any single socket read may block before the test fails.
READ_DEADLINE = 15.0
#: Half-sent requests the test opens: more than the (shortened) connection cap.
SLOW_CLIENTS = 40
MAX_CONNECTIONS = 10


def answer(sock: socket.socket) -> tuple[int, Any]:
    """Status and JSON body of what the node sends before closing ``sock``."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s header timeout and a 10-connection cap for the node started next."""
    bounds = dataclasses.replace(
        secrets_http.HTTP_LIMITS, header_timeout=1.0, max_connections=MAX_CONNECTIONS
    )
    monkeypatch.setattr(secrets_http, "HTTP_LIMITS", bounds)


def test_slowloris_is_cut_off_and_rpc_keeps_serving(
    short_bounds: None, secrets_node_factory: Callable[..., Any], tmp_path: Path
) -> None:
    node = secrets_node_factory(tmp_path / "n1")
    host, _, port = node.http_address.rpartition(":")
    slow = []
    for _ in range(SLOW_CLIENTS):
        sock = socket.create_connection((host, int(port)), timeout=READ_DEADLINE)
        sock.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        slow.append(sock)

    with node.client() as c:  # a fresh RPC connection is served meanwhile
        c.kv.put("during", "slowloris")
        assert c.kv.get("during").value == b"slowloris"

    statuses = []
    for sock in slow:
        status, body = answer(sock)  # every one is answered and closed, none hangs
        assert isinstance(body["errors"], list) and body["errors"][0]
        statuses.append(status)
        sock.close()
    assert set(statuses) == {408, 503}
    assert statuses.count(408) <= MAX_CONNECTIONS

    vault = hvac.Client(url=f"http://{node.http_address}", token=node.token, timeout=30)
    try:
        assert vault.sys.read_health_status(method="GET")["sealed"] is False
    finally:
        vault.adapter.close()


def test_malformed_http_gets_vaults_error_shape(vault_url: str) -> None:
    host, _, port = vault_url.removeprefix("http://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=READ_DEADLINE) as sock:
        sock.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost x\r\n\r\n")  # header without ':'
        assert answer(sock) == (400, {"errors": ["malformed HTTP request"]})

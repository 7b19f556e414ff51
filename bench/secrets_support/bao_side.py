"""OpenBao (the open-source fork of HashiCorp Vault, same HTTP API) under test.

Two set-ups: ``dev`` (``bao server -dev``: one node, data in memory, unsealed) and
``raft`` (integrated Raft storage on disk, as in production: a config file per node,
``sys/init`` with one key share, ``sys/unseal``; nodes 2.. join node 1 with
``retry_join`` and are unsealed with the same key). Mounts ``transit/`` and ``secret/``
(KV v2) are enabled as Aspen has them by default.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from aspen.testing import free_port
from secrets_support.procs import Endpoint, spawn, stop, wait_until

#: Seconds for one set-up HTTP request.
HTTP_TIMEOUT = 10.0
#: Seconds a joined node has to become a voter (autopilot's stabilization time is 10 s).
VOTER_SECONDS = 90.0


def _config(data: Path, node_id: str, api: int, cluster: int, join: str | None) -> str:
    """The HCL configuration of one raft node."""
    retry = f'\n  retry_join {{\n    leader_api_addr = "{join}"\n  }}' if join else ""
    return f"""storage "raft" {{
  path    = "{data}"
  node_id = "{node_id}"{retry}
}}
listener "tcp" {{
  address         = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{api}"
cluster_addr  = "https://127.0.0.1:{cluster}"
disable_mlock = true
log_level     = "warn"
"""


def _health(url: str) -> int:
    """``sys/health`` status: 200 active, 429 standby, 501 not initialised, 503 sealed."""
    return httpx.get(f"{url}/v1/sys/health", timeout=HTTP_TIMEOUT).status_code


def _call(url: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """One set-up request; its JSON answer (``{}`` for 204); raises on an error status."""
    r = httpx.request(
        method,
        f"{url}/v1/{path}",
        json=body,
        headers={"X-Vault-Token": token},
        timeout=HTTP_TIMEOUT,
    )
    r.raise_for_status()
    return r.json() if r.content else {}


def _enable_mounts(url: str, token: str, kv: bool) -> None:
    """Enable ``transit/`` (and ``secret/`` as KV v2 when ``kv``)."""
    _call(url, token, "POST", "sys/mounts/transit", {"type": "transit"})
    if kv:
        _call(url, token, "POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}})


def _voters(url: str, token: str) -> int:
    """How many raft servers are voters, seen from the active node."""
    conf = _call(url, token, "GET", "sys/storage/raft/configuration")
    return sum(1 for s in conf["data"]["config"]["servers"] if s.get("voter"))


@contextmanager
def openbao(binary: str, workdir: Path, mode: str, nodes: int = 1) -> Iterator[Endpoint]:
    """Start OpenBao (``mode`` ``dev`` or ``raft``, ``nodes`` ≥ 1 for raft) under
    ``workdir``; yield the active node's endpoint; stop every process afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        if mode == "dev":
            token = secrets.token_urlsafe(16)
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            procs.append(
                spawn(
                    [
                        binary,
                        "server",
                        "-dev",
                        f"-dev-root-token-id={token}",
                        f"-dev-listen-address=127.0.0.1:{port}",
                        "-log-level=warn",
                    ],
                    workdir / "bao-dev.log",
                )
            )
            wait_until(lambda: _health(url) == 200, "OpenBao dev server")
            _enable_mounts(url, token, kv=False)
        else:
            url, token = _start_raft(binary, workdir, nodes, procs)
        yield Endpoint(
            system="openbao",
            storage="inmem" if mode == "dev" else "raft",
            nodes=nodes,
            http_url=url,
            token=token,
            pids=tuple(p.pid for p in procs),
        )
    finally:
        stop(procs)


def _start_raft(binary: str, workdir: Path, nodes: int, procs: list) -> tuple[str, str]:
    """Start, initialise, unseal and join a raft cluster; return (active URL, root token)."""
    urls = []
    for i in range(1, nodes + 1):
        api, cluster = free_port(), free_port()
        data = workdir / f"n{i}"
        data.mkdir(parents=True, exist_ok=True)
        conf = workdir / f"n{i}.hcl"
        conf.write_text(_config(data, f"n{i}", api, cluster, urls[0] if urls else None))
        urls.append(f"http://127.0.0.1:{api}")
        procs.append(spawn([binary, "server", f"-config={conf}"], workdir / f"n{i}.log"))
        if i == 1:
            wait_until(lambda: _health(urls[0]) in (501, 503), "OpenBao node 1 to listen")
            init = (
                httpx.put(
                    f"{urls[0]}/v1/sys/init",
                    json={"secret_shares": 1, "secret_threshold": 1},
                    timeout=HTTP_TIMEOUT,
                )
                .raise_for_status()
                .json()
            )
            key, token = init["keys_base64"][0], init["root_token"]
    for i, url in enumerate(urls, 1):
        wait_until(
            lambda url=url: (
                not httpx.put(f"{url}/v1/sys/unseal", json={"key": key}, timeout=HTTP_TIMEOUT)
                .json()
                .get("sealed", True)
            ),
            f"OpenBao node {i} to unseal",
        )
    wait_until(lambda: _health(urls[0]) == 200, "OpenBao node 1 to become active")
    if nodes > 1:
        wait_until(lambda: _voters(urls[0], token) == nodes, "OpenBao voters", VOTER_SECONDS)
    _enable_mounts(urls[0], token, kv=True)
    return urls[0], token

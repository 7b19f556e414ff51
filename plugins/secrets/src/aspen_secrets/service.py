"""The plugin's runtime on one node: created by ``aspen_startup``, dropped at shutdown.

Start-up (:meth:`SecretsService.start`) is quick: it reads the SOPS secrets file if one
is configured, picks the root key, binds the HTTP listener and spawns :meth:`_open`,
which keeps trying until the cluster has a leader, then opens (or, on a new cluster,
creates) the keyring, makes sure the default mounts exist, imports the bootstrap
secrets, and only then reports ready; the leader also finishes unmount purges left
pending (:meth:`~aspen_secrets.mounts.MountTable.resume_purges`). Until it is ready the
plugin answers 503 (``starting``); if the stored
keyring does not open with this node's root key it stays **sealed** (503, with the
reason in ``secrets.status`` and ``sys/health``). The node itself runs on either way.
The node also publishes its HTTP address (:data:`NODES_PREFIX`) so that any node's
``sys/leader`` can name the leader's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from aspen.errors import AspenError, InvalidArgumentError, NotLeaderError, UnavailableError
from aspen.http import listen_address
from aspen_secrets import bootstrap, limits
from aspen_secrets.consistency import in_scope, mark_fresh, needs_barrier
from aspen_secrets.dispatch import Dispatcher
from aspen_secrets.http import serve as serve_http
from aspen_secrets.keyring import ClusterKeyring, RootKey, dev_root_key, read_root_key_file
from aspen_secrets.kvstore import STORE_PREFIX, KvStore
from aspen_secrets.logical import SealedError
from aspen_secrets.mounts import TABLE_PATH, Router
from aspen_secrets.plugin import DEFAULT_HTTP_PORT
from aspen_secrets.sharedread import SharedRead
from aspen_secrets.store import Entry
from aspen_secrets.sys_endpoints import VERSION

if TYPE_CHECKING:
    from aspen.http import HttpServer

__all__ = [
    "HTTP_ADDRESS_FILE",
    "NODES_PREFIX",
    "SecretsService",
    "node_address_key",
]

log = logging.getLogger(__name__)

#: File in the data directory that holds the bound HTTP address.
HTTP_ADDRESS_FILE = "secrets-http-address"
#: KV prefix of the HTTP addresses the nodes publish, one plain JSON entry per node id (an
#: address is no secret, and ``sys/leader`` reads them while the keyring is still closed).
NODES_PREFIX = STORE_PREFIX + b"nodes/"


def node_address_key(node_id: str) -> bytes:
    """The KV key of the HTTP address node ``node_id`` publishes."""
    return NODES_PREFIX + node_id.encode()


class SecretsService:
    """Everything the plugin holds for one node (keyring, store, router, HTTP)."""

    def __init__(self, node: Any, config: dict[str, Any]) -> None:
        self.node = node
        self.config = config
        self.state = "starting"
        self.reason = "waiting for the cluster to open the keyring"
        self.root: RootKey | None = None
        self.keyring = ClusterKeyring(node, dev_root_key(node.token))
        self.store = KvStore(node, self.keyring)
        self._table_reads: SharedRead[Entry | None] = SharedRead(
            lambda: self.store.get(TABLE_PATH, serializable=False)
        )
        self.router = Router(self.store, self._read_table)
        self.dispatcher = Dispatcher(self)
        self.http: HttpServer | None = None
        self.http_address = ""
        self.http_error = ""
        self.bootstrap_report: dict[str, Any] = {}
        self._secrets: dict[str, Any] = {}
        self._keyring_open = False

    async def _read_table(self, path: str) -> Any:
        """The mount table: in a request's read scope usually its one linearizable read,
        shared with the requests waiting for the same one (:mod:`aspen_secrets.sharedread`);
        else (the token-less path check, or the scope had its read) a local read."""
        if path != TABLE_PATH or not in_scope() or not needs_barrier():
            return await self.store.get(path, serializable=True)
        entry = await self._table_reads.get()
        mark_fresh()
        return entry

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Pick the root key, start HTTP, and open the keyring in the background."""
        try:
            self.root = await self._root_key()
        except AspenError as exc:
            self._seal(str(exc.message))
        else:
            self.keyring.root = self.root
            if self.root.is_dev:
                log.warning(
                    "aspen-secrets uses the dev root key derived from the cluster token; "
                    "give nodes --root-key-file or an aspen_root_key in --secrets-file"
                )
        self._start_http()
        if self.root is not None:
            self.node.spawn(self._open, name="secrets-open")

    async def _root_key(self) -> RootKey:
        secrets_file = self.config.get("secrets_file")
        if secrets_file:
            age_key = self.config.get("age_key_file") or os.environ.get("SOPS_AGE_KEY_FILE")
            try:
                doc = await anyio.to_thread.run_sync(
                    bootstrap.load_secrets_file, Path(secrets_file), age_key
                )
            except AspenError as exc:
                raise InvalidArgumentError(
                    f"cannot read the secrets file {secrets_file}: {exc.message}"
                ) from exc
            sops_key, self._secrets = bootstrap.split_root_key(doc, Path(secrets_file))
        else:
            sops_key = None
        key_file = self.config.get("root_key_file")
        if key_file:
            return read_root_key_file(Path(key_file))
        if sops_key is not None:
            return sops_key
        return dev_root_key(self.node.token)

    def _start_http(self) -> None:
        listen = listen_address(self.config.get("http_listen"), DEFAULT_HTTP_PORT)
        if listen is None:
            self.http_error = "disabled (http_listen = off)"
            return
        try:
            server = serve_http(self, listen)
        except (OSError, AspenError) as exc:
            self.http_error = f"cannot listen on {listen}: {exc}"
            log.error("aspen-secrets HTTP API not started: %s", self.http_error)
            return
        self.http, self.http_address = server, server.address
        address_file = Path(self.node.data_dir) / HTTP_ADDRESS_FILE
        address_file.write_text(self.http_address + "\n")
        self.node.spawn(self._publish_address, name="secrets-publish-address")
        log.info("aspen-secrets Vault-compatible API on http://%s/v1/", self.http_address)

    async def _publish_address(self) -> None:
        """Record this node's HTTP address in the cluster (for ``sys/leader``), retrying
        until there is a leader to take it."""
        value = json.dumps({"http_address": self.http_address}).encode()
        params = {"key": node_address_key(self.node.id), "value": value}
        while True:
            try:
                await self.dispatcher.call_leader("kv.put", params)
                return
            except AspenError as exc:
                log.debug("aspen-secrets: HTTP address not published yet: %s", exc)
            await anyio.sleep(limits.SECRETS_STARTUP_RETRY_SECONDS)

    async def http_address_of(self, node_id: str) -> str:
        """The HTTP address node ``node_id`` published (``""`` if none), read locally."""
        params = {"key": node_address_key(node_id), "serializable": True}
        kvs = (await self.node.call("kv.range", params))["kvs"]
        try:
            return str(json.loads(kvs[0]["value"])["http_address"]) if kvs else ""
        except (ValueError, KeyError, TypeError):
            return ""

    async def _open(self) -> None:
        """Open the keyring (retrying while there is no leader), then mounts and bootstrap."""
        while True:
            try:
                keyring = await self.keyring.open()
                await self.router.table.ensure_defaults()
                break
            except SealedError as exc:
                self._seal(exc.message)
                return
            except NotLeaderError:
                pass  # the keyring or the default mounts are made by the leader
            except AspenError as exc:
                log.debug("aspen-secrets: keyring not open yet: %s", exc)
            await anyio.sleep(limits.SECRETS_STARTUP_RETRY_SECONDS)
        self._keyring_open = True
        log.info(
            "aspen-secrets keyring open (term %d, root key from %s)",
            keyring.term,
            self.root.source if self.root else "?",
        )
        if self._secrets:
            self.reason = "importing the secrets file"
            await self._bootstrap()
        self.state, self.reason = "ready", ""
        await self._resume_purges()

    async def _resume_purges(self) -> None:
        """Finish unmount purges a previous leader left pending (only the leader commits;
        a follower leaves them to it)."""
        try:
            deleted = await self.router.table.resume_purges()
        except NotLeaderError:
            return
        except AspenError as exc:
            log.warning("aspen-secrets: finishing pending unmount purges failed: %s", exc)
            return
        if deleted:
            log.info("aspen-secrets: deleted %d entries of unmounted engines", deleted)

    async def _bootstrap(self) -> None:
        for _ in range(limits.SECRETS_MAX_WRITE_ATTEMPTS):
            try:
                self.bootstrap_report = await bootstrap.import_secrets(
                    self.dispatcher, self._secrets
                )
                return
            except (UnavailableError, NotLeaderError) as exc:
                self.bootstrap_report = {"error": exc.message}
                await anyio.sleep(limits.SECRETS_STARTUP_RETRY_SECONDS)
            except AspenError as exc:
                self.bootstrap_report = {"error": exc.message}
                log.error("aspen-secrets: importing the secrets file failed: %s", exc.message)
                return

    def _seal(self, reason: str) -> None:
        self.state, self.reason = "sealed", reason
        log.error("aspen-secrets is sealed: %s", reason)

    async def stop(self) -> None:
        """Stop HTTP and close the connections kept to the leader."""
        if self.http is not None:
            self.http.stop()
        await self.dispatcher.close()

    # ------------------------------------------------------------------ state
    def require_open(self) -> None:
        """Raise :class:`SealedError` (503) unless the keyring is open (for the plugin's
        own requests, served before it reports ready)."""
        if not self._keyring_open:
            self.require_ready()

    def require_ready(self) -> None:
        """Raise :class:`SealedError` (503) unless the keyring is open."""
        if self.state == "sealed":
            raise SealedError(f"Vault is sealed: {self.reason}")
        if self.state != "ready":
            raise SealedError(f"aspen-secrets is starting: {self.reason}")

    async def is_leader(self) -> bool:
        """Whether this node is the cluster's leader right now."""
        return bool(self.node.is_leader)

    def seal_status(self) -> dict[str, Any]:
        """Vault's ``sys/seal-status`` body."""
        return {
            "type": "aspen",
            "initialized": True,
            "sealed": self.state != "ready",
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VERSION,
            "build_date": "",
            "migration": False,
            "recovery_seal": False,
            "storage_type": "aspen",
            "cluster_name": self._cluster_name(),
            "cluster_id": self.node.cluster_id,
        }

    async def health(self) -> dict[str, Any]:
        """Vault's ``sys/health`` body (the HTTP layer picks the status code)."""
        return {
            "initialized": True,
            "sealed": self.state != "ready",
            "standby": not await self.is_leader(),
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VERSION,
            "cluster_name": self._cluster_name(),
            "cluster_id": self.node.cluster_id,
        }

    async def leader_info(self) -> dict[str, Any]:
        """Vault's ``sys/leader`` body (``leader_address``: the URL of the leader's HTTP API,
        as the leader published it; ``""`` during an election or before it published)."""
        leader = self.node.leader_id
        address = await self.http_address_of(leader) if leader else ""
        return {
            "ha_enabled": True,
            "is_self": await self.is_leader(),
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": f"http://{address}" if address else "",
            "leader_cluster_address": "",
            "performance_standby": False,
            "performance_standby_last_remote_wal": 0,
        }

    def _cluster_name(self) -> str:
        return f"aspen-{self.node.cluster_id[:12]}"

    def status(self) -> dict[str, Any]:
        """What ``secrets.status`` reports."""
        keyring = self.keyring.current
        return {
            "state": self.state,
            "sealed": self.state != "ready",
            "reason": self.reason,
            "root_key_source": self.root.source if self.root else "",
            "dev_root_key": bool(self.root and self.root.is_dev),
            "keyring_term": keyring.term if keyring is not None else 0,
            "http_address": self.http_address,
            "http_error": self.http_error or (self.http.error if self.http else ""),
            "bootstrap": dict(self.bootstrap_report),
        }

"""One node's forge: repositories, local object stores, the HTTP listener (git smart HTTP
and the web UI on one port)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aspen.client.leader import LeaderCaller
from aspen.errors import AspenError
from aspen.http import HttpLimits, listen_address
from aspen_forge import limits
from aspen_forge.plugin import DEFAULT_HTTP_PORT
from aspen_forge.repos import Repos
from aspen_forge.storage.local import LocalStores

__all__ = ["HTTP_ADDRESS_FILE", "ForgeService"]

log = logging.getLogger(__name__)

#: File in the data directory that holds the bound HTTP address.
HTTP_ADDRESS_FILE = "forge-http-address"


class ForgeService:
    """Everything the plugin holds for one node."""

    def __init__(self, node: Any, config: dict[str, Any]) -> None:
        self.node = node
        self.config = config
        self.writer = LeaderCaller(node, max_clients=limits.MAX_FORWARD_CLIENTS)
        self.repos = Repos(node, self.writer)
        from aspen_forge.collab.service import Collab

        #: Issues, patches and merges (:mod:`aspen_forge.collab`).
        self.collab = Collab(self)
        self.stores = LocalStores(node, Path(node.data_dir) / "forge" / "stores")
        self.http: Any = None
        self.http_address = ""
        self.http_error = ""
        #: The push bound in force (MAX_PUSH_BYTES unless configured lower or higher).
        self.max_push_bytes = int(config.get("max_push_bytes") or limits.MAX_PUSH_BYTES)
        #: An empty bare repository for ``git index-pack`` (``None``: dulwich indexes pushes).
        self.git_dir: Path | None = None

    def start(self) -> None:
        """Serve git over HTTP (a failure to bind is logged and shown in ``forge.status``)."""
        from aspen_forge.web.app import forge_http_app

        self.git_dir = self._git_dir()

        listen = listen_address(self.config.get("http_listen"), DEFAULT_HTTP_PORT)
        if listen is None:
            self.http_error = "disabled (http_listen = off)"
            return
        try:
            self.http = self.node.serve_http(
                forge_http_app(self),
                listen,
                name="forge",
                error_body=lambda status, message: {"error": message},
                limits=HttpLimits(
                    max_body_bytes=self.max_push_bytes + limits.PUSH_BODY_SLACK_BYTES,
                    max_body_name="MAX_PUSH_BYTES",
                ),
            )
        except (OSError, AspenError) as exc:
            self.http_error = f"cannot listen on {listen}: {exc}"
            log.error("aspen-forge git HTTP not started: %s", self.http_error)
            return
        self.http_address = self.http.address
        (Path(self.node.data_dir) / HTTP_ADDRESS_FILE).write_text(self.http_address + "\n")
        log.info(
            "aspen-forge serves git on http://%s/OWNER/NAME.git and its web UI on http://%s/",
            self.http_address,
            self.http_address,
        )

    def _git_dir(self) -> Path | None:
        """Where ``git index-pack`` runs, if git is installed and not turned off."""
        from aspen_forge.storage.indexpack import git_available

        if str(self.config.get("index_pack") or "auto") == "dulwich" or not git_available():
            return None
        path = Path(self.node.data_dir) / "forge" / "git"
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            for sub in ("objects", "refs"):
                (path / sub).mkdir(exist_ok=True)
            (path / "HEAD").write_text("ref: refs/heads/main\n")
            (path / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
        return path

    async def sync_stores(self, repo: Any) -> list[str]:
        """Bring every pack of ``repo`` (and of its alternates) to this node's disk; the
        names of its own store's packs."""
        from aspen_forge.storage.packs import read_pack_names

        own: list[str] = []
        for store_id in reversed(repo.stores):  # alternates first: the fork reads them
            packs = await read_pack_names(self.node, store_id)
            alternates = () if store_id != repo.store else repo.alternates
            await self.stores.sync(store_id, packs, alternates)
            own = packs
        return own

    async def stop(self) -> None:
        """Stop the listener and drop leader connections."""
        if self.http is not None:
            self.http.stop()
        await self.writer.close()

    def status(self) -> dict[str, Any]:
        """What ``forge.status`` answers."""
        return {
            "node_id": self.node.id,
            "http_address": self.http_address,
            "http_error": self.http_error,
            "url": f"http://{self.http_address}/" if self.http_address else "",
            "index_pack": "git" if self.git_dir is not None else "dulwich",
        }

"""The ``federation`` plugin's hooks: configuration, RPC methods, CLI, and the node's
federation service (identity, DHT session, periodic announcement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aspen
from aspen.plugins.types import ConfigOption, ConfigSection
from aspen_federation import limits

PLUGIN = "federation"


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """``[federation]``."""
    return [
        ConfigSection(
            PLUGIN,
            (
                ConfigOption("name", str, "", "The cluster's name in its identity document."),
                ConfigOption("description", str, "", "The cluster's description."),
                ConfigOption(
                    "dht_listen",
                    str,
                    "",
                    "host:port of this node's DHT session (empty: no DHT on this node).",
                    start_flag=True,
                    flag_name="federation_dht_listen",
                ),
                ConfigOption(
                    "dht_routers",
                    str,
                    "",
                    "Bootstrap routers (host:port,…); empty: libtorrent's public ones.",
                ),
                ConfigOption(
                    "dht_private",
                    bool,
                    False,
                    "A private test network: no routers, DoS limits raised for loopback.",
                ),
                ConfigOption(
                    "endpoints", str, "", "Endpoints to announce (host:port,…); empty: this node's."
                ),
                ConfigOption(
                    "republish_seconds", float, limits.REPUBLISH_SECONDS, "How often to re-publish."
                ),
                ConfigOption(
                    "inbox_listen",
                    str,
                    "",
                    "host:port of this node's federation inbox (signed gossip and trust "
                    "requests from other clusters); empty: none.",
                ),
                ConfigOption(
                    "inbox_url",
                    str,
                    "",
                    "The inbox URL to announce (default: http:// + where it listens).",
                ),
                ConfigOption(
                    "root_key_file",
                    Path,
                    None,
                    "A file whose bytes seal the cluster key (else the root token).",
                ),
            ),
        )
    ]


@aspen.hookimpl
def aspen_rpc_handlers() -> list[Any]:
    """``federation.*``."""
    from aspen_federation.rpc import rpc_handlers

    return rpc_handlers()


@aspen.hookimpl
def aspen_cli_commands() -> list[Any]:
    """``aspen federation …``."""
    from aspen_federation.cli import federation_cli

    return [federation_cli]


@aspen.hookimpl
async def aspen_startup(node: Any) -> None:
    """Start this node's DHT session and announcement loop if ``dht_listen`` is set (a
    node without it writes nothing until an RPC needs the identity)."""
    from aspen_federation.service import FederationService

    config = node.config(PLUGIN)
    discovery = None
    if config.get("dht_listen"):
        from aspen_federation.dht import DEFAULT_ROUTERS, DhtDiscovery

        discovery = DhtDiscovery(
            config["dht_listen"],
            routers=config.get("dht_routers") or DEFAULT_ROUTERS,
            private=bool(config.get("dht_private")),
        )
    service = FederationService(node, config, discovery)
    node.plugin_state(PLUGIN)["service"] = service
    if config.get("inbox_listen"):
        _start_inbox(node, service, str(config["inbox_listen"]))
    from aspen_federation.mirror import mirror_loop

    node.spawn(mirror_loop, service, name="federation-mirrors")
    if discovery is not None:
        # without a DHT nothing is announced, and the identity is made on first use
        node.spawn(service.republish_loop, name="federation-announce")
        from aspen_federation.outbox import GossipOutbox

        service.outbox = GossipOutbox(service)
        node.spawn(service.outbox.run, name="federation-gossip")


def _start_inbox(node: Any, service: Any, listen: str) -> None:
    """Serve the federation inbox (:mod:`aspen_federation.inbox`) on ``listen``."""
    from aspen.http import HttpLimits
    from aspen_federation.inbox import Inbox

    server = node.serve_http(
        Inbox(service),
        listen,
        name="federation",
        error_body=lambda status, message: {"error": {"code": str(status), "message": message}},
        limits=HttpLimits(
            max_body_bytes=limits.MAX_INBOX_BODY_BYTES, max_body_name="MAX_INBOX_BODY_BYTES"
        ),
    )
    service.inbox_address = server.address
    node.plugin_state(PLUGIN)["inbox"] = server


@aspen.hookimpl
def aspen_on_blob_event(event: Any, node: Any) -> None:
    """On the leader, a blob pinned under a shared prefix is gossiped (``blob.available``)."""
    if event.name != "blob.pinned" or not node.is_leader:
        return
    service = node.plugin_state(PLUGIN).get("service")
    if service is not None and service.outbox is not None:
        service.outbox.on_blob_pinned(event.pin)


@aspen.hookimpl
async def aspen_shutdown(node: Any) -> None:
    """Close the DHT session."""
    inbox = node.plugin_state(PLUGIN).get("inbox")
    if inbox is not None:
        inbox.stop()
    service = node.plugin_state(PLUGIN).get("service")
    if service is not None and service.discovery is not None:
        service.discovery.close()

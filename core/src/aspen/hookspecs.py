"""The Aspen event bus: every ``aspen_*`` hookspec.

Three kinds of hooks (DESIGN §5):

* **Registration** hooks are called once at start-up and return frozen dataclasses from
  :mod:`aspen.plugins.types` (or click commands). They never run later.
* **Lifecycle** hooks run when a node starts and stops; they may be ``async def``.
* **Notification** hooks are only ever called by the event bus, one subscriber at a time,
  from that subscriber's own bounded mailbox, under a timeout. They may be ``async def``;
  plain functions run in a worker thread so a blocking one cannot stall the node.

Every hook here is documented in ``docs/hooks.md``; a test fails when one is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click

    from aspen.api import NodeAPI
    from aspen.events import BlobEvent, ClusterEvent, KvEvent, RaftEvent
    from aspen.plugins.types import ConfigSection
    from aspen.rpc.handler import RpcHandler

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name and the entry-point group plugins register under.
PROJECT_NAME = "aspen"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Decorate plugin functions with this: ``@aspen.hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ----------------------------------------------------------------------------- registration
@hookspec
def aspen_rpc_handlers() -> Sequence[RpcHandler]:
    """Return the RPC handlers this plugin serves.

    Each handler's ``name`` must be ``<plugin>.<verb>`` where ``<plugin>`` is the plugin's
    entry-point name. Called once when a node starts.
    """


@hookspec
def aspen_cli_commands() -> Sequence[click.Command]:
    """Return click commands to attach to the ``aspen`` CLI.

    Return one ``click.Group`` named after the plugin (``aspen <plugin> …``). A command whose
    name collides with a built-in command is refused with a visible error.
    """


@hookspec
def aspen_config_sections() -> Sequence[ConfigSection]:
    """Declare this plugin's configuration: a section named after the plugin with typed options.

    Values come from ``[<plugin>]`` in the node's config file or ``ASPEN_<PLUGIN>_<OPTION>``
    environment variables and are read with ``node.config(<plugin>)``.
    """


# ----------------------------------------------------------------------------- lifecycle
@hookspec
def aspen_startup(node: NodeAPI) -> None:
    """Called once the node serves requests; may be ``async def``.

    ``node`` is an :class:`aspen.NodeAPI`. Start long-running work with
    ``node.spawn(...)``; do not block.
    """


@hookspec
def aspen_shutdown(node: NodeAPI) -> None:
    """Called when the node stops, before storage closes; may be ``async def``."""


# ----------------------------------------------------------------------------- notification
@hookspec
def aspen_on_kv_event(event: KvEvent, node: NodeAPI) -> None:
    """Called by the event bus for every ``kv.*`` event applied on this node.

    Events: ``kv.put`` / ``kv.delete`` for every key changed (also inside a transaction),
    ``kv.batch`` once per multi-key transaction, ``kv.lease_expired``. Delivery is
    at-most-once with gap detection: compare ``event.revision`` with the last one seen.
    """


@hookspec
def aspen_on_raft_event(event: RaftEvent, node: NodeAPI) -> None:
    """Called by the event bus for ``raft.*`` events (leader changes, snapshots)."""


@hookspec
def aspen_on_cluster_event(event: ClusterEvent, node: NodeAPI) -> None:
    """Called by the event bus for ``cluster.*`` events (membership changes)."""


@hookspec
def aspen_on_blob_event(event: BlobEvent, node: NodeAPI) -> None:
    """Called by the event bus for ``blob.*`` events: ``blob.added`` when a blob is first
    stored in the cluster, ``blob.removed`` when GC removes it (docs/blobs.md)."""

"""aspen-hello: the smallest complete third-party Aspen plugin.

* RPC method ``hello.greet`` (params ``name``) returns ``{"greeting": "Hello, <name>!"}``.
* CLI ``aspen hello greet NAME`` calls it over the wire.
* Every key written outside ``/_aspen/`` is recorded under ``/_aspen/hello/seen/<key>``
  (value: the revision it was written at) by an ``aspen_on_kv_event`` subscriber. That hook
  runs on every node, so only the leader writes (see "Notification hooks run on every
  node" in docs/plugins.md); like any notification hook it may miss an event.
* Config ``[hello] greeting = "Hello"`` (or ``ASPEN_HELLO_GREETING``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

import aspen
from aspen.cli import pass_client
from aspen.errors import NotLeaderError
from aspen.events import KvEvent, KvPut
from aspen.plugins.types import ConfigOption, ConfigSection, RpcHandler
from aspen.rpc.context import RpcContext
from aspen.rpc.params import require_str

__all__ = [
    "SEEN_PREFIX",
    "aspen_cli_commands",
    "aspen_config_sections",
    "aspen_on_kv_event",
    "aspen_rpc_handlers",
]

#: Where the subscriber records the keys it saw (the plugin's reserved prefix).
SEEN_PREFIX = b"/_aspen/hello/seen/"


async def greet(ctx: RpcContext, params: dict[str, Any]) -> dict[str, str]:
    """``hello.greet``: greet ``params["name"]`` with the configured greeting."""
    name = require_str(params, "name", max_len=200)
    greeting = ctx.node.config("hello").get("greeting") or "Hello"
    return {"greeting": f"{greeting}, {name}!"}


@aspen.hookimpl
def aspen_rpc_handlers() -> list[RpcHandler]:
    """Serve ``hello.greet``."""
    return [RpcHandler("hello.greet", greet, doc="Greet someone by name.")]


@aspen.hookimpl
def aspen_config_sections() -> list[ConfigSection]:
    """Declare ``[hello] greeting``."""
    return [ConfigSection("hello", (ConfigOption("greeting", str, "Hello", "How to greet."),))]


@click.group("hello")
def hello_cli() -> None:
    """Greetings from the aspen-hello plugin."""


@hello_cli.command("greet")
@click.argument("name")
@pass_client
def greet_command(client: Any, name: str) -> None:
    """Ask the node to greet NAME."""
    click.echo(client.call("hello.greet", {"name": name})["greeting"])


@aspen.hookimpl
def aspen_cli_commands() -> list[click.Command]:
    """Attach ``aspen hello``."""
    return [hello_cli]


@aspen.hookimpl
async def aspen_on_kv_event(event: KvEvent, node: aspen.NodeAPI) -> None:
    """Record every user key written under ``/_aspen/hello/seen/<key>``, on the leader only.

    Every node runs this hook for every change; a follower's in-process write would raise
    ``NotLeaderError``, and one record per change is enough. If leadership moves between
    the check and the write, the change goes unrecorded: notification hooks are at most
    once anyway.
    """
    if not isinstance(event, KvPut) or event.kv.key.startswith(b"/_aspen/"):
        return
    if not node.is_leader:
        return
    value = str(event.revision).encode()
    with contextlib.suppress(NotLeaderError):
        await node.call("kv.put", {"key": SEEN_PREFIX + event.kv.key, "value": value})

"""``aspen federation …``: identity, DHT discovery, trust and shares."""

from __future__ import annotations

from typing import Any

import click

from aspen.cli import Duration, json_option, pass_cli
from aspen.cli.context import CliContext
from aspen.cli.output import EXIT_NO, emit, fail
from aspen.errors import AspenError
from aspen_federation.limits import PUBLISH_CALL_TIMEOUT_SECONDS
from aspen_federation.trust import KINDS, LEVELS, MODES

__all__ = ["federation_cli"]

#: The journal events ``aspen federation events`` shows.
FEDERATION_EVENTS = "federation.*"


@click.group("federation")
def federation_cli() -> None:
    """Independent clusters that find each other through the Mainline DHT and trust
    selectively."""


@federation_cli.command("status")
@json_option
@pass_cli
def status_cmd(cli: CliContext) -> None:
    """This cluster's key, name, DHT routing-table size and peers."""
    got = cli.client().call("federation.status", {})
    emit(cli, got, _status_lines)


def _status_lines(got: dict[str, Any]) -> list[str]:
    """``status`` as text: the cluster, its endpoints and DHT, then its peers."""
    return [
        f"{got['name']}  key {got['cluster_key']}  (id {got['key_id']})",
        f"endpoints {', '.join(got['endpoints'])}  "
        f"dht port {got['dht_listen']}  dht nodes {got['dht_nodes']}",
        *(f"  {peer['key_id']}  {peer['level']:8}  {peer['name']}" for peer in got["peers"]),
    ]


@federation_cli.command("identity")
@json_option
@pass_cli
def identity_cmd(cli: CliContext) -> None:
    """This cluster's signed identity document (hex), for another cluster's operator."""
    got = cli.client().call("federation.identity", {})
    got["document"] = bytes(got["document"]).hex()
    emit(cli, got, got["document"])


@federation_cli.command("dht-bootstrap")
@click.argument("contact")
@json_option
@pass_cli
def dht_bootstrap_cmd(cli: CliContext, contact: str) -> None:
    """Add a DHT contact HOST:PORT on the node the CLI talks to."""
    host, sep, port = contact.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("give HOST:PORT", param_hint="CONTACT")
    got = cli.client().call(
        "federation.dht_bootstrap", {"host": host.strip("[]"), "port": int(port)}
    )
    emit(cli, got, f"added DHT contact {contact}")


@federation_cli.command("publish")
@json_option
@pass_cli
def publish_cmd(cli: CliContext) -> None:
    """Publish this cluster's announcement now (waits for the DHT's answer)."""
    got = cli.client().call("federation.publish", {}, timeout=PUBLISH_CALL_TIMEOUT_SECONDS)
    emit(cli, got, f"announcement stored on {got['stored']} DHT nodes")


@federation_cli.command("discover")
@click.argument("key")
@json_option
@pass_cli
def discover_cmd(cli: CliContext, key: str) -> None:
    """Find a cluster by KEY alone: its verified announcement, or exit 1."""
    try:
        got = cli.client().call("federation.discover", {"key": key})
    except AspenError as exc:
        fail(f"error: {exc.message}", EXIT_NO)
    emit(cli, got, f"{got['name']} ({got['key_id']}): {', '.join(got['endpoints'])}")


@federation_cli.command("trust")
@click.argument("key")
@click.option("--level", type=click.Choice(LEVELS), required=True)
@json_option
@pass_cli
def trust_cmd(cli: CliContext, key: str, level: str) -> None:
    """Set a remote cluster's trust level (blocked wins over everything)."""
    got = cli.client().call("federation.trust", {"key": key, "level": level})
    emit(cli, got, f"{got['key_id']} is {level}")


@federation_cli.command("requests")
@json_option
@pass_cli
def requests_cmd(cli: CliContext) -> None:
    """Pending trust requests."""
    got = cli.client().call("federation.requests", {})
    emit(
        cli,
        got,
        lambda g: [f"{r['cluster_key']}  {r['name']}  {r['description']}" for r in g["requests"]],
    )


@federation_cli.command("request")
@click.argument("document")
@pass_cli
def request_cmd(cli: CliContext, document: str) -> None:
    """Queue a trust request: a remote cluster's identity document (hex, from its
    ``aspen federation identity``)."""
    cli.client().call("federation.request", {"document": bytes.fromhex(document)})
    click.echo("queued")


@federation_cli.command("accept")
@click.argument("key")
@pass_cli
def accept_cmd(cli: CliContext, key: str) -> None:
    """Accept a pending trust request: the cluster becomes trusted."""
    cli.client().call("federation.accept", {"key": key})
    click.echo("trusted")


@federation_cli.command("reject")
@click.argument("key")
@pass_cli
def reject_cmd(cli: CliContext, key: str) -> None:
    """Reject a pending trust request."""
    cli.client().call("federation.reject", {"key": key})
    click.echo("rejected")


@federation_cli.command("share")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--allow", multiple=True, help="A remote cluster key (allow-list mode); repeat.")
@json_option
@pass_cli
def share_cmd(cli: CliContext, kind: str, name: str, mode: str, allow: tuple[str, ...]) -> None:
    """Set a resource's federation mode."""
    got = cli.client().call(
        "federation.share", {"kind": kind, "name": name, "mode": mode, "allow": list(allow)}
    )
    emit(cli, got, f"{kind} {name}: {mode}")


@federation_cli.command("grant")
@click.argument("key")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@json_option
@pass_cli
def grant_cmd(cli: CliContext, key: str, kind: str, name: str) -> None:
    """A read token for remote cluster KEY on one shared resource (refused unless its
    trust level and the resource's mode allow it)."""
    got = cli.client().call("federation.grant", {"key": key, "kind": kind, "name": name})
    emit(cli, got, got["token"])


@federation_cli.command("sync")
@click.argument("key")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--token", "token", required=True, help="The read token the remote cluster granted.")
@click.option("--endpoint", help="The remote's endpoint (default: from its announcement).")
@click.option("--git-url", default="", help="Fetch objects from here (a mirror; verified).")
@json_option
@pass_cli
def sync_cmd(
    cli: CliContext,
    key: str,
    kind: str,
    name: str,
    token: str,
    endpoint: str | None,
    git_url: str,
) -> None:
    """Pull a shared resource from cluster KEY: verified refs and objects, kept under
    refs/remotes/<cluster id>/ in the local forge."""
    params = {
        "key": key,
        "kind": kind,
        "name": name,
        "token": token,
        "endpoint": endpoint,
        "git_url": git_url,
    }
    got = cli.client().call("federation.sync", params)
    emit(cli, got, _synced_line(kind, name, got))


@federation_cli.command("tell")
@click.argument("endpoint")
@click.argument("kind")
@click.argument("subject")
@click.option("--token", required=True, help="The federation:gossip token the peer gave us.")
@json_option
@pass_cli
def tell_cmd(cli: CliContext, endpoint: str, kind: str, subject: str, token: str) -> None:
    """Send a signed gossip message (KIND: repo.created, ref.updated, …) to a trusted peer."""
    params = {"endpoint": endpoint, "kind": kind, "subject": subject, "token": token}
    got = cli.client().call("federation.tell", params)
    emit(cli, got, "accepted" if got.get("accepted") else "duplicate")


@federation_cli.command("request-trust")
@click.argument("key")
@json_option
@pass_cli
def request_trust_cmd(cli: CliContext, key: str) -> None:
    """Send this cluster's signed identity to cluster KEY (found through the DHT) as a
    trust request; its operator sees it in ``aspen federation requests``."""
    try:
        got = cli.client().call("federation.request_trust", {"key": key})
    except AspenError as exc:
        fail(f"error: {exc.message}", EXIT_NO)
    emit(cli, got, f"trust request sent to {got['key_id']} ({got['inbox']})")


@federation_cli.command("events")
@click.option("--from", "start", type=int, default=None, help="A journal position (default: now).")
@click.option("--follow/--no-follow", default=True, help="Keep following (default) or stop.")
@json_option
@pass_cli
def events_cmd(cli: CliContext, start: int | None, follow: bool) -> None:
    """Stream federation events (``federation.*`` in the event journal: admitted gossip)."""
    client = cli.client()
    if follow:
        events: Any = client.events.tail(start, match=FEDERATION_EVENTS)
    else:
        events = client.events.read(start or 0, match=FEDERATION_EVENTS)["events"]
    for event in events:
        emit(cli, event, _event_line)


def _event_line(event: dict[str, Any]) -> str:
    """One journal event as text (a gossip event with its kind and subject)."""
    payload = event.get("payload") or {}
    return (
        f"{event['position']}  {event['name']}  {event['subject']}  "
        f"{payload.get('kind', '')} {payload.get('subject', '')}"
    )


def _synced_line(kind: str, name: str, got: dict[str, Any]) -> str:
    """What ``sync`` prints for each kind."""
    if kind == "pijul":
        return f"appended {got['appended']} changes to channel {got['channel']}"
    if kind == "blob":
        return f"synced {got['blobs']} blobs ({got['fetched']} fetched) under {got['namespace']}"
    if kind == "kv":
        return (
            f"synced {got['keys']} keys (revision {got['revision']}) as generation "
            f"{got['generation']}: aspen federation kv-get KEY {name}"
        )
    return f"synced {len(got['refs'])} refs into {name} under {got['namespace']}"


@federation_cli.command("kv-get")
@click.argument("key")
@click.argument("prefix")
@json_option
@pass_cli
def kv_get_cmd(cli: CliContext, key: str, prefix: str) -> None:
    """The KV prefix PREFIX as last synced from cluster KEY (one complete snapshot)."""
    client = cli.client()
    params: dict[str, Any] = {"key": key, "name": prefix}
    while True:
        got = client.call("federation.kv_read", params)
        for kv in got["kvs"]:
            key_text = bytes(kv["key"]).decode(errors="replace")
            value = bytes(kv["value"]).decode(errors="replace")
            row = {"key": key_text, "value": value, "revision": got["revision"]}
            emit(cli, row, f"{key_text}\t{value}")
        if not got["more"] or not got["kvs"]:
            return
        params["after"] = bytes(got["kvs"][-1]["key"])


@federation_cli.group("mirror")
def mirror_cli() -> None:
    """Periodic mirrors of remote resources (run by the leader; state in the cluster)."""


@mirror_cli.command("add")
@click.argument("key")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--token", required=True, help="The read token the remote cluster granted.")
@click.option("--endpoint", help="The remote's endpoint (default: from its announcement).")
@click.option(
    "--every", type=Duration(), default="60s", show_default=True, help="How often (90s, 5m, 1h)."
)
@json_option
@pass_cli
def mirror_add_cmd(
    cli: CliContext, key: str, kind: str, name: str, token: str, endpoint: str | None, every: float
) -> None:
    """Sync KIND NAME from cluster KEY now and then every --every."""
    params = {
        "key": key,
        "kind": kind,
        "name": name,
        "token": token,
        "endpoint": endpoint,
        "every": every,
    }
    got = cli.client().call("federation.mirror_add", params)
    emit(cli, got, f"mirror {got['id']}: {kind} {name} every {got['every']:g}s")


@mirror_cli.command("list")
@json_option
@pass_cli
def mirror_list_cmd(cli: CliContext) -> None:
    """Every mirror with its last result."""
    got = cli.client().call("federation.mirror_list", {})
    emit(cli, got, lambda g: [_mirror_line(m) for m in g["mirrors"]])


def _mirror_line(m: dict[str, Any]) -> str:
    """One mirror as text: what, how often, how its last run went."""
    last = m["last"]
    state = "never run" if not last else ("ok" if last["ok"] else f"error: {last['error']}")
    return f"{m['id']}  {m['key_id']}  {m['kind']} {m['name']}  every {m['every']:g}s  {state}"


@mirror_cli.command("remove")
@click.argument("mirror_id")
@pass_cli
def mirror_remove_cmd(cli: CliContext, mirror_id: str) -> None:
    """Remove a mirror by its id."""
    cli.client().call("federation.mirror_remove", {"id": mirror_id})
    click.echo("removed")

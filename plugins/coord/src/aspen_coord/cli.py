"""``aspen coord …``: locks, elections, counters, sequences, semaphores, read-write locks,
barriers, rate limiters and the service registry from the shell (``--json`` throughout).

A lock acquired here stays held after the command exits: its lease holds it until the TTL
runs out or ``aspen coord lock release NAME --lease L``.
"""

from __future__ import annotations

from typing import Any

import click

from aspen.cli import json_option, pass_cli, plain, show_result
from aspen.cli.context import CliContext
from aspen.cli.output import echo_json
from aspen.errors import AspenError
from aspen_coord.client import DEFAULT_WAIT_SECONDS, wait_timeout
from aspen_coord.errors import typed

__all__ = ["coord_cli"]


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    try:
        return cli.client().call(f"coord.{method}", params, timeout=wait_timeout(params))
    except AspenError as exc:
        raise typed(exc) from None


def _run(method: str, text_field: str | None = None, **fixed: Any) -> Any:
    """A command body: call ``coord.<method>`` with the command's options and show it."""

    def body(cli: CliContext, **options: Any) -> None:
        params = {k: v for k, v in {**options, **fixed}.items() if v is not None}
        show_result(cli, _call(cli, method, params), text_field)

    return body


def _command(
    group: click.Group,
    verb: str,
    method: str,
    *decorators: Any,
    text: str | None = None,
    **fixed: Any,
) -> None:
    """Add ``verb`` to ``group``: the options ``decorators`` give, then ``coord.<method>``."""
    run = _run(method, text, **fixed)

    def command(cli: CliContext, **options: Any) -> None:
        run(cli, **options)

    command.__doc__ = f"coord.{method}"
    for decorate in reversed((json_option, pass_cli, *decorators)):
        command = decorate(command)
    settings = {"ignore_unknown_options": True} if verb == "add" else {}  # `add c -2`
    group.command(verb, context_settings=settings)(command)


@click.group("coord")
def coord_cli() -> None:
    """Fenced coordination primitives: locks, elections, counters, semaphores, barriers…"""


NAME = click.argument("name")
LEASE = click.option("--lease", type=int, required=True, help="The lease that holds it.")
TTL = click.option("--ttl", type=int, default=60, show_default=True, help="Lease TTL (s).")
OWN_LEASE = click.option("--lease", type=int, default=None, help="Attach to this lease.")
WAIT = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_WAIT_SECONDS,
    show_default=True,
    help="Wait up to (s) in the FIFO queue; 0 = try once (the same as `try`).",
)
REVOKE = click.option(
    "--keep-lease", "revoke", flag_value=False, default=True, help="Do not revoke the lease."
)


def _queue_group(kind: str, help_text: str, *extra: Any) -> click.Group:
    group = click.Group(kind, help=help_text)
    _command(group, "acquire", f"{kind}.acquire", NAME, TTL, OWN_LEASE, WAIT, *extra)
    _command(group, "try", f"{kind}.acquire", NAME, TTL, OWN_LEASE, *extra, timeout=0)
    _command(group, "release", f"{kind}.release", NAME, LEASE, REVOKE)
    _command(group, "renew", f"{kind}.renew", NAME, LEASE)
    _command(group, "status", f"{kind}.status", NAME)
    coord_cli.add_command(group)
    return group


lock = _queue_group("lock", "Exclusive locks with fencing tokens.")


@lock.command("write")
@NAME
@LEASE
@click.option("--fence", type=int, required=True, help="The fencing token acquire gave.")
@click.option("--put", "puts", nargs=2, multiple=True, metavar="KEY VALUE", help="Put KEY.")
@click.option("--delete", "deletes", multiple=True, metavar="KEY", help="Delete KEY.")
@json_option
@pass_cli
def lock_write(
    cli: CliContext,
    name: str,
    lease: int,
    fence: int,
    puts: tuple[tuple[str, str], ...],
    deletes: tuple[str, ...],
) -> None:
    """Write only while the lock is held at FENCE (refused once a newer holder took it)."""
    ops: list[dict[str, Any]] = [{"put": {"key": k, "value": v}} for k, v in puts]
    ops += [{"delete": {"key": k}} for k in deletes]
    params = {"name": name, "lease": lease, "fence": fence, "ops": ops}
    show_result(cli, _call(cli, "lock.write", params))


_queue_group(
    "semaphore",
    "Semaphores of N permits.",
    click.option("--permits", type=int, required=True, help="How many may hold it at once."),
)
_queue_group(
    "rwlock",
    "Read-write locks.",
    click.option("--mode", type=click.Choice(["read", "write"]), default="write"),
)

election = click.Group("election", help="Leader election (etcd concurrency style).")
VALUE = click.argument("value")
_command(election, "campaign", "election.campaign", NAME, VALUE, TTL, OWN_LEASE, WAIT)
_command(
    election,
    "proclaim",
    "election.proclaim",
    NAME,
    VALUE,
    LEASE,
    click.option("--fence", type=int, required=True),
)
_command(election, "resign", "election.resign", NAME, LEASE, REVOKE)
_command(election, "leader", "election.leader", NAME)
coord_cli.add_command(election)


@election.command("observe")
@NAME
@json_option
@pass_cli
def observe(cli: CliContext, name: str) -> None:
    """Print the leader now and at every change (JSON lines with --json)."""
    for item in cli.client().stream("coord.election.observe", {"name": name}):
        leader = plain(item["leader"])
        if cli.json:
            echo_json({"leader": leader, "revision": item["revision"]}, lines=True)
        else:
            click.echo("-" if leader is None else f"{leader['value']} fence={leader['fence']}")


counter = click.Group("counter", help="Counters (64-bit, compare-and-swap).")
BY = click.argument("by", type=int, default=1)
_command(counter, "add", "counter.add", NAME, BY, text="value")
_command(counter, "get", "counter.get", NAME, text="value")
_command(
    counter,
    "cas",
    "counter.cas",
    NAME,
    click.argument("expected", type=int),
    click.argument("new", type=int),
)
coord_cli.add_command(counter)

sequence = click.Group("sequence", help="Sequences: numbers never handed out twice.")
_command(sequence, "next", "sequence.next", NAME, text="value")
_command(sequence, "reserve", "sequence.reserve", NAME, click.argument("count", type=int))
coord_cli.add_command(sequence)

barrier = click.Group("barrier", help="Barriers: wait until N have arrived.")
_command(
    barrier,
    "wait",
    "barrier.wait",
    NAME,
    click.option("--count", type=int, required=True),
    click.option("--id", "id", default=None, help="This participant's name."),
    click.option("--timeout", type=float, default=60.0, show_default=True),
)
_command(barrier, "status", "barrier.status", NAME)
_command(barrier, "reset", "barrier.reset", NAME)
coord_cli.add_command(barrier)

ratelimit = click.Group("ratelimit", help="Token-bucket rate limiters.")
_command(
    ratelimit,
    "take",
    "ratelimit.take",
    NAME,
    click.option("--rate", type=float, required=True, help="Tokens per second."),
    click.option("--burst", type=int, default=None, help="Bucket size."),
    click.option("-n", "n", type=int, default=1, show_default=True),
)
_command(ratelimit, "get", "ratelimit.get", NAME)
coord_cli.add_command(ratelimit)

service = click.Group("service", help="Service registry: instances with TTL and tags.")
INSTANCE = click.argument("instance")
_command(
    service,
    "register",
    "service.register",
    NAME,
    INSTANCE,
    click.argument("address"),
    click.option("--tag", "tags", multiple=True),
    TTL,
    OWN_LEASE,
)
_command(service, "renew", "service.renew", NAME, INSTANCE, LEASE)
_command(service, "deregister", "service.deregister", NAME, INSTANCE)
_command(service, "discover", "service.discover", NAME, click.option("--tag", default=None))
coord_cli.add_command(service)


@service.command("watch")
@NAME
@json_option
@pass_cli
def service_watch(cli: CliContext, name: str) -> None:
    """Print the instances, then every registration and departure (JSON lines)."""
    for item in cli.client().stream("coord.service.watch", {"name": name}):
        echo_json(plain(item), lines=True)

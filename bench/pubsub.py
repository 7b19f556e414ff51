"""aspen-pubsub vs NATS JetStream, side by side in one run on this machine.

    apt-get install -y nats-server                          # Debian's nats-server (-js)
    uv pip install --python .venv/bin/python nats-py       # the NATS client (not a dependency)
    .venv/bin/python bench/pubsub.py --nodes 1 3 --duration 3

Same client shapes on both sides, one asyncio process as the load generator, 100-byte
payloads, one partition / one stream:

* awaited publish: one publisher, each publish awaited (its ack: durable on a quorum);
* windowed publish: 64 publishes in flight (64 tasks on one connection, each awaited);
  the Aspen client sends the calls that meet in one loop turn as one batch request
  (``PubSubClient.coalesce``; ``--no-coalesce``: one request per call);
* windowed publish with ids: the same, each message with a unique de-duplication id
  (Aspen ``id=``; JetStream the ``Nats-Msg-Id`` header);
* fetch+ack: a pull consumer takes a backlog (``--backlog``, published beforehand) in
  batches of 100 and acks them (Aspen: one ``fetch`` and
  one ``ack`` call per batch, each awaited; JetStream: ``fetch(100)`` and an ``ack()`` per
  message, which is sent without waiting for a reply); Aspen also with each batch's acks
  carried by the next ``fetch`` (one Raft entry per batch);
* end to end: a publisher at a modest rate and a subscriber on the same host clock,
  publish call → delivery p50/p99;
* end to end by fetch: a pull consumer waiting in ``fetch`` (Aspen: ``wait``; JetStream:
  ``fetch(1)`` with a timeout) when one message is published: publish call → fetch
  returned p50/p99 (the fetch acks the one before it; a fetch the publish failed to wake
  returns when its 5 s wait ends, which shows as a p99 of ~5000 ms).

Aspen's windowed publish and fetch+ack phases also report ``node_cpu_us_per_msg``: every
node's CPU (user + system, from /proc) per message, which the load of a shared machine
changes far less than messages per second; and ``client_cpu_us_per_msg``, this load
generator's own.

Profiling and A/B: ``--aspen-only --phases windowed`` runs that phase alone (run another
checkout's ``.venv/bin/python`` on this script for its side), ``--py-spy OUT`` records the
first node's GIL holder during awaited and windowed publish, ``--no-coalesce`` makes the
Aspen client send one request per publish call.

What each side makes durable: Aspen answers a publish once its Raft entry is fsynced on a
quorum (group commit: many publishes share an entry and an fsync); JetStream (2.9, the
Debian build) writes each message to its file store and replicates it to a quorum before
the PubAck but does not fsync per message (the OS flushes; ``sync_interval`` is not
configurable before 2.10).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from http_servers import cpu_seconds  # bench/ is this script's directory

PAYLOAD = b"x" * 100
WINDOW = 64
BATCH = 100


def _quantiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


async def _awaited(publish: Callable[[bytes], Awaitable[Any]], duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    end = time.perf_counter() + duration
    while (start := time.perf_counter()) < end:
        await publish(PAYLOAD)
        latencies.append(time.perf_counter() - start)
    return {"ops_s": round(len(latencies) / duration), **_quantiles(latencies)}


async def _windowed(
    publish: Callable[..., Awaitable[Any]], duration: float, *, numbered: bool = False
) -> dict[str, Any]:
    """WINDOW publishers for ``duration``: ``publish(data)``, or (``numbered``)
    ``publish(data, n)`` with a number unique to the message."""
    done = 0
    end = time.perf_counter() + duration
    numbers = itertools.count()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await (publish(PAYLOAD, next(numbers)) if numbered else publish(PAYLOAD))
            done += 1

    await asyncio.gather(*(worker() for _ in range(WINDOW)))
    return {"ops_s": round(done / duration)}


async def _consume(take: Callable[[], Awaitable[int]], total: int) -> dict[str, Any]:
    """Time to take and ack ``total`` messages published beforehand."""
    done = 0
    start = time.perf_counter()
    while done < total:
        got = await take()
        if not got:
            break
        done += got
    return {"msgs_s": round(done / (time.perf_counter() - start)), "msgs": done}


async def _fill(publish: Callable[[bytes], Awaitable[Any]], total: int) -> None:
    """Publish ``total`` messages, WINDOW at a time."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await publish(PAYLOAD)

    await asyncio.gather(*(worker() for _ in range(WINDOW)))


async def _end_to_end(
    publish: Callable[[bytes], Awaitable[Any]], received: asyncio.Queue, count: int
) -> dict[str, Any]:
    latencies = []
    for _ in range(count):
        await publish(struct.pack("!d", time.perf_counter()) + PAYLOAD[8:])
        data = await asyncio.wait_for(received.get(), 10)
        latencies.append(time.perf_counter() - struct.unpack("!d", data[:8])[0])
    return _quantiles(latencies)


async def _end_to_end_fetch(
    publish: Callable[[bytes], Awaitable[Any]], fetch: Callable[[], Awaitable[Any]], count: int
) -> dict[str, Any]:
    """Publish call → a waiting fetch returned, ``count`` times (one message each)."""
    latencies = []
    for _ in range(count):
        waiting = asyncio.ensure_future(fetch())
        await asyncio.sleep(0.002)  # the fetch is waiting before the publish
        start = time.perf_counter()
        await publish(PAYLOAD)
        await asyncio.wait_for(waiting, 30)
        latencies.append(time.perf_counter() - start)
    return _quantiles(latencies)


# ---------------------------------------------------------------------- Aspen
class _NodeCpu:
    """The nodes' CPU (user + system, from /proc) per message of a phase: a figure the
    load of a shared machine changes little, unlike messages per second."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = 0.0

    def __enter__(self) -> _NodeCpu:
        self.start = sum(map(cpu_seconds, self.pids))
        self.client_start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = sum(map(cpu_seconds, self.pids)) - self.start
        self.client = time.process_time() - self.client_start

    def per_message(self, figures: dict[str, Any], messages: int) -> dict[str, Any]:
        """``figures`` with ``node_cpu_us_per_msg`` (every node's CPU, summed) and
        ``client_cpu_us_per_msg`` (this load generator's) added."""
        per = 1e6 / max(messages, 1)
        return {
            **figures,
            "node_cpu_us_per_msg": round(self.spent * per, 1),
            "client_cpu_us_per_msg": round(self.client * per, 1),
        }


class _Spy:
    """``py-spy record`` of the first node during a phase (``--py-spy OUT``), or nothing."""

    def __init__(self, out: str | None, pid: int, duration: float) -> None:
        self.out, self.pid, self.duration = out, pid, duration
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Spy:
        if self.out:
            spy = str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "-p", str(self.pid), "-o", self.out, "--format", "raw"]
            command += ["-r", "200", "-d", str(int(self.duration)), "--gil", "--nonblocking"]
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.wait(30)


async def aspen_side(
    endpoints: str,
    token: str,
    duration: float,
    e2e: int,
    backlog: int,
    pids: list[int],
    phases: set[str] = frozenset({"all"}),  # type: ignore[assignment]
    spy: str | None = None,
    coalesce: bool = True,
    send_at: int = 0,
) -> dict[str, Any]:
    import aspen

    def wanted(phase: str) -> bool:
        return "all" in phases or phase in phases

    async with aspen.aconnect(endpoints, token=token) as c:
        ps = c.pubsub
        ps.coalesce = coalesce  # concurrent publishes share a request (the client's default)
        if send_at and hasattr(ps, "coalescer"):
            ps.coalescer.send_at = send_at
        await ps.create_topic("bench")
        await ps.create_topic("e2e")

        async def publish(data: bytes) -> Any:
            return await ps.publish("bench", data)

        out: dict[str, Any] = {}
        if wanted("awaited"):
            with _Spy(spy and f"{spy}.awaited", pids[0], duration):
                out["awaited_publish"] = await _awaited(publish, duration)
        if wanted("windowed"):
            with _NodeCpu(pids) as cpu, _Spy(spy and f"{spy}.windowed", pids[0], duration):
                windowed = await _windowed(publish, duration)
            out["windowed_publish"] = cpu.per_message(windowed, int(windowed["ops_s"] * duration))
            await ps.create_topic("ids")

            async def publish_id(data: bytes, n: int) -> Any:
                return await ps.publish("ids", data, id=f"m{n}")

            with _NodeCpu(pids) as cpu:
                windowed = await _windowed(publish_id, duration, numbered=True)
            out["windowed_publish_ids"] = cpu.per_message(
                windowed, int(windowed["ops_s"] * duration)
            )
        if not wanted("consume"):
            return out
        await ps.create_topic("work")
        await _fill(lambda d: ps.publish("work", d), backlog)
        await ps.create_group("work", "a", max_ack_pending=BATCH * 2)
        await ps.create_group("work", "b", max_ack_pending=BATCH * 2)

        async def take() -> int:
            got = await ps.fetch("work", "a", "w", max=BATCH)
            if got:
                await ps.ack("work", "a", "w", got)
            return len(got)

        with _NodeCpu(pids) as cpu:
            consumed = await _consume(take, backlog)
        out["fetch_ack_100"] = cpu.per_message(consumed, consumed["msgs"])
        previous: list[Any] = []

        async def take_and_ack_previous() -> int:
            got = await ps.fetch("work", "b", "w", max=BATCH, ack=previous)
            previous[:] = got
            return len(got)

        with _NodeCpu(pids) as cpu:
            consumed = await _consume(take_and_ack_previous, backlog)
        out["fetch_ack_100_in_next_fetch"] = cpu.per_message(consumed, consumed["msgs"])
        await ps.create_topic("pull")
        await ps.create_group("pull", "g")
        last: list[Any] = []

        async def fetch_one() -> None:
            got = await ps.fetch("pull", "g", "w", max=1, wait=5, ack=last)
            last[:] = got

        out["end_to_end_fetch"] = await _end_to_end_fetch(
            lambda d: ps.publish("pull", d), fetch_one, e2e
        )
        received: asyncio.Queue = asyncio.Queue()
        sub = await ps.subscribe("e2e", start="end")

        async def pump() -> None:
            async for message in sub:
                received.put_nowait(message["data"])

        task = asyncio.ensure_future(pump())
        try:
            out["end_to_end"] = await _end_to_end(lambda d: ps.publish("e2e", d), received, e2e)
        finally:
            task.cancel()
            await sub.aclose()
    return out


def run_aspen(
    nodes: int,
    duration: float,
    e2e: int,
    backlog: int,
    phases: set[str] = frozenset({"all"}),  # type: ignore[assignment]
    spy: str | None = None,
    coalesce: bool = True,
    send_at: int = 0,
) -> dict[str, Any]:
    from aspen.node.devcluster import DevCluster
    from aspen.testing import free_base_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-pubsub-aspen-"))
    cluster = DevCluster(
        tmp / "c", nodes, free_base_port(nodes), env={"ASPEN_LOAD_PLUGINS": "pubsub"}
    )
    try:
        cluster.up()
        endpoints = ",".join(cluster.client_endpoint(i) for i in range(1, nodes + 1))
        pids = [proc.pid for proc in cluster.procs]
        return asyncio.run(
            aspen_side(
                endpoints,
                cluster.token,
                duration,
                e2e,
                backlog,
                pids,
                phases,
                spy,
                coalesce,
                send_at,
            )
        )
    finally:
        cluster.down()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- NATS JetStream
async def nats_side(
    urls: list[str], nodes: int, duration: float, e2e: int, backlog: int
) -> dict[str, Any]:
    import nats

    nc = await nats.connect(urls)
    js = nc.jetstream()
    for _ in range(100):  # the meta leader of a fresh cluster takes a moment
        try:
            await js.add_stream(name="BENCH", subjects=["bench"], num_replicas=nodes)
            await js.add_stream(name="WORK", subjects=["work"], num_replicas=nodes)
            await js.add_stream(name="E2E", subjects=["e2e"], num_replicas=nodes)
            await js.add_stream(name="PULL", subjects=["pull"], num_replicas=nodes)
            await js.add_stream(name="IDS", subjects=["ids"], num_replicas=nodes)
            break
        except Exception:  # not ready yet
            await asyncio.sleep(0.2)

    async def publish(data: bytes) -> Any:
        return await js.publish("bench", data)

    out: dict[str, Any] = {"awaited_publish": await _awaited(publish, duration)}
    out["windowed_publish"] = await _windowed(publish, duration)

    async def publish_id(data: bytes, n: int) -> Any:
        return await js.publish("ids", data, headers={"Nats-Msg-Id": f"m{n}"})

    out["windowed_publish_ids"] = await _windowed(publish_id, duration, numbered=True)
    await _fill(lambda d: js.publish("work", d), backlog)
    psub = await js.pull_subscribe("work", durable="a")

    async def take() -> int:
        try:
            got = await psub.fetch(BATCH, timeout=5)
        except nats.errors.TimeoutError:
            return 0
        for m in got:
            await m.ack()
        return len(got)

    out["fetch_ack_100"] = await _consume(take, backlog)
    pull = await js.pull_subscribe("pull", durable="p")

    async def fetch_one() -> None:
        for m in await pull.fetch(1, timeout=5):
            await m.ack()

    out["end_to_end_fetch"] = await _end_to_end_fetch(
        lambda d: js.publish("pull", d), fetch_one, e2e
    )
    received: asyncio.Queue = asyncio.Queue()

    async def on_message(msg: Any) -> None:
        received.put_nowait(msg.data)

    await js.subscribe("e2e", cb=on_message, deliver_policy="new", manual_ack=False)
    out["end_to_end"] = await _end_to_end(lambda d: js.publish("e2e", d), received, e2e)
    await nc.close()
    return out


def run_nats(nodes: int, duration: float, e2e: int, backlog: int) -> dict[str, Any]:
    from aspen.testing import free_base_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-pubsub-nats-"))
    base = free_base_port(2 * nodes)
    procs = []
    try:
        for i in range(nodes):
            routes = ", ".join(f"nats-route://127.0.0.1:{base + nodes + j}" for j in range(nodes))
            cluster = (
                f"cluster {{ name: js, listen: 127.0.0.1:{base + nodes + i}, routes: [{routes}] }}"
                if nodes > 1
                else ""
            )
            conf = tmp / f"n{i}.conf"
            conf.write_text(
                f"port: {base + i}\nhost: 127.0.0.1\nserver_name: n{i}\n"
                f"jetstream {{ store_dir: {tmp / f'd{i}'} }}\n{cluster}\n"
            )
            log = open(tmp / f"n{i}.log", "wb")  # noqa: SIM115 - the child's
            procs.append(subprocess.Popen(["nats-server", "-c", str(conf)], stdout=log, stderr=log))
        time.sleep(1.0)
        urls = [f"nats://127.0.0.1:{base + i}" for i in range(nodes)]
        return asyncio.run(nats_side(urls, nodes, duration, e2e, backlog))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--e2e", type=int, default=300, help="end-to-end samples")
    parser.add_argument("--backlog", type=int, default=5000, help="messages each consumer takes")
    parser.add_argument(
        "--phases",
        nargs="+",
        default=["all"],
        choices=["all", "awaited", "windowed", "consume"],
        help="Aspen phases to run (consume includes the end-to-end ones)",
    )
    parser.add_argument(
        "--aspen-only", action="store_true", help="skip JetStream (profiling, A/B of Aspen)"
    )
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="py-spy record the first node during awaited and windowed publish (OUT.<phase>)",
    )
    parser.add_argument(
        "--no-coalesce",
        action="store_true",
        help="Aspen client: one request per publish call (no client-side batching)",
    )
    parser.add_argument(
        "--send-at",
        type=int,
        default=0,
        help="Aspen client: batch size sent at once (default PUBSUB_CLIENT_SEND_AT)",
    )
    args = parser.parse_args()
    if args.aspen_only:
        for nodes in args.nodes:
            figures = run_aspen(
                nodes,
                args.duration,
                args.e2e,
                args.backlog,
                set(args.phases),
                args.py_spy,
                not args.no_coalesce,
                args.send_at,
            )
            print(json.dumps({f"{nodes}_node": {"aspen": figures}}, indent=2), flush=True)
        return
    if shutil.which("nats-server") is None:
        sys.exit("nats-server is not installed: apt-get install -y nats-server")
    report: dict[str, Any] = {}
    for nodes in args.nodes:
        aspen_figures = run_aspen(nodes, args.duration, args.e2e, args.backlog)
        nats_figures = run_nats(nodes, args.duration, args.e2e, args.backlog)
        report[f"{nodes}_node"] = {
            "aspen": aspen_figures,
            "jetstream": nats_figures,
            "ratio_aspen_to_jetstream": {
                "awaited_publish": _ratio(
                    aspen_figures["awaited_publish"]["ops_s"],
                    nats_figures["awaited_publish"]["ops_s"],
                ),
                "windowed_publish": _ratio(
                    aspen_figures["windowed_publish"]["ops_s"],
                    nats_figures["windowed_publish"]["ops_s"],
                ),
                "windowed_publish_ids": _ratio(
                    aspen_figures["windowed_publish_ids"]["ops_s"],
                    nats_figures["windowed_publish_ids"]["ops_s"],
                ),
                "fetch_ack_100": _ratio(
                    aspen_figures["fetch_ack_100"]["msgs_s"],
                    nats_figures["fetch_ack_100"]["msgs_s"],
                ),
                "fetch_ack_100_in_next_fetch": _ratio(
                    aspen_figures["fetch_ack_100_in_next_fetch"]["msgs_s"],
                    nats_figures["fetch_ack_100"]["msgs_s"],
                ),
            },
        }
        print(json.dumps({f"{nodes}_node": report[f"{nodes}_node"]}, indent=2), flush=True)


if __name__ == "__main__":
    main()

"""A partitioned-group member as its own process, for the fault test (which kills it with
SIGKILL): join with a static instance id, heartbeat, release what is revoked, read and
commit what it owns, and log each step to a file as one JSON line (flushed at once, so a
killed process leaves every step it took but the one cut short).

    python pubsub_member.py ENDPOINTS TOKEN TOPIC GROUP INSTANCE LOG

Lines: ``{"at", "kind": "own", "partition", "incarnation", "what"}`` (acquire | release),
``{"kind": "read", "partition", "offset", "data"}`` (data as latin-1 text),
``{"at", "kind": "commit", "incarnation"}`` (``at``: when it was sent; logged once the
group accepted it), ``{"kind": "fenced", "incarnation"}``. ``at`` is ``time.monotonic()``,
one clock for every process of the machine. SIGTERM stops it after the current step (it
releases what it holds); SIGKILL stops it dead.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, TextIO

import aspen
from aspen.errors import AspenError


def _log(out: TextIO, **line: Any) -> None:
    out.write(json.dumps(line) + "\n")
    out.flush()


def main(endpoints: str, token: str, topic: str, group: str, instance: str, path: str) -> None:
    """Run the member until SIGTERM."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    owned: dict[int, int] = {}  # partition → next offset to read
    me = ""  # this incarnation: instance@epoch
    with open(path, "a", encoding="utf-8") as out, aspen.connect(endpoints, token=token) as c:
        ps, joined = c.pubsub, None

        def own(partition: int, what: str) -> None:
            now = time.monotonic()
            _log(out, at=now, kind="own", partition=partition, incarnation=me, what=what)

        while not stopping:
            try:
                if joined is None:
                    joined = ps.join(topic, group, "m", instance=instance)
                    answer, me = joined, f"{instance}@{joined['epoch']}"
                else:
                    answer = ps.heartbeat(topic, group, instance, joined["epoch"], list(owned))
                for partition in answer["revoke"]:
                    if partition in owned:
                        own(partition, "release")
                        del owned[partition]
                for a in answer["assigned"]:
                    if a["partition"] not in owned:
                        own(a["partition"], "acquire")
                        owned[a["partition"]] = a["offset"]
                for partition, offset in list(owned.items()):
                    page = ps.read(topic, partition, offset, limit=50)
                    for m in page["messages"]:
                        data = m["data"].decode("latin-1")
                        _log(out, kind="read", partition=partition, offset=m["offset"], data=data)
                    owned[partition] = page["next"]
                if owned:
                    sent = time.monotonic()
                    ps.commit(topic, group, instance, joined["epoch"], owned)
                    _log(out, at=sent, kind="commit", incarnation=me)
            except (AspenError, OSError) as exc:
                if "fenced" in str(exc):
                    _log(out, kind="fenced", incarnation=me)
                    for partition in owned:
                        own(partition, "release")
                    owned.clear()
                    joined = None
                time.sleep(0.05)  # the leader is being elected: try again shortly
        for partition in owned:  # stopped: it holds nothing from here on
            own(partition, "release")


if __name__ == "__main__":
    main(*sys.argv[1:7])

"""A coord client as a real process, for the cluster tests (``python coord_proc.py MODE
NAME OUT [N]`` with ``ASPEN_ENDPOINT`` and ``ASPEN_TOKEN`` set). Each line it appends to
``OUT`` is one thing it did: ``acquired F``, ``wrote F``, ``fenced F``, ``released F``,
``leader F``, ``error …``; ``done`` at the end.

* ``holder``: N times, acquire the lock (TTL 2 s), do three fenced writes of its fence to
  ``/guard/NAME``, release.
* ``victim``: acquire once, then do fenced writes every 0.1 s until one is refused.
* ``candidate``: N times, campaign, proclaim, hold 0.5 s, resign.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import aspen
from aspen.errors import AspenError
from aspen_coord.client import Coord
from aspen_coord.errors import FencedError

TTL = 2


def main() -> None:
    mode, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    with (
        open(out, "a", buffering=1) as log,
        aspen.connect(
            os.environ["ASPEN_ENDPOINT"], token=os.environ["ASPEN_TOKEN"], timeout=5
        ) as client,
    ):
        coord = Coord(client)

        def say(line: str) -> None:
            log.write(line + "\n")

        done = 0
        while done < rounds:
            try:
                if mode == "candidate":
                    lead = coord.campaign(name, str(os.getpid()).encode(), ttl=TTL, timeout=60)
                    say(f"leader {lead.fence}")
                    coord.call(
                        "election.proclaim",
                        {"name": name, "lease": lead.lease, "fence": lead.fence, "value": b"x"},
                    )
                    time.sleep(0.5)
                    lead.release()
                    done += 1
                    continue
                lock = coord.lock(name, ttl=TTL, timeout=60)
                fence = lock.acquire()
                say(f"acquired {fence}")
                writes = 3 if mode == "holder" else 10**9
                try:
                    for _ in range(writes):
                        lock.write([{"put": {"key": f"/guard/{name}", "value": b"%d" % fence}}])
                        say(f"wrote {fence}")
                        time.sleep(0.1)
                except FencedError:
                    say(f"fenced {fence}")
                    if mode == "victim":
                        break
                    continue
                except AspenError:
                    with contextlib.suppress(AspenError):
                        lock.release()  # stops renewing: never hold a lock we gave up on
                    raise
                lock.release()
                say(f"released {fence}")
                done += 1
            except AspenError as exc:
                say(f"error {exc.code} {exc.message[:80]}")
                time.sleep(0.2)
        say("done")


if __name__ == "__main__":
    main()

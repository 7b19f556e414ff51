"""What a fetch response's per-message shape costs: bytes and CPU per message of a
fetch of 100 (100-byte payloads), in-process, no cluster.

    .venv/bin/python bench/pubsub_shape.py

Server side: building the delivered maps from stored records (``delivered``) and encoding
the response frame; client side: decoding it. Compare with the node CPU per message of
``bench/pubsub.py``'s fetch+ack rows (tens of µs, mostly the Raft write cycle).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgpack

from aspen.transport.framing import encode_frame
from aspen_pubsub.model import delivered, pack, unpack

BATCH = 100
ROUNDS = 2000


def _us_per_message(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        work()
    return round((time.perf_counter() - start) / ROUNDS / BATCH * 1e6, 2)


def main() -> None:
    """Print the figures as JSON."""
    blobs = [pack({"d": b"x" * 100, "t": 1_765_000_000_000}) for _ in range(BATCH)]

    def build() -> dict[str, Any]:
        return {
            "messages": [
                delivered("work", 0, 1000 + i, unpack(blob)) for i, blob in enumerate(blobs)
            ]
        }

    response = build()
    body = msgpack.packb(response, use_bin_type=True)
    print(
        json.dumps(
            {
                "bytes_per_message": round(len(body) / BATCH, 1),
                "payload_bytes": 100,
                "server_build_us_per_message": _us_per_message(build),
                "server_encode_us_per_message": _us_per_message(lambda: encode_frame(response)),
                "client_decode_us_per_message": _us_per_message(
                    lambda: msgpack.unpackb(body, raw=False)
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""What ``pijul.append`` costs: rows the node reads per call, on a real node (real LMDB,
real sockets), in the style of core/tests/test_range_cost.py.

An append used to read the channel's whole log to check the dependencies of what it adds,
so a push of one change to a long channel cost O(history). It now looks up each
dependency's ``i/<channel>/<HASH>`` key, so it costs O(appended changes and their
dependencies) and a regression to O(history) fails here on any machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aspen.errors import InvalidArgumentError
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen_pijul import limits
from aspen_pijul.model.sandbox import Sandbox

#: Changes in the channel before the measured append (O(history) would read 2 rows each).
HISTORY = 400
#: Rows one append of one change may read, whatever the history: the change's record,
#: its membership and its dependencies' (a few rows each), the head, with slack.
APPEND_ROWS = 20


def _chain(n: int) -> list[bytes]:
    """``n`` changes, each appending a line to one file (each depends on the last)."""
    s = Sandbox()
    text = ""
    out = []
    for i in range(n):
        text += f"line {i}\n"
        out.append(s.store.get(s.edit("main", "poem.txt", text)).to_bytes())
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeThread, list[str]]]:
    """A node whose repository ``poems`` holds a chain of HISTORY + 2 changes, the first
    HISTORY of them appended to channel ``main``; yields (node, hashes)."""
    config = NodeConfig(
        data_dir=tmp_path_factory.mktemp("append") / "node", listen="127.0.0.1:0", sync=False
    )
    pm = make_plugin_manager(load=["pijul"], disable=())
    changes = _chain(HISTORY + 2)
    with NodeThread(config, pm) as node, node.client() as c:
        hashes: list[str] = []
        for lo in range(0, len(changes), limits.MAX_APPEND_HASHES):
            part = changes[lo : lo + limits.MAX_APPEND_HASHES]
            hashes += c.call("pijul.put_changes", {"repo": "poems", "changes": part})["hashes"]
        for lo in range(0, HISTORY, limits.MAX_APPEND_HASHES):
            part = hashes[lo : min(HISTORY, lo + limits.MAX_APPEND_HASHES)]
            c.call(
                "pijul.append",
                {"repo": "poems", "channel": "main", "expected": lo, "hashes": part},
            )
        yield node, hashes


def _rows(node: NodeThread, call: Any) -> int:
    """Rows the node's reader read while ``call`` ran."""
    reader = node.node.parts.state_machine.reader
    before = reader.rows_read
    call()
    return int(reader.rows_read - before)


def test_appending_to_a_long_channel_reads_a_few_rows(loaded: Any) -> None:
    node, hashes = loaded
    with node.client() as c:
        assert c.call("pijul.log", {"repo": "poems", "channel": "main"})["length"] == HISTORY

        def append(h: str, expected: int) -> None:
            params = {"repo": "poems", "channel": "main", "expected": expected, "hashes": [h]}
            assert c.call("pijul.append", params)["length"] == expected + 1

        rows = _rows(node, lambda: append(hashes[HISTORY], HISTORY))
        assert rows <= APPEND_ROWS
        assert _rows(node, lambda: append(hashes[HISTORY + 1], HISTORY + 1)) <= APPEND_ROWS


def test_append_refuses_a_change_already_in_the_channel(loaded: Any) -> None:
    node, hashes = loaded
    with node.client() as c:
        length = c.call("pijul.log", {"repo": "poems", "channel": "main"})["length"]
        params = {"repo": "poems", "channel": "main", "expected": length, "hashes": [hashes[5]]}
        with pytest.raises(InvalidArgumentError, match="already in 'main'"):
            c.call("pijul.append", params)


def test_a_missing_dependency_is_still_named(loaded: Any) -> None:
    """A fresh channel cannot take the chain's second change without its first."""
    node, hashes = loaded
    with node.client() as c, pytest.raises(Exception, match=f"depends on {hashes[0]}"):
        c.call(
            "pijul.append",
            {"repo": "poems", "channel": "fresh", "expected": 0, "hashes": [hashes[1]]},
        )


def test_a_channel_written_before_the_membership_keys_gets_them(loaded: Any) -> None:
    """A channel whose log was written without ``i/`` keys (by an older node) is indexed
    once at its next append, which then checks dependencies as usual."""
    node, hashes = loaded
    with node.client() as c:
        for i, h in enumerate(hashes[:3]):  # the log and head as an older node wrote them
            c.kv.put(f"/_aspen/pijul/poems/l/old/{i:010d}", h.encode())
        c.kv.put("/_aspen/pijul/poems/h/old", b"3")
        params = {"repo": "poems", "channel": "old", "expected": 3, "hashes": [hashes[3]]}
        assert c.call("pijul.append", params)["length"] == 4
        assert c.kv.get(f"/_aspen/pijul/poems/i/old/{hashes[0]}") is not None
        assert c.call("pijul.log", {"repo": "poems", "channel": "old"})["hashes"] == hashes[:4]

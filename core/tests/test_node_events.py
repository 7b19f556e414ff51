"""A plugin subscribed to the bus sees the node's raft and kv events, in order."""

from __future__ import annotations

import threading

import aspen
from aspen.client.txn import Op
from aspen.node.config import NodeConfig
from aspen.node.runner import NodeThread
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import wait_for


class Recorder:
    """Records every event name it is handed (plain functions run in a bus thread)."""

    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    @aspen.hookimpl
    def aspen_on_raft_event(self, event) -> None:
        with self.lock:
            self.events.append(event)

    @aspen.hookimpl
    def aspen_on_kv_event(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def names(self) -> list[str]:
        with self.lock:
            return [e.name for e in self.events]


def test_plugin_sees_leader_change_snapshot_and_kv_events(tmp_path) -> None:
    recorder = Recorder()
    pm = make_plugin_manager(load=[], plugins={"recorder": recorder})
    config = NodeConfig(data_dir=tmp_path / "n", listen="127.0.0.1:0")
    with NodeThread(config, pm) as node, node.client() as c:
        wait_for(lambda: "raft.leader_changed" in recorder.names(), timeout=10)
        leader_event = next(e for e in recorder.events if e.name == "raft.leader_changed")
        assert leader_event.leader == node.node.id and leader_event.previous is None
        c.kv.txn(
            compare=[],
            success=[Op.put("a", "1"), Op.put("b", "2")],
            failure=[],
        )
        wait_for(lambda: "kv.batch" in recorder.names(), timeout=10)
        kv_events = [e for e in recorder.events if e.name.startswith("kv.")]
        assert [e.name for e in kv_events] == ["kv.put", "kv.put", "kv.batch"]
        assert len({e.revision for e in kv_events}) == 1  # one transaction, one revision
        c.call("cluster.snapshot")
        wait_for(lambda: "raft.snapshot_created" in recorder.names(), timeout=10)

"""``aspen status`` and ``aspen cluster status`` in text mode: a readable summary (no raw
JSON) that shows free disk space and says when writes fail for lack of it."""

from __future__ import annotations

import json

from aspen.cli.status import render_status


def _no_json(text: str) -> None:
    assert not any(c in text for c in "{}[]\"'"), text


def test_status_text_is_a_summary_with_free_disk_space(cli, node) -> None:
    text = cli("status").stdout
    _no_json(text)
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    assert lines["endpoint"] == node.endpoint
    assert lines["role"].startswith("leader, term ")
    assert lines["members"] == "1 voter, 0 learners"
    assert " free of " in lines["disk"] and lines["disk"].endswith(f"in {node.data_dir}/db")
    status = json.loads(cli("--json", "status").stdout)
    assert status["disk"]["free_bytes"] > 0 and status["disk"]["full"] is None
    assert status["disk"]["map_used_bytes"] <= status["disk"]["map_size_bytes"]


def test_status_text_says_when_writes_fail_and_words_unknown_fields(cli, node) -> None:
    status = json.loads(cli("--json", "status").stdout)
    status["disk"].update(free_bytes=0, full="the disk is full (0 B free in /d/db)")
    status["from_a_newer_node"] = {"a": 1, "b": [2, 3]}
    text = render_status(status)
    _no_json(text)
    assert "disk: 0 B free of " in text
    assert "WRITES FAILING: the disk is full (0 B free in /d/db)" in text
    assert "from_a_newer_node: a 1, b 2, 3" in text


def test_cluster_status_text_has_a_disk_column(cli, node) -> None:
    text = cli("cluster", "status").stdout
    _no_json(text)
    header, row = text.splitlines()[1:3]
    assert header.split()[-1] == "disk"
    assert row.endswith(" free")
    view = json.loads(cli("--json", "cluster", "status").stdout)
    assert view["members"][0]["disk"]["free_bytes"] > 0

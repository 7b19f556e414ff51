"""The hooks plugin on a real node (LMDB, TCP, the real runner) through its CLI and RPC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aspen import limits as core_limits
from aspen.client.txn import Op
from aspen.testing import wait_for
from aspen_hooks import limits

pytestmark = pytest.mark.aspen_plugins("hooks")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _append(path: Path, *fields: str) -> str:
    """A shell command appending the named ASPEN_HOOK_* variables to ``path``."""
    joined = " ".join(f'"${f}"' for f in fields)
    return f"printf '%s\\n' {joined} >> {path}"


def test_shell_hook_runs_once_per_matching_put(node, cli, tmp_path) -> None:
    out = tmp_path / "seen"
    added = cli(
        "hooks", "add", "orders", "--on", "kv.put:/orders/*",
        "--shell", _append(out, "ASPEN_HOOK_KEY"),
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with node.client() as c:
        for i in range(20):
            c.kv.put(f"/orders/{i}".encode(), b"x")
        c.kv.put(b"/other/1", b"x")
        c.kv.delete(b"/orders/0")
    wait_for(lambda: len(_lines(out)) >= 20, timeout=20)
    assert sorted(_lines(out)) == sorted(f"/orders/{i}" for i in range(20))

    listed = cli("hooks", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert {k: entry[k] for k in ("name", "on", "kind", "enabled")} == {
        "name": "orders",
        "on": "kv.put:/orders/*",
        "kind": "shell",
        "enabled": True,
    }

    def caught_up() -> dict:
        m = json.loads(cli("hooks", "metrics", "orders", "--json").stdout)
        return m if m["succeeded"] == 20 and m["lag"] == 0 else {}

    metrics = wait_for(caught_up, timeout=10)
    assert metrics["failed"] == 0 and metrics["dead_lettered"] == 0
    assert metrics["p50_seconds"] is not None and metrics["p99_seconds"] >= metrics["p50_seconds"]
    assert _lines(out).count("/orders/3") == 1


def test_event_payload_reaches_the_shell(node, cli, tmp_path) -> None:
    out = tmp_path / "event.json"
    cmd = f'printf "%s" "$ASPEN_HOOK_EVENT" > {out}'
    assert cli("hooks", "add", "cfg", "--on", "kv.put:/cfg", "--shell", cmd).exit_code == 0
    with node.client() as c:
        c.kv.put(b"/cfg", b"v1")
        c.kv.put(b"/cfg", b"v2")
    wait_for(lambda: out.exists() and json.loads(out.read_text())["value"] == "v2", timeout=10)
    event = json.loads(out.read_text())
    assert event["name"] == "kv.put" and event["key"] == "/cfg" and event["version"] == 2
    assert event["prev_revision"] == event["create_revision"] < event["revision"]


def test_non_utf8_key_reaches_the_shell_percent_encoded(node, cli, tmp_path) -> None:
    """issue 9: a non-UTF-8 key gave an empty ``ASPEN_HOOK_KEY`` (``rm "/dir/$KEY"``)."""
    out = tmp_path / "keys"
    cmd = _append(out, "ASPEN_HOOK_KEY", "ASPEN_HOOK_KEY_HEX")
    assert cli("hooks", "add", "raw", "--on", "kv.*:/raw/*", "--shell", cmd).exit_code == 0
    key = b"/raw/\xff\xfe 100%"
    with node.client() as c:
        c.kv.put(key, b"x")
        c.kv.delete(key)
    wait_for(lambda: len(_lines(out)) >= 4, timeout=10)
    assert _lines(out) == ["/raw/%FF%FE 100%25", key.hex()] * 2


def test_failing_handler_retries_then_dead_letters_and_redrives(node, cli, tmp_path) -> None:
    flag = tmp_path / "fixed"
    cmd = f"test -e {flag}"
    added = cli("hooks", "add", "flaky", "--on", "kv.put:/jobs/*", "--shell", cmd, "--retries", "1")
    assert added.exit_code == 0, added.output
    with node.client() as c:
        c.kv.put(b"/jobs/1", b"x")

    def dead() -> list:
        return json.loads(cli("hooks", "dlq", "flaky", "--json").stdout)

    (entry,) = wait_for(dead, timeout=15)
    assert entry["event"]["key"] == "/jobs/1" and entry["attempts"] == 2
    assert "exit status 1" in entry["error"]

    def counted() -> tuple:
        m = json.loads(cli("hooks", "metrics", "flaky", "--json").stdout)
        return (m["failed"], m["retries"], m["dead_lettered"])

    wait_for(lambda: counted() == (2, 1, 1), timeout=10)

    flag.touch()
    redriven = cli("hooks", "redrive", "flaky", "--json")
    assert redriven.exit_code == 0, redriven.output
    assert [r["ok"] for r in json.loads(redriven.stdout)["results"]] == [True]
    assert dead() == []


def test_trigger_dispatches_to_matching_handlers_and_reports(node, cli, tmp_path) -> None:
    out = tmp_path / "deploys"
    cmd = _append(out, "ASPEN_HOOK_EVENT_NAME", "ASPEN_HOOK_IDEMPOTENCY_KEY")
    assert cli("hooks", "add", "deploy", "--on", "deploy.*", "--shell", cmd).exit_code == 0
    assert (
        cli("hooks", "add", "broken", "--on", "deploy.requested", "--shell", "exit 3").exit_code
        == 0
    )
    assert cli("hooks", "add", "other", "--on", "kv.put", "--shell", "true").exit_code == 0
    result = cli(
        "hooks", "trigger", "deploy.requested", "--payload", '{"version": "1.2"}', "--json"
    )
    assert result.exit_code == 0, result.output
    by_name = {r["handler"]: r for r in json.loads(result.stdout)["results"]}
    assert set(by_name) == {"deploy", "broken"}
    assert by_name["deploy"]["ok"] and not by_name["broken"]["ok"]
    assert by_name["broken"]["exit_code"] == 3
    name, key = _lines(out)
    assert name == "deploy.requested" and key == by_name["deploy"]["idempotency_key"]
    text = cli("hooks", "trigger", "deploy.requested")
    assert text.exit_code == 1 and "broken: failed" in text.stdout


def test_disable_keeps_the_cursor_and_enable_resumes(node, cli, tmp_path) -> None:
    out = tmp_path / "seen"
    cmd = _append(out, "ASPEN_HOOK_KEY")
    assert cli("hooks", "add", "h", "--on", "kv.put:/d/*", "--shell", cmd).exit_code == 0
    with node.client() as c:
        c.kv.put(b"/d/1", b"x")
        wait_for(lambda: _lines(out) == ["/d/1"], timeout=10)
        assert cli("hooks", "disable", "h").exit_code == 0
        c.kv.put(b"/d/2", b"x")
        assert cli("hooks", "enable", "h").exit_code == 0
        wait_for(lambda: _lines(out) == ["/d/1", "/d/2"], timeout=10)
    assert cli("hooks", "remove", "h").exit_code == 0
    assert json.loads(cli("hooks", "list", "--json").stdout) == []


def test_a_run_in_progress_when_its_handler_is_disabled_finishes_and_is_not_run_again(
    node, cli, tmp_path
) -> None:
    """Disabling a handler while its command runs used to kill the run after its work was
    done and before its cursor moved, so enabling ran the event a second time."""
    out = tmp_path / "seen"
    cmd = _append(out, "ASPEN_HOOK_KEY") + "; sleep 3"
    assert cli("hooks", "add", "slow", "--on", "kv.put:/s/*", "--shell", cmd).exit_code == 0
    with node.client() as c:
        c.kv.put(b"/s/1", b"x")
        wait_for(lambda: _lines(out) == ["/s/1"], timeout=10)  # its run now sleeps
        assert cli("hooks", "disable", "slow").exit_code == 0
        c.kv.put(b"/s/2", b"x")
        assert cli("hooks", "enable", "slow").exit_code == 0
        wait_for(lambda: len(_lines(out)) >= 2, timeout=30)

    def caught_up() -> dict:
        m = json.loads(cli("hooks", "metrics", "slow", "--json").stdout)
        return m if m["lag"] == 0 and m["succeeded"] >= 2 else {}

    metrics = wait_for(caught_up, timeout=30)
    assert _lines(out) == ["/s/1", "/s/2"] and metrics["succeeded"] == 2
    assert cli("hooks", "remove", "slow").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on", "kv.put:/x/*", "--python", "nope.module:fn"], "nope"),
        (["--on", "kv.update:/x", "--shell", "true"], "pattern"),
        (["--on", "kv.put:/x", "--shell", "x" * (limits.HOOKS_MAX_COMMAND_CHARS + 1)], "limit"),
        (["--on", "kv.put", "--forward", "127.0.0.1:1", "--forward-token", "t"], "unreachable"),
        (["--on", "kv.put"], "exactly one"),
    ],
)
def test_bad_handler_configs_are_refused(node, cli, args, message) -> None:
    result = cli("hooks", "add", "bad", *args)
    assert result.exit_code != 0
    assert message in result.output.lower()
    assert json.loads(cli("hooks", "list", "--json").stdout) == []


def test_unknown_kind_and_duplicate_names_are_refused(node, cli) -> None:
    with node.client() as c, pytest.raises(Exception, match="unknown handler kind"):
        c.call("hooks.add", {"name": "x", "on": "kv.put", "kind": "lambda", "target": {}})
    assert cli("hooks", "add", "x", "--on", "kv.put", "--shell", "true").exit_code == 0
    again = cli("hooks", "add", "x", "--on", "kv.put", "--shell", "true")
    assert again.exit_code != 0 and "exists" in again.output


def test_reset_and_replace_start_from_now(node, cli, tmp_path) -> None:
    out = tmp_path / "seen"
    cmd = _append(out, "ASPEN_HOOK_KEY")
    assert cli("hooks", "add", "r", "--on", "kv.put:/r/*", "--shell", cmd).exit_code == 0
    with node.client() as c:
        c.kv.put(b"/r/1", b"x")
        wait_for(lambda: _lines(out) == ["/r/1"], timeout=10)
        assert cli("hooks", "disable", "r").exit_code == 0
        c.kv.put(b"/r/skipped", b"x")
        reset = cli("hooks", "reset", "r", "--json")
        assert reset.exit_code == 0, reset.output
        assert cli("hooks", "enable", "r").exit_code == 0
        c.kv.put(b"/r/2", b"x")
        wait_for(lambda: _lines(out) == ["/r/1", "/r/2"], timeout=10)
        replaced = cli("hooks", "add", "r", "--on", "kv.put:/r/*", "--shell", cmd, "--replace")
        assert replaced.exit_code == 0, replaced.output
        c.kv.put(b"/r/3", b"x")
        wait_for(lambda: _lines(out) == ["/r/1", "/r/2", "/r/3"], timeout=10)
    metrics = json.loads(cli("hooks", "metrics", "r", "--json").stdout)
    assert metrics["lagged"] == ""


def test_compaction_past_a_cursor_marks_only_that_handler_lagged(node, cli, tmp_path) -> None:
    late, ok = tmp_path / "late", tmp_path / "ok"
    assert (
        cli(
            "hooks",
            "add",
            "late",
            "--on",
            "kv.put:/c/*",
            "--shell",
            _append(late, "ASPEN_HOOK_KEY"),
        ).exit_code
        == 0
    )
    assert (
        cli(
            "hooks", "add", "ok", "--on", "kv.put:/ok/*", "--shell", _append(ok, "ASPEN_HOOK_KEY")
        ).exit_code
        == 0
    )
    with node.client() as c:
        assert cli("hooks", "disable", "late").exit_code == 0
        c.kv.put(b"/c/lost", b"x")
        revision = c.kv.put(b"/ok/1", b"x").revision
        c.call("kv.compact", {"revision": revision})
        assert cli("hooks", "enable", "late").exit_code == 0

        def lagged() -> str:
            return json.loads(cli("hooks", "metrics", "late", "--json").stdout)["lagged"]

        assert "compacted" in wait_for(lagged, timeout=10)
        c.kv.put(b"/ok/2", b"x")
        wait_for(lambda: _lines(ok) == ["/ok/1", "/ok/2"], timeout=10)
        assert _lines(late) == []
        assert cli("hooks", "reset", "late").exit_code == 0
        c.kv.put(b"/c/after", b"x")
        wait_for(lambda: _lines(late) == ["/c/after"], timeout=10)
    assert lagged() == ""


def test_lag_is_zero_once_caught_up_and_counts_pending_events(node, cli, tmp_path) -> None:
    gate = tmp_path / "open"
    cmd = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    assert cli("hooks", "add", "slow", "--on", "kv.put:/q/*", "--shell", cmd).exit_code == 0
    with node.client() as c:
        for i in range(5):
            c.kv.put(f"/q/{i}".encode(), b"x")

        def metrics() -> dict:
            return json.loads(cli("hooks", "metrics", "slow", "--json").stdout)

        busy = wait_for(lambda: metrics() if metrics()["in_flight"] == 1 else None, timeout=10)
        assert busy["lag"] >= 4
        gate.touch()
        done = wait_for(lambda: metrics() if metrics()["succeeded"] == 5 else None, timeout=10)
        assert wait_for(lambda: metrics()["lag"] == 0, timeout=5)
        assert done["failed"] == 0


def test_forward_handler_runs_the_other_clusters_handlers(node, cli, tmp_path) -> None:
    from aspen.node.config import NodeConfig
    from aspen.node.runner import NodeThread
    from aspen.plugins.manager import make_plugin_manager

    out = tmp_path / "other"
    config = NodeConfig(data_dir=tmp_path / "other-node", listen="127.0.0.1:0", sync=False)
    with NodeThread(config, make_plugin_manager(load=["hooks"])) as other:
        record = _append(out, "ASPEN_HOOK_KEY", "ASPEN_HOOK_IDEMPOTENCY_KEY")
        with other.client() as oc:
            oc.call(
                "hooks.add",
                {"name": "recv", "on": "kv.put:/f/*", "kind": "shell",
                 "target": {"command": record}},
            )  # fmt: skip
        added = cli(
            "hooks", "add", "fwd", "--on", "kv.put:/f/*",
            "--forward", other.endpoint, "--forward-token", other.token,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        listed = json.loads(cli("hooks", "list", "--json").stdout)
        assert other.token not in json.dumps(listed)  # the token is not shown
        with node.client() as c:
            c.kv.put(b"/f/1", b"x")
        key, idem = wait_for(lambda: _lines(out), timeout=15)
        assert key == "/f/1" and idem.endswith(":recv") and ":fwd" in idem
        bad = cli(
            "hooks", "add", "fwd2", "--on", "kv.put", "--forward", other.endpoint,
            "--forward-token", "aspen1.wrong.token",
        )  # fmt: skip
        assert bad.exit_code != 0


def test_cursor_stays_inside_a_revision_split_across_watch_messages(
    node, cli, tmp_path, monkeypatch
) -> None:
    """One event per message (a tiny MAX_WATCH_MESSAGE_BYTES): while the handler works on
    a transaction's fourth event, its cursor has not passed that transaction's revision."""
    monkeypatch.setattr(core_limits, "MAX_WATCH_MESSAGE_BYTES", 1)
    gate = tmp_path / "open"
    cmd = f'[ "$ASPEN_HOOK_KEY" != /t/3 ] || while [ ! -e {gate} ]; do sleep 0.05; done'
    assert cli("hooks", "add", "split", "--on", "kv.put:/t/*", "--shell", cmd).exit_code == 0
    with node.client() as c:
        c.kv.txn(success=[Op.put(f"/t/{i}", "x") for i in range(5)])

    def metrics() -> dict:
        return json.loads(cli("hooks", "metrics", "split", "--json").stdout)

    busy = wait_for(lambda: (m := metrics())["succeeded"] == 3 and m["in_flight"] == 1 and m)
    assert busy["lag"] >= 1
    gate.touch()
    wait_for(lambda: (m := metrics())["succeeded"] == 5 and m["lag"] == 0)


def test_list_and_dlq_answer_pages_after_a_name(node, cli, monkeypatch) -> None:
    """Issue 18: listings answer one page (``limit``, ``after``, ``more``), never the
    whole prefix; the CLI follows the pages. The dead-letter list keeps its cap."""
    monkeypatch.setattr(limits, "HOOKS_MAX_DLQ_ENTRIES", 3)  # the node runs in this process
    for name in ("e", "a", "d", "c", "b"):
        added = cli("hooks", "add", name, "--on", f"kv.put:/pg/{name}/*", "--shell", "exit 1")
        assert added.exit_code == 0, added.output
    assert cli("hooks", "add", "z", "--on", "kv.put:/dl/*", "--shell", "exit 1", "--retries", "0")
    with node.client() as c:
        first = c.call("hooks.list", {"limit": 2})
        assert [h["name"] for h in first["handlers"]] == ["a", "b"] and first["more"]
        rest = c.call("hooks.list", {"limit": 10, "after": "b"})
        assert [h["name"] for h in rest["handlers"]] == ["c", "d", "e", "z"]
        assert not rest["more"]
        names = [h["name"] for h in json.loads(cli("hooks", "list", "--json").stdout)]
        assert names == ["a", "b", "c", "d", "e", "z"]
        for i in range(6):
            c.kv.put(f"/dl/{i}".encode(), b"x")

        def dead_lettered() -> int:
            m = json.loads(cli("hooks", "metrics", "z", "--json").stdout)
            return m["dead_lettered"] >= 6

        wait_for(dead_lettered, timeout=20)
        shown_all = cli("hooks", "dlq", "z", "--limit", "3", "--json")  # <= the cap
        assert shown_all.exit_code == 0, shown_all.output
        keys = [e["event"]["key"] for e in json.loads(shown_all.stdout)]
        assert keys == ["/dl/3", "/dl/4", "/dl/5"]  # the cap kept the newest
        page = c.call("hooks.dlq", {"name": "z", "limit": 2})
        assert len(page["entries"]) == 2 and page["more"]
        after = page["entries"][-1]["id"]
        last = c.call("hooks.dlq", {"name": "z", "limit": 2, "after": after})
        assert [e["event"]["key"] for e in last["entries"]] == ["/dl/5"] and not last["more"]
        shown = json.loads(cli("hooks", "dlq", "z", "--limit", "2", "--json").stdout)
        assert [e["event"]["key"] for e in shown] == ["/dl/3", "/dl/4"]


def test_a_journal_hook_added_from_the_cli_runs_once_per_published_event(
    node, cli, tmp_path
) -> None:
    out = tmp_path / "ci"
    command = _append(out, "ASPEN_HOOK_SUBJECT", "ASPEN_HOOK_POSITION")
    added = cli("hooks", "add", "ci", "--on", "forge.push:acme/*", "--shell", command)
    assert added.exit_code == 0, added.output
    for subject in ("acme/a", "other/b", "acme/c"):
        published = cli("events", "publish", "forge.push", subject, "--payload", '{"ref": "main"}')
        assert published.exit_code == 0, published.output
    wait_for(lambda: len(_lines(out)) >= 4, timeout=20)
    assert _lines(out) == ["acme/a", "1", "acme/c", "3"]
    tailed = cli("events", "tail", "--no-follow", "--match", "forge.push:acme/*", "--json")
    assert tailed.exit_code == 0, tailed.output
    events = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert [(e["position"], e["payload"]) for e in events] == [
        (1, {"ref": "main"}),
        (3, {"ref": "main"}),
    ]

"""`aspen kv …` and `aspen status` against a real node (the `node` and `cli` fixtures)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from aspen.cli.output import EXIT_NO, EXIT_UNAVAILABLE, EXIT_USAGE
from aspen.testing import free_port, wait_for

pytestmark = pytest.mark.aspen_plugins()  # core only: no installed plugins


def test_put_then_get_prints_the_raw_value(cli):
    assert cli("kv", "put", "greeting", "hello world").exit_code == 0
    result = cli("kv", "get", "greeting")
    assert result.exit_code == 0
    assert result.stdout_bytes == b"hello world"  # no newline: stdout is not a tty


def test_get_missing_key_exits_1(cli):
    result = cli("kv", "get", "nope")
    assert result.exit_code == EXIT_NO
    assert result.stderr == "key not found: nope\n"
    assert result.stdout == ""


def test_put_value_from_stdin_keeps_bytes(cli, node):
    data = bytes(range(256))
    assert cli("kv", "put", "bin", "-", input=data).exit_code == 0
    assert cli("kv", "get", "bin").stdout_bytes == data
    with node.client() as c:
        assert c.kv.get(b"bin").value == data


def test_get_json_and_binary_values(cli):
    cli("kv", "put", "text", "v1")
    cli("kv", "put", "text", "v2")
    cli("kv", "put", "bin", "-", input=b"\xff\x00")
    text = json.loads(cli("kv", "get", "text", "--json").stdout)
    assert text["key"] == "text" and text["value"] == "v2"
    assert text["version"] == 2 and text["mod_revision"] > text["create_revision"]
    assert text["lease"] == 0
    binary = json.loads(cli("--json", "kv", "get", "bin").stdout)
    assert binary["key"] == "bin" and binary["value_b64"] == "/wA=" and "value" not in binary


def test_get_at_an_older_revision(cli):
    first = json.loads(cli("--json", "kv", "put", "k", "old").stdout)["revision"]
    cli("kv", "put", "k", "new")
    assert cli("kv", "get", "k", "--rev", str(first)).stdout == "old"
    assert cli("kv", "get", "k", "--serializable").stdout == "new"


def test_put_prev_kv(cli):
    cli("kv", "put", "k", "one")
    result = cli("kv", "put", "k", "two", "--prev-kv")
    assert result.stdout.splitlines()[1] == "previous: one"
    out = json.loads(cli("--json", "kv", "put", "k", "three", "--prev-kv").stdout)
    assert out["prev_kv"]["value"] == "two"


def test_delete_key_prefix_and_range(cli):
    for key in ("a/1", "a/2", "b/1", "c"):
        cli("kv", "put", key, "x")
    assert cli("kv", "del", "c").stdout == "1\n"
    assert cli("kv", "del", "c").stdout == "0\n"
    result = cli("--json", "kv", "del", "a/", "--prefix", "--prev-kv")
    out = json.loads(result.stdout)
    assert out["deleted"] == 2
    assert [r["key"] for r in out["prev_kvs"]] == ["a/1", "a/2"]
    assert cli("kv", "del", "b", "--range-end", "c").stdout == "1\n"
    assert cli("kv", "del", "a", "--prefix", "--range-end", "b").exit_code == EXIT_USAGE


def test_range_table_keys_count_limit_json(cli):
    for i in range(5):
        cli("kv", "put", f"/app/{i}", f"value-{i}")
    cli("kv", "put", "/other", "x")
    table = cli("kv", "range", "/app/").stdout.splitlines()
    assert table[0].split() == ["KEY", "VALUE", "MOD_REV", "VERSION", "LEASE"]
    assert [line.split()[:2] for line in table[1:]] == [
        [f"/app/{i}", f"value-{i}"] for i in range(5)
    ]
    assert cli("kv", "range", "/app/", "--keys-only").stdout.split() == [
        f"/app/{i}" for i in range(5)
    ]
    assert cli("kv", "range", "/app/", "--count-only").stdout == "5\n"
    assert cli("kv", "range").stdout.count("\n") == 7  # header + every key
    limited = cli("kv", "range", "/app/", "--limit", "2")
    assert len(limited.stdout.splitlines()) == 3
    assert "more keys after the first 2" in limited.stderr
    out = json.loads(cli("--json", "kv", "range", "/app/1", "--range-end", "/app/3").stdout)
    assert [kv["key"] for kv in out["kvs"]] == ["/app/1", "/app/2"]
    assert out["more"] is False


def test_range_lists_more_than_one_page(cli, node):
    from aspen.client import Op
    from aspen.limits import CLIENT_SCAN_PAGE_SIZE

    keys = [f"/many/{i:05}".encode() for i in range(CLIENT_SCAN_PAGE_SIZE + 5)]
    with node.client() as c:
        for chunk in (keys[:500], keys[500:]):
            c.kv.txn(success=[Op.put(k, b"v") for k in chunk])
    out = json.loads(cli("--json", "kv", "range", "/many/", "--keys-only").stdout)
    assert [kv["key"].encode() for kv in out["kvs"]] == keys
    assert all("value" not in kv for kv in out["kvs"])
    assert cli("kv", "range", "/many/", "--count-only").stdout == f"{len(keys)}\n"


TXN_LINES = """
if version /config == 0
then put /config v1
else get /config
"""


def test_txn_line_format_succeeds_then_fails(cli):
    first = cli("kv", "txn", input=TXN_LINES)
    assert first.exit_code == 0
    assert first.stdout == "SUCCEEDED\nOK\n"
    second = cli("kv", "txn", input=TXN_LINES)
    assert second.exit_code == EXIT_NO
    assert second.stdout == "FAILED\n/config\tv1\n"


def test_txn_json_from_file(cli, tmp_path):
    spec = {
        "compare": [{"key": "k", "target": "value", "op": "==", "value": "old"}],
        "success": [{"put": {"key": "k", "value": "new"}}, {"range": {"key": "k"}}],
        "failure": [],
    }
    path = tmp_path / "txn.json"
    path.write_text(json.dumps(spec))
    cli("kv", "put", "k", "old")
    out = json.loads(cli("--json", "kv", "txn", "--file", path).stdout)
    assert out["succeeded"] is True
    assert out["responses"][0] == {"put": {"prev_kv": None}}
    assert out["responses"][1]["range"]["kvs"][0]["value"] == "new"


def test_txn_bad_spec_is_a_usage_error(cli):
    result = cli("kv", "txn", input="if colour k == 0\n")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: txn spec line 1: unknown compare target 'colour'")
    assert "Traceback" not in result.output


def test_compact_then_old_revision_is_a_clear_error(cli):
    first = json.loads(cli("--json", "kv", "put", "k", "1").stdout)["revision"]
    cli("kv", "put", "k", "2")
    last = json.loads(cli("--json", "kv", "put", "k", "3").stdout)["revision"]
    assert cli("kv", "compact", str(last)).exit_code == 0
    result = cli("kv", "get", "k", "--rev", str(first))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: ")
    assert "compact" in result.stderr


def test_invalid_argument_from_the_node(cli):
    result = cli("kv", "put", "k" * 5000, "v")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("error: ")


def test_watch_prints_events_as_json_lines(node):
    """Run `aspen kv watch` as a real process, write from a client, stop it with SIGINT."""
    env = {"ASPEN_ENDPOINT": node.endpoint, "ASPEN_TOKEN": node.token, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "aspen", "--json", "kv", "watch", "w/", "--prefix", "--prev-kv"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**_base_env(), **env}
    )
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in proc.stdout), daemon=True
    )
    reader.start()
    try:
        with node.client() as c:

            def written_and_seen():
                c.kv.put(b"w/probe", b"p")  # the watch may not be registered yet: retry
                return any(ev["kv"]["key"] == "w/probe" for ev in lines)

            wait_for(written_and_seen, timeout=20, interval=0.2, message="watch saw w/probe")
            c.kv.put(b"w/a", b"1")
            c.kv.delete(b"w/a")
            c.kv.put(b"elsewhere", b"x")
            wait_for(lambda: any(ev["type"] == "delete" for ev in lines), timeout=10)
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(timeout=10) == 0
        reader.join(timeout=5)
    events = [ev for ev in lines if ev["kv"]["key"] == "w/a"]
    assert [ev["type"] for ev in events] == ["put", "delete"]
    assert events[0]["kv"]["value"] == "1"
    assert events[1]["prev_kv"]["value"] == "1"
    assert all(ev["kv"]["key"].startswith("w/") for ev in lines)
    assert "Traceback" not in proc.stderr.read().decode()


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ASPEN_")}


def test_status(cli, node):
    out = json.loads(cli("--json", "status").stdout)
    assert out["endpoint"] == node.endpoint
    text = cli("status").stdout
    assert f"endpoint: {node.endpoint}" in text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("plugins: ")]
    shown = line.removeprefix("plugins: ").split(", ")
    assert shown == ["none"] or all(p.endswith("(disabled)") for p in shown)  # core tests load none


def test_unreachable_node_exits_3_without_traceback():
    from aspen.testing import CliInvoker

    cli = CliInvoker(env={"ASPEN_ENDPOINT": f"127.0.0.1:{free_port()}", "ASPEN_TOKEN": "t"})
    result = cli("kv", "get", "k")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


def test_wrong_token_is_an_error(node):
    from aspen.testing import CliInvoker

    prefix, _, secret = node.token.rpartition(".")
    wrong = f"{prefix}.{'A' * len(secret)}"
    cli = CliInvoker(env={"ASPEN_ENDPOINT": node.endpoint, "ASPEN_TOKEN": wrong})
    result = cli("kv", "get", "k")
    assert result.exit_code == 4
    assert "token" in result.stderr
    assert result.stderr.startswith("error: ")


def test_token_from_file_or_the_default_data_dir(node, tmp_path, monkeypatch):
    from aspen.testing import CliInvoker

    monkeypatch.delenv("ASPEN_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(node.token + "\n")
    cli = CliInvoker(env={"ASPEN_ENDPOINT": node.endpoint})
    assert cli("--token-file", token_file, "kv", "put", "k", "v").exit_code == 0
    # no --token-file, no ASPEN_TOKEN: the root token of the default data dir
    monkeypatch.setenv("ASPEN_DATA_DIR", str(node.data_dir))
    assert cli("kv", "get", "k").stdout == "v"

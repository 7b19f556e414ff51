"""How `aspen kv range` and `aspen kv get` show keys and values to a person, against a real
node: plugin state hidden unless asked, control bytes escaped, cells cut, a newline after
`kv get` on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

import pytest

from aspen.cli.kv import SYSTEM_PREFIX
from aspen.cli.output import ELLIPSIS, TABLE_CELL_MAX_CHARS

pytestmark = pytest.mark.aspen_plugins()  # core only: no installed plugins

#: Seconds a `kv get` process has to print its value.
READ_SECONDS = 30


def _put_system_and_user_keys(node) -> None:
    with node.client() as c:
        for key in (b"/_aspen/hooks/a", b"/_aspen/secrets/b", b"/_aspen/z"):
            c.kv.put(key, b"plugin state")
        for key in (b"/", b"/app/1", b"/_aspen", b"/_aspen0", b"zz"):
            c.kv.put(key, b"user")


def _keys(result) -> list[str]:
    return result.stdout.split()


def test_range_hides_system_keys_unless_asked(cli, node):
    _put_system_and_user_keys(node)
    user = ["/", "/_aspen", "/_aspen0", "/app/1", "zz"]
    everything = ["/", "/_aspen", "/_aspen/hooks/a", "/_aspen/secrets/b", "/_aspen/z"]
    everything += ["/_aspen0", "/app/1", "zz"]
    shown = cli("kv", "range", "--keys-only")
    assert _keys(shown) == user
    assert "3 keys under /_aspen/ not shown: --all shows them" in shown.stderr
    assert _keys(cli("kv", "range", "--keys-only", "--all")) == everything
    assert _keys(cli("kv", "range", "/", "--keys-only")) == user[:4]
    assert cli("kv", "range", "--count-only").stdout == "5\n"
    assert cli("kv", "range", "--count-only", "--all").stdout == "8\n"
    # a range that starts inside /_aspen/ asked for it
    assert _keys(cli("kv", "range", SYSTEM_PREFIX.decode(), "--keys-only")) == everything[2:5]
    assert _keys(cli("kv", "range", "/_aspen/hooks/", "--keys-only")) == ["/_aspen/hooks/a"]
    # --limit counts shown keys; --range-end across the hidden block; --json too
    assert _keys(cli("kv", "range", "--keys-only", "--limit", "3")) == user[:3]
    ranged = cli("kv", "range", "/_", "--range-end", "/b", "--keys-only")
    assert _keys(ranged) == ["/_aspen", "/_aspen0", "/app/1"]
    out = json.loads(cli("--json", "kv", "range").stdout)
    assert [kv["key"] for kv in out["kvs"]] == user
    nothing_hidden = cli("kv", "range", "zz")
    assert "not shown" not in nothing_hidden.stderr


def test_range_escapes_control_bytes_and_caps_cells(cli, node):
    long_value = b"v" * (TABLE_CELL_MAX_CHARS * 3)
    with node.client() as c:
        c.kv.put(b"ctl\n\x1b[2Jkey", b"line1\nline2\t\x1b[31mred\r\x00\x7f\xc2\x85\xff")
        c.kv.put(b"long", long_value)
    table = cli("kv", "range").stdout
    lines = table.splitlines()
    assert len(lines) == 3  # header + one row per key: no newline leaked from a key/value
    assert "\x1b" not in table and "\r" not in table and "\x00" not in table
    assert "ctl\\n\\x1b[2Jkey" in lines[1]
    assert "line1\\nline2\\t\\x1b[31mred\\r\\x00\\x7f\\u0085\\xff" in lines[1]
    cell = "v" * (TABLE_CELL_MAX_CHARS - len(ELLIPSIS)) + ELLIPSIS
    assert lines[2].split()[1] == cell
    # the raw value is still whole where it is asked for
    assert cli("kv", "get", "long").stdout_bytes == long_value
    assert json.loads(cli("--json", "kv", "range", "long").stdout)["kvs"][0]["value"] == (
        long_value.decode()
    )


def _read_pty(fd: int, proc: subprocess.Popen) -> bytes:
    """Everything the process writes on the terminal ``fd`` until it exits."""
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], READ_SECONDS)
        if not ready:
            raise AssertionError(f"no output within {READ_SECONDS}s: {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other end closed
            chunk = b""
        if not chunk:
            proc.wait(READ_SECONDS)
            return out
        out += chunk


def test_get_ends_with_a_newline_on_a_terminal_only(cli, node):
    cli("kv", "put", "greeting", "hello world")
    env = {**os.environ, "ASPEN_ENDPOINT": node.endpoint, "ASPEN_TOKEN": node.token}
    cmd = [sys.executable, "-m", "aspen", "kv", "get", "greeting"]
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdout=terminal, stderr=terminal, env=env)
        os.close(terminal)
        assert _read_pty(controller, proc) == b"hello world\r\n"  # the tty turns \n into \r\n
    finally:
        os.close(controller)
    piped = subprocess.run(cmd, capture_output=True, env=env, timeout=READ_SECONDS)
    assert piped.stdout == b"hello world"  # raw bytes stay raw when piped

"""The CLI's errors as a new user meets them: one line on stderr, the documented exit code
(README: 0 ok, 1 not found, 2 usage, 3 node unavailable, 4 other), never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aspen.cli.output import EXIT_ERROR, EXIT_USAGE
from aspen.limits import MAX_ADDRESS_CHARS
from aspen.testing import CliInvoker, free_port

#: Seconds a `node start` that must fail early may take.
FAIL_SECONDS = 60


def _one_line(text: str) -> str:
    """The single line of ``text`` (fails on a traceback or any other extra line)."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("endpoint", ["localhost7401", "http://127.0.0.1:7401", "127.0.0.1:x"])
def test_malformed_aspen_endpoint_is_a_usage_error(endpoint):
    cli = CliInvoker(env={"ASPEN_ENDPOINT": endpoint, "ASPEN_TOKEN": "aspen1.x.y"})
    result = cli("kv", "get", "k")
    assert result.exit_code == EXIT_USAGE
    line = _one_line(result.stderr)
    assert line.startswith("error: ASPEN_ENDPOINT: ") and repr(endpoint) in line
    flagged = CliInvoker()("--endpoint", endpoint, "kv", "get", "k", ASPEN_TOKEN="aspen1.x.y")
    assert flagged.exit_code == EXIT_USAGE
    assert _one_line(flagged.stderr).startswith("error: --endpoint: ")


def test_missing_token_says_aspen_token_is_not_set(running_node, tmp_path):
    cli = CliInvoker(env={"ASPEN_ENDPOINT": running_node.endpoint})
    result = cli(
        "kv", "get", "k", ASPEN_TOKEN=None, ASPEN_DATA_DIR=None, XDG_DATA_HOME=str(tmp_path)
    )  # type: ignore[arg-type]
    assert result.exit_code == EXIT_USAGE
    line = _one_line(result.stderr)
    assert line.startswith("error: ASPEN_TOKEN is not set")
    assert "could not connect" not in line


def _node_start(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `aspen node start` as a user would (a real process) and let it finish."""
    return subprocess.run(
        [sys.executable, "-m", "aspen", "node", "start", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=FAIL_SECONDS,
        env={**os.environ, "ASPEN_SECRETS_HTTP_LISTEN": "off"},
    )


@pytest.mark.parametrize("taken", ["client", "peer"])
def test_a_taken_port_is_named(tmp_path, taken):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        client_port = port if taken == "client" else port - 1
        result = _node_start(tmp_path / "n", "--listen", f"127.0.0.1:{client_port}")
    assert result.returncode == EXIT_ERROR
    line = _one_line(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port} " in line and "already in use" in line
    assert ("--listen" if taken == "client" else "client + 1") in line
    assert not (tmp_path / "n").exists()


def test_join_through_a_client_port_says_use_the_peer_port(running_node, tmp_path):
    join_token = (running_node.data_dir / "join-token").read_text().strip()
    result = _node_start(
        tmp_path / "n2",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--join",
        f"{join_token}@{running_node.endpoint}",  # the client port, not the peer port
    )
    assert result.returncode == EXIT_USAGE
    line = _one_line(result.stderr)
    assert f"{running_node.endpoint} is a client port" in line
    assert "use the member's peer port (client + 1" in line


@pytest.mark.parametrize("flag", ["--advertise-peer", "--join"])
def test_an_over_long_address_names_max_address_chars(tmp_path, flag):
    address = "a" * 300 + ":7380"
    value = f"aspen1j.x.y@{address}" if flag == "--join" else address
    result = _node_start(tmp_path / "n", "--listen", f"127.0.0.1:{free_port()}", flag, value)
    assert result.returncode == EXIT_USAGE
    assert f"at most {MAX_ADDRESS_CHARS} (MAX_ADDRESS_CHARS)" in result.stderr
    assert "Traceback" not in result.stderr and "16" not in result.stderr

"""The README's "Running nodes yourself" block, run as written (real `aspen` processes, one
shell per "# shell N" section) on free ports instead of 7379-7382 and 8201."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aspen.node.devcluster import NODE_START_SECONDS
from aspen.testing import free_base_port, wait_for

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
#: Seconds one CLI command of the block may take.
COMMAND_SECONDS = 60


def _shells(readme: str) -> list[str]:
    """The README block's "# shell N" sections, in order."""
    section = readme.split("### Running nodes yourself", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [part for part in re.split(r"^# shell \d+:.*\n", block, flags=re.M) if part.strip()]


def _on_free_ports(text: str) -> str:
    """``text`` with the README's ports (7379-7382, 8201) moved to free ones."""
    base = free_base_port(4)  # base+1 .. base+4 are free
    ports = {7379: base + 1, 7380: base + 2, 7381: base + 3, 7382: base + 4, 8201: 0}
    return re.sub(r"\b(7379|7380|7381|7382|8201)\b", lambda m: str(ports[int(m[1])]), text)


def _node(script: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def test_running_nodes_yourself_runs_as_written(tmp_path):
    shell1, shell2, shell3 = _shells(_on_free_ports(README.read_text()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASPEN_")}
    # the block's --secrets-http-listen needs aspen-secrets; node 1's API (8200 in the README)
    # goes to a free port through the environment, which the flag on node 2 overrides
    env.update(
        HOME=str(tmp_path),
        ASPEN_LOAD_PLUGINS="secrets",
        ASPEN_SECRETS_HTTP_LISTEN="127.0.0.1:0",
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    lines = [line for line in shell1.splitlines() if line.strip() and not line.startswith("#")]
    procs = [_node("\n".join(lines), env, tmp_path / "n1.log")]
    try:
        join_token = tmp_path / "aspen" / "n1" / "join-token"
        wait_for(join_token.exists, NODE_START_SECONDS, 0.1, message="node 1 founded a cluster")
        wait_for(lambda: b"is serving" in (tmp_path / "n1.log").read_bytes(), NODE_START_SECONDS)
        second = "\n".join(line for line in shell2.splitlines() if not line.startswith("#"))
        procs.append(_node(second, env, tmp_path / "n2.log"))
        banner = wait_for(
            lambda: re.search(rb"Aspen node (\w+) is serving", (tmp_path / "n2.log").read_bytes()),
            NODE_START_SECONDS,
            0.1,
            message="node 2 joined",
        )
        node_id = banner[1].decode()

        script = shell3.replace("<node-id>", node_id)
        setup = "\n".join(line for line in script.splitlines() if line.startswith("export "))
        commands = [
            line.split("#", 1)[0].strip()
            for line in script.splitlines()
            if line.startswith("aspen ")
        ]
        assert commands[0] == "aspen cluster status" and "promote" in commands[1]

        def run(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", f"{setup}\n{command}"],
                capture_output=True,
                text=True,
                env=env,
                timeout=COMMAND_SECONDS,
            )

        status = run("aspen --json cluster status")
        assert status.returncode == 0, status.stderr
        roles = {m["id"]: m["role"] for m in json.loads(status.stdout)["members"]}
        assert roles[node_id] == "learner"
        for command in commands:  # promote is refused until the learner caught up: retry
            ok = lambda c=command: run(c).returncode == 0  # noqa: E731
            wait_for(ok, COMMAND_SECONDS, 0.5, message=command)
        status = json.loads(run("aspen --json cluster status").stdout)
        assert {m["id"]: m["role"] for m in status["members"]}[node_id] == "follower"
    finally:
        for proc in procs:  # each node runs in its own session, as in its own shell
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(COMMAND_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

"""aspen_hooks.executors: shell, python and forward handlers run for real.

Shell runs spawn real processes (and check by pid that none survives a kill); python
runs import real modules from ``executor_support/``; forward runs call a real node that
serves an in-process stand-in for the hooks plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest

import aspen
from aspen.errors import InvalidArgumentError, UnavailableError
from aspen.node.runner import backend_options
from aspen.plugins.types import RpcHandler
from aspen.testing import free_port, wait_for
from aspen_hooks import limits
from aspen_hooks.executors import (
    KINDS,
    ExecutorSettings,
    Invocation,
    Outcome,
    check_target,
    execute,
    public_target,
    validate_target,
)
from aspen_hooks.payload import percent_encode, text_or_b64

T = TypeVar("T")
SUPPORT = Path(__file__).parent / "executor_support"
FAST = ExecutorSettings(kill_grace_seconds=0.3)
KV_EVENT = {"name": "kv.put", "key": "/orders/1", "revision": 42, "value_size": 3}


def run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``func(*args)`` on the same kind of loop a node uses (asyncio, uvloop if present)."""
    return anyio.run(func, *args, backend="asyncio", backend_options=backend_options())


def invocation(event: dict[str, Any] | None = None, timeout: float = 5.0) -> Invocation:
    """An invocation of handler ``h1`` for ``event`` (a kv put by default)."""
    return Invocation(
        handler="h1",
        event=dict(KV_EVENT if event is None else event),
        idempotency_key="cluster-x:42:h1",
        attempt=2,
        timeout=timeout,
    )


def shell(command: str, settings: ExecutorSettings = FAST, **kwargs: Any) -> Outcome:
    """Run a shell handler once."""
    return run(execute, "shell", {"command": command}, invocation(**kwargs), settings)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def read_pids(path: Path) -> list[int]:
    """The pids a test command wrote to ``path``, one per line."""
    return [int(line) for line in path.read_text().split()]


# ------------------------------------------------------------------ validation


def test_kinds_and_unknown_kind():
    assert KINDS == ("shell", "python", "forward", "job")
    with pytest.raises(InvalidArgumentError, match="unknown handler kind 'cron'; kinds: shell"):
        validate_target("cron", {"command": "true"}, FAST)
    outcome = run(execute, "cron", {}, invocation(), FAST)
    assert not outcome.ok and "unknown handler kind" in outcome.error


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({}, "'command' must be a string, not nothing"),
        ({"command": "   "}, "must not be empty"),
        ({"command": "echo a\x00b"}, "NUL"),
        ({"command": "x" * (limits.HOOKS_MAX_COMMAND_CHARS + 1)}, "HOOKS_MAX_COMMAND_CHARS"),
        ({"command": "true", "cwd": "/"}, r"unknown field\(s\) cwd"),
        ("true", "must be a map"),
    ],
)
def test_shell_target_validation(target, message):
    with pytest.raises(InvalidArgumentError, match=message):
        validate_target("shell", target, FAST)


def test_shell_allow_list():
    settings = ExecutorSettings(shell_allow=("echo", "logger"))
    for ok in ("echo hi", "/bin/echo 'a;b' \"$HOME\"", "echo hi >&2", "logger -t x 2>&1"):
        assert validate_target("shell", {"command": ok}, settings) == {"command": ok}
    refused = r"'rm' \(it is .*/rm\) is not allowed.*allowed: echo, logger"
    with pytest.raises(InvalidArgumentError, match=refused):
        validate_target("shell", {"command": "rm -rf /tmp/x"}, settings)
    for sneaky in (
        "echo ok; rm x",
        "echo ok && rm x",
        "echo | sh",
        "echo $(rm x)",
        "echo `id`",
        "echo ok\nrm x",
        "echo ok & rm x",
        "echo ok;>f rm x",
    ):
        with pytest.raises(InvalidArgumentError, match="chains or substitutes"):
            validate_target("shell", {"command": sneaky}, settings)
    # the running node checks again: a handler added elsewhere is refused here
    outcome = shell("rm -rf /tmp/nothing-here", settings)
    assert not outcome.ok and outcome.exit_code is None
    assert "invalid shell target on this node" in outcome.error and "echo, logger" in outcome.error


def _program(path: Path) -> Path:
    """An executable shell script at ``path`` that prints its own name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {path.name}\n")
    path.chmod(0o755)
    return path


def test_shell_allow_list_compares_full_paths_not_basenames(tmp_path):
    """issue 9: ``shell_allow=echo`` accepted ``/any/dir/echo``."""
    settings = ExecutorSettings(shell_allow=("echo",), kill_grace_seconds=0.3)
    fake = _program(tmp_path / "evil" / "echo")
    for command in (f"{fake} hi", f"'{fake}' hi", f"cd {tmp_path} && ./evil/echo"):
        with pytest.raises(InvalidArgumentError, match=r"not allowed|chains"):
            validate_target("shell", {"command": command}, settings)
    # the running node checks again, so a handler added elsewhere cannot run it either
    outcome = shell(f"{fake} hi", settings)
    assert not outcome.ok and outcome.exit_code is None and "not allowed" in outcome.error
    # a symlink to the allowed file is that file; the shell's expansions are refused
    link = tmp_path / "alias"
    link.symlink_to(shutil.which("echo"))
    assert validate_target("shell", {"command": f"{link} ok"}, settings)
    for expanded in ("$HOME/echo x", "ech? x", "~/echo x", "/usr/bin/ech[o] x"):
        with pytest.raises(InvalidArgumentError, match="expanded by the shell"):
            validate_target("shell", {"command": expanded}, settings)


def test_shell_allow_entries_resolve_when_the_settings_are_made(tmp_path, monkeypatch):
    mine = _program(tmp_path / "bin" / "tool")
    other = _program(tmp_path / "other" / "tool")
    monkeypatch.setenv("PATH", f"{mine.parent}:{os.environ['PATH']}")
    by_name = ExecutorSettings(shell_allow=("tool",), kill_grace_seconds=0.3)
    assert by_name.allow_list.paths == {str(mine)}
    assert validate_target("shell", {"command": "tool --x"}, by_name)
    assert validate_target("shell", {"command": f"{mine} --x"}, by_name)
    with pytest.raises(InvalidArgumentError, match="not allowed"):
        validate_target("shell", {"command": f"{other} --x"}, by_name)
    outcome = shell("tool", by_name)
    assert outcome.ok and outcome.stdout == "tool\n", outcome
    # an entry with a slash is that file only, whatever PATH finds under the same name
    by_path = ExecutorSettings(shell_allow=(str(other),))
    assert validate_target("shell", {"command": f"{other}"}, by_path)
    with pytest.raises(InvalidArgumentError, match=f"'tool' \\(it is {mine}\\) is not allowed"):
        validate_target("shell", {"command": "tool"}, by_path)
    # an entry that names nothing allows nothing (and says so)
    missing = ExecutorSettings(shell_allow=("no-such-program-here", str(tmp_path / "nope")))
    assert missing.allow_list.paths == frozenset()
    assert missing.allow_list.unresolved == ("no-such-program-here", str(tmp_path / "nope"))
    with pytest.raises(InvalidArgumentError, match="not allowed"):
        validate_target("shell", {"command": "no-such-program-here"}, missing)


# ------------------------------------------------------------------ shell runs


def test_shell_environment_is_clean(monkeypatch):
    monkeypatch.setenv("HOOKS_TEST_SECRET", "s3cret")
    monkeypatch.setenv("HOOKS_TEST_PASSED", "yes")
    settings = ExecutorSettings(env_allow=("PATH", "HOOKS_TEST_PASSED"))
    outcome = shell("env", settings)
    assert outcome.ok and outcome.exit_code == 0, outcome
    env = dict(line.split("=", 1) for line in outcome.stdout.splitlines())
    assert "HOOKS_TEST_SECRET" not in env and "s3cret" not in outcome.stdout
    assert json.loads(env.pop("ASPEN_HOOK_EVENT")) == KV_EVENT
    env.pop("PWD", None)  # sh sets it itself
    assert env == {
        "PATH": os.environ["PATH"],
        "HOOKS_TEST_PASSED": "yes",
        "ASPEN_HOOK_EVENT_NAME": "kv.put",
        "ASPEN_HOOK_KEY": "/orders/1",
        "ASPEN_HOOK_KEY_HEX": b"/orders/1".hex(),
        "ASPEN_HOOK_REVISION": "42",
        "ASPEN_HOOK_SUBJECT": "",  # journal events only
        "ASPEN_HOOK_POSITION": "",
        "ASPEN_HOOK_IDEMPOTENCY_KEY": "cluster-x:42:h1",
        "ASPEN_HOOK_NAME": "h1",
        "ASPEN_HOOK_ATTEMPT": "2",
    }


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        (b"/orders/1", "/orders/1"),
        (b"/dir/\xff\xfe", "/dir/%FF%FE"),
        (b"\xfe\xff", "%FE%FF"),
        (b"/caf\xc3\xa9 menu", "/caf\u00e9 menu"),
        (b"/a%b", "/a%25b"),
        (b"/a\nb\x00\x7f\xc2\x85", "/a%0Ab%00%7F%C2%85"),
        (b"\xc3", "%C3"),
    ],
)
def test_percent_encoded_key_is_lossless(key, encoded):
    assert percent_encode(key) == encoded
    assert urllib.parse.unquote_to_bytes(encoded) == key


def test_shell_gets_a_non_utf8_key_losslessly():
    """issue 9: ``ASPEN_HOOK_KEY`` was empty for a non-UTF-8 key."""
    key = b"/dir/\xff\xfe%"
    event = {"name": "kv.put", "revision": 42, **text_or_b64("key", key)}
    assert "key_b64" in event
    outcome = shell('printf "%s|%s" "$ASPEN_HOOK_KEY" "$ASPEN_HOOK_KEY_HEX"', event=event)
    assert outcome.ok, outcome
    assert outcome.stdout == f"/dir/%FF%FE%25|{key.hex()}"


def test_shell_non_kv_event_and_oversized_value():
    outcome = shell(
        'printf "%s|%s|%s" "$ASPEN_HOOK_EVENT_NAME" "$ASPEN_HOOK_KEY" "$ASPEN_HOOK_REVISION"',
        event={"name": "raft.leader_changed", "term": 3},
    )
    assert outcome.ok and outcome.stdout == "raft.leader_changed||"
    big = {**KV_EVENT, "value": "v" * (limits.HOOKS_MAX_EVENT_ENV_BYTES + 10)}
    outcome = shell('printf "%s" "$ASPEN_HOOK_EVENT"', event=big)
    assert outcome.ok, outcome
    assert json.loads(outcome.stdout) == {**KV_EVENT, "value_omitted": True}


def test_shell_exit_status_and_stdin():
    outcome = shell("cat; echo out; echo err >&2; exit 3")
    assert (outcome.ok, outcome.exit_code, outcome.error) == (False, 3, "exit status 3")
    assert (outcome.stdout, outcome.stderr) == ("out\n", "err\n")  # stdin is /dev/null
    assert shell("true").ok
    killed = shell("kill -KILL $$")
    assert (killed.exit_code, killed.error) == (-9, "killed by signal SIGKILL")
    assert killed.to_json()["exit_code"] == -9 and killed.duration > 0


def test_shell_timeout_kills_the_whole_group(tmp_path):
    pids = tmp_path / "pids"
    # the shell ignores TERM (and so do its children), and leaves a grandchild behind
    command = (
        f"trap '' TERM; sh -c 'sleep 30 & echo $! >> {pids}; sleep 30' & "
        f"echo $$ >> {pids}; sleep 30"
    )
    start = time.monotonic()
    outcome = shell(command, timeout=0.5)
    elapsed = time.monotonic() - start
    assert not outcome.ok
    assert outcome.error == "timed out after 0.5s (killed, SIGKILL after 0.3s grace)"
    assert elapsed < 0.5 + 0.3 + 1.5
    recorded = wait_for(lambda: len(read_pids(pids)) == 2 and read_pids(pids))
    wait_for(lambda: not any(alive(pid) for pid in recorded), timeout=2, message="all gone")


def test_shell_timeout_term_is_enough_and_leftovers_are_ended(tmp_path):
    outcome = shell("sleep 30", timeout=0.3)
    assert outcome.error == "timed out after 0.3s (killed, SIGTERM)"
    assert outcome.exit_code == -15
    # a background process the shell leaves behind does not outlive the run
    pidfile = tmp_path / "bg"
    outcome = shell(f"sleep 30 & echo $! > {pidfile}; echo done")
    assert outcome.ok and outcome.stdout == "done\n" and outcome.duration < 2
    wait_for(lambda: not alive(read_pids(pidfile)[0]), timeout=2, message="background gone")


def test_shell_output_is_bounded_and_drained():
    settings = ExecutorSettings(max_output_bytes=1000, kill_grace_seconds=0.3)
    command = "head -c 3000000 /dev/zero | tr '\\0' a; head -c 2000000 /dev/zero >&2; echo end"
    outcome = shell(command, settings, timeout=10)
    assert outcome.ok, outcome.error
    assert outcome.stdout.startswith("a" * 1000)
    assert outcome.stdout.endswith("[output truncated: kept 1000 of 3000004 bytes]")
    assert outcome.stderr.endswith("[output truncated: kept 1000 of 2000000 bytes]")
    assert len(outcome.stdout) < 1100


def test_shell_cancellation_kills_the_process(tmp_path):
    pidfile = tmp_path / "pid"
    results: list[Outcome] = []

    async def main() -> None:
        async def one() -> None:
            results.append(
                await execute(
                    "shell", {"command": f"echo $$ > {pidfile}; exec sleep 30"}, invocation(), FAST
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            await anyio.to_thread.run_sync(
                lambda: wait_for(lambda: read_pids(pidfile), ignore=(OSError, ValueError))
            )
            tg.cancel_scope.cancel()

    start = time.monotonic()
    run(main)
    assert results == [] and time.monotonic() - start < 5
    assert not alive(read_pids(pidfile)[0])


@pytest.mark.aspen_plugins()
def test_shell_on_the_node_loop(node, tmp_path):
    """The runner executes on the node's own loop (uvloop, in the node's thread)."""
    pidfile = tmp_path / "pid"
    command = f"echo $$ > {pidfile}; echo $ASPEN_HOOK_NAME; exec sleep 30"
    outcome = node.call(execute, "shell", {"command": command}, invocation(timeout=0.3), FAST)
    assert (outcome.stdout, outcome.error) == ("h1\n", "timed out after 0.3s (killed, SIGTERM)")
    assert not alive(read_pids(pidfile)[0])


# ------------------------------------------------------------------ python


@pytest.fixture
def support(monkeypatch):
    """Make ``executor_support`` importable; the name of its entry point module."""
    monkeypatch.syspath_prepend(str(SUPPORT))
    return "hooks_exec_entrypoints"


def python(entrypoint: str, **kwargs: Any) -> Outcome:
    """Run a python handler once."""
    return run(execute, "python", {"entrypoint": entrypoint}, invocation(**kwargs), FAST)


def test_python_sync_and_async(support):
    inv = invocation()
    outcome = run(execute, "python", {"entrypoint": f"{support}:echo_sync"}, inv, FAST)
    assert outcome.ok, outcome.error
    expected = {**KV_EVENT, "idempotency_key": "cluster-x:42:h1", "handler": "h1", "attempt": 2}
    assert outcome.output == {"got": expected, "thread": True}
    assert inv.event == KV_EVENT  # the function scribbled on its copy only
    outcome = python(f"{support}:echo_async")
    assert outcome.ok and outcome.output == {"got": expected, "async": True}
    assert python(f"{support}:Handlers.double").output == 84
    assert python(f"{support}:not_json").output == "{1, 2}"


def test_python_exception(support):
    outcome = python(f"{support}:boom")
    assert (outcome.ok, outcome.error) == (False, "ValueError: boom 42")
    assert "Traceback" in outcome.stderr and "in boom" in outcome.stderr
    missing = python("hooks_exec_no_such_module:f")
    assert not missing.ok and missing.error.startswith("ModuleNotFoundError: ")


def test_python_timeouts(support):
    import hooks_exec_entrypoints as mod

    start = time.monotonic()
    try:
        outcome = python(f"{support}:blocked_sync", timeout=0.3)
    finally:
        mod.RELEASE.set()
    assert not outcome.ok and time.monotonic() - start < 3
    assert outcome.error == (
        "timed out after 0.3s (its thread was abandoned: a thread cannot be killed)"
    )
    outcome = python(f"{support}:blocked_async", timeout=0.3)
    assert outcome.error == "timed out after 0.3s"


def test_python_targets(support):
    target = {"entrypoint": f" {support}:echo_sync "}
    assert validate_target("python", target, FAST) == {"entrypoint": f"{support}:echo_sync"}
    for bad in ("no_colon", "a.b:", "1mod:f", "mod:f-g", "mod:f:g"):
        with pytest.raises(InvalidArgumentError, match=r"package\.module:function"):
            validate_target("python", {"entrypoint": bad}, FAST)
    run(check_target, "python", {"entrypoint": f"{support}:echo_async"})
    with pytest.raises(InvalidArgumentError, match="ModuleNotFoundError"):
        run(check_target, "python", {"entrypoint": "hooks_exec_no_such_module:f"})
    with pytest.raises(InvalidArgumentError, match="is a int, not a callable"):
        run(check_target, "python", {"entrypoint": f"{support}:NOT_CALLABLE"})
    with pytest.raises(InvalidArgumentError, match="AttributeError"):
        run(check_target, "python", {"entrypoint": f"{support}:missing"})
    run(check_target, "shell", {"command": "true"})  # nothing to check


# ------------------------------------------------------------------ forward


class FakeRemoteHooks:
    """Stands in for the hooks plugin of a remote cluster: records every trigger."""

    def __init__(self) -> None:
        self.triggers: list[dict[str, Any]] = []

    @aspen.hookimpl
    def aspen_rpc_handlers(self):
        async def trigger(ctx, params):
            self.triggers.append(params)
            fail = params["payload"].get("fail_remote")
            return {"results": [{"handler": "r1", "ok": True}, {"handler": "r2", "ok": not fail}]}

        async def list_(ctx, params):
            return {"handlers": []}

        return [RpcHandler("hooks.trigger", trigger), RpcHandler("hooks.list", list_)]


REMOTE = FakeRemoteHooks()


@pytest.fixture
def remote(node):
    """The node serving REMOTE, with REMOTE's records cleared."""
    REMOTE.triggers.clear()
    return node


def forward_target(node: Any, **extra: Any) -> dict[str, Any]:
    """A forward target pointing at ``node``."""
    return {"endpoint": node.endpoint, "token": node.token, **extra}


@pytest.mark.aspen_plugins(hooks=REMOTE)
def test_forward_calls_remote_trigger(remote):
    target = validate_target("forward", forward_target(remote), FAST)
    run(check_target, "forward", target)
    outcome = run(execute, "forward", target, invocation(), FAST)
    assert outcome.ok, outcome.error
    assert outcome.output["results"][0] == {"handler": "r1", "ok": True}
    assert REMOTE.triggers == [
        {"event": "kv.put", "payload": KV_EVENT, "idempotency_key": "cluster-x:42:h1", "hops": 1}
    ]
    renamed = validate_target("forward", forward_target(remote, event="orders.created"), FAST)
    event = {**KV_EVENT, "forward_hops": 2}
    assert run(execute, "forward", renamed, invocation(event), FAST).ok
    assert REMOTE.triggers[1]["event"] == "orders.created" and REMOTE.triggers[1]["hops"] == 3


@pytest.mark.aspen_plugins(hooks=REMOTE)
def test_forward_remote_failure_and_hop_limit(remote):
    target = forward_target(remote)
    outcome = run(execute, "forward", target, invocation({**KV_EVENT, "fail_remote": 1}), FAST)
    assert (outcome.ok, outcome.error) == (False, "1 remote handler(s) failed: r2")
    assert outcome.output["results"][1] == {"handler": "r2", "ok": False}
    looping = {**KV_EVENT, "forward_hops": limits.HOOKS_MAX_FORWARD_HOPS}
    outcome = run(execute, "forward", target, invocation(looping), FAST)
    assert not outcome.ok and "HOOKS_MAX_FORWARD_HOPS" in outcome.error
    assert len(REMOTE.triggers) == 1  # the looping event was never sent


@pytest.mark.aspen_plugins(hooks=REMOTE)
def test_forward_wrong_token(remote):
    prefix, ca_key, _secret = remote.token.split(".")
    target = forward_target(remote, token=f"{prefix}.{ca_key}.{'x' * 43}")
    with pytest.raises(InvalidArgumentError, match="refused the token: the token is not valid"):
        run(check_target, "forward", target)
    outcome = run(execute, "forward", target, invocation(), FAST)
    assert not outcome.ok and "refused the token" in outcome.error
    # a plain (pre-cluster) token cannot even reach a cluster node, which takes TLS only
    legacy = forward_target(remote, token="aspen_legacy")
    with pytest.raises(UnavailableError, match="use the cluster's token"):
        run(check_target, "forward", legacy)
    assert REMOTE.triggers == []


@pytest.mark.aspen_plugins()  # core only: the target does not run aspen-hooks
def test_forward_target_without_hooks(node):
    with pytest.raises(UnavailableError, match="does not run aspen-hooks"):
        run(check_target, "forward", forward_target(node))
    outcome = run(execute, "forward", forward_target(node), invocation(), FAST)
    assert not outcome.ok and outcome.error.startswith("forward to ")
    assert "unavailable" in outcome.error


def test_forward_unreachable():
    target = {"endpoint": f"127.0.0.1:{free_port()}", "token": "aspen_x"}
    start = time.monotonic()
    with pytest.raises(UnavailableError, match=f"forward target {target['endpoint']} is unreach"):
        run(check_target, "forward", target)
    outcome = run(execute, "forward", target, invocation(timeout=1.0), FAST)
    assert not outcome.ok and "could not connect" in outcome.error
    assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"endpoint": "nohost", "token": "t"}, "is not host:port"),
        ({"endpoint": "h:1", "token": " "}, "'token' must not be empty"),
        ({"endpoint": "h:1"}, "'token' must be a string"),
        ({"endpoint": "h:1", "token": "aspen1j.abc.def"}, "join token"),
        ({"endpoint": "h:1", "token": "aspen1.abc.def"}, "malformed"),
        ({"endpoint": "h:1", "token": "t", "event": "a b"}, "spaces"),
        ({"endpoint": "h:1", "token": "t", "url": "x"}, r"unknown field\(s\) url"),
        ({"endpoint": ",".join(["h:1"] * 17), "token": "t"}, "HOOKS_MAX_FORWARD_ENDPOINTS"),
    ],
)
def test_forward_target_validation(target, message):
    with pytest.raises(InvalidArgumentError, match=message):
        validate_target("forward", target, FAST)


def test_forward_target_normalised_and_redacted():
    target = {"endpoint": " tcp://10.0.0.1:7000 , h2:7001", "token": "aspen_abc"}
    normal = validate_target("forward", target, FAST)
    assert normal == {"endpoint": "10.0.0.1:7000,h2:7001", "token": "aspen_abc"}
    assert public_target("forward", normal)["token"] == "<redacted>"
    assert public_target("shell", {"command": "true"}) == {"command": "true"}

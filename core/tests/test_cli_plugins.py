"""The CLI without a node: plugin listing, lazy plugin commands, collisions, output helpers."""

from __future__ import annotations

import json

import click
import pytest

import aspen
from aspen import errors
from aspen.cli import pass_cli
from aspen.cli.output import (
    EXIT_ERROR,
    EXIT_NO,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    exit_code_for,
    format_table,
    kv_to_json,
)
from aspen.events import KeyValue
from aspen.plugins.manager import make_plugin_manager
from aspen.testing import CliInvoker


class CountingPlugin:
    """A plugin with a CLI group; counts how often its CLI hook runs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cli_calls = 0

    @aspen.hookimpl
    def aspen_cli_commands(self):
        self.cli_calls += 1

        @click.group(self.name, help=f"The {self.name} plugin.")
        def group():
            pass

        @group.command()
        @click.argument("who")
        @pass_cli
        def wave(cli, who):
            """Wave at WHO."""
            click.echo(json.dumps({"wave": who}) if cli.json else f"{self.name} waves at {who}")

        return [group]


def _cli(**plugins):
    pm = make_plugin_manager(load=[], plugins=plugins)
    return pm, CliInvoker(pm)


def test_plugins_json_lists_in_process_plugins():
    _, cli = _cli(greeter=CountingPlugin("greeter"))
    result = cli("plugins", "--local", "--json")
    assert result.exit_code == 0, result.output
    [info] = [i for i in json.loads(result.stdout) if i["status"] != "disabled"]
    assert info["name"] == "greeter"
    assert info["status"] == "loaded" and info["view"] == "local"
    assert info["hooks"] == ["aspen_cli_commands"]
    assert cli("--json", "plugins", "--local").stdout == result.stdout


def test_plugins_table_shows_failures_with_their_error():
    class Broken:
        @aspen.hookimpl
        def aspen_rpc_handlers(self):
            raise RuntimeError("no config")

    _, cli = _cli(broken=Broken(), greeter=CountingPlugin("greeter"))
    result = cli("plugins", "--local")
    assert result.exit_code == 0
    header, *lines = result.stdout.splitlines()
    assert header == "Plugins of this installation (local view: --local):"
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "ERROR"]
    assert "failed" in lines[1] and "aspen_rpc_handlers raised RuntimeError: no config" in lines[1]
    assert lines[2].split()[:2] == ["greeter", "(in-process)"]
    assert "loaded" in lines[2]


def test_plugins_without_any():
    from aspen.plugins.manager import AspenPluginManager

    cli = CliInvoker(AspenPluginManager())  # no entry points read at all
    assert cli("plugins", "--local").stdout.endswith(":\nNo plugins installed.\n")


def test_plugin_command_runs_and_sees_global_options():
    _, cli = _cli(greeter=CountingPlugin("greeter"))
    assert cli("greeter", "wave", "Bob").stdout == "greeter waves at Bob\n"
    assert cli("--json", "greeter", "wave", "Bob").stdout == '{"wave": "Bob"}\n'


def test_help_lists_plugin_commands_and_exit_codes():
    _, cli = _cli(greeter=CountingPlugin("greeter"))
    result = cli("--help")
    assert result.exit_code == 0
    for name in ("greeter", "kv", "lease", "node", "plugins", "status"):
        assert f"  {name} " in result.stdout
    assert "Exit codes:" in result.stdout


def test_built_in_commands_do_not_load_plugin_clis():
    plugin = CountingPlugin("greeter")
    _, cli = _cli(greeter=plugin)
    assert cli("kv", "--help").exit_code == 0
    assert cli("lease", "grant", "--help").exit_code == 0
    assert plugin.cli_calls == 0
    cli("greeter", "wave", "x")
    assert plugin.cli_calls == 1


def test_cli_without_pm_loads_plugins_only_when_needed(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "aspen.plugins.manager.make_plugin_manager",
        lambda **kw: calls.append(kw) or make_plugin_manager(load=[]),
    )
    cli = CliInvoker()
    assert cli("kv", "get", "--help").exit_code == 0
    assert calls == []
    assert cli("plugins", "--local").exit_code == 0
    assert len(calls) == 1


def test_plugin_command_colliding_with_a_built_in_is_refused():
    _, cli = _cli(status=CountingPlugin("status"), greeter=CountingPlugin("greeter"))
    result = cli("plugins", "--local", "--json")
    assert "error: plugin 'status' refused: its command 'status' collides" in result.stderr
    infos = {i["name"]: i for i in json.loads(result.stdout)}
    assert infos["status"]["status"] == "failed"
    assert "collides with the built-in 'aspen status'" in infos["status"]["error"]
    assert infos["greeter"]["status"] == "loaded"
    # the built-in command is still the one that runs
    assert "Show the node's status" in cli("status", "--help").stdout


def test_unknown_command_is_a_usage_error():
    _, cli = _cli()
    result = cli("frobnicate")
    assert result.exit_code == EXIT_USAGE
    assert "No such command 'frobnicate'" in result.stderr


def test_unreadable_token_file_is_a_usage_error(tmp_path):
    _, cli = _cli()
    result = cli("--token-file", tmp_path / "nope", "--endpoint", "127.0.0.1:1", "status")
    assert result.exit_code == EXIT_USAGE
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.output


def test_node_start_checks_listen_address(tmp_path):
    _, cli = _cli()
    result = cli("node", "start", "--data-dir", tmp_path, "--listen", "127.0.0.1:http")
    assert result.exit_code == EXIT_USAGE
    assert "bad port" in result.stderr


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.NotFoundError("x"), EXIT_NO),
        (errors.CompareFailedError("x"), EXIT_NO),
        (errors.InvalidArgumentError("x"), EXIT_USAGE),
        (errors.CompactedError("x"), EXIT_USAGE),
        (errors.UnavailableError("x"), EXIT_UNAVAILABLE),
        (errors.NotLeaderError("x"), EXIT_UNAVAILABLE),
        (errors.TimeoutError("x"), EXIT_UNAVAILABLE),
        (ConnectionRefusedError(111, "refused"), EXIT_UNAVAILABLE),
        (errors.UnauthorizedError("x"), EXIT_ERROR),
        (errors.InternalError("x"), EXIT_ERROR),
        (PermissionError(13, "denied"), EXIT_ERROR),
    ],
)
def test_exit_codes(exc, code):
    assert exit_code_for(exc) == code


def test_kv_to_json_keeps_text_and_base64s_binary():
    record = KeyValue(b"k\xff", b"v", 2, 3, 1, 7)
    assert kv_to_json(record) == {
        "key_b64": "a/8=",
        "value": "v",
        "create_revision": 2,
        "mod_revision": 3,
        "version": 1,
        "lease": 7,
    }
    assert "value" not in kv_to_json(record, keys_only=True)
    assert kv_to_json(None) is None


def test_format_table():
    assert format_table(("A", "BB"), [("xxx", 1), ("y", "")]) == "A    BB\nxxx  1\ny"

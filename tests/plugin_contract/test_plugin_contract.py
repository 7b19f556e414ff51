"""End to end: a third-party plugin installed from wheels into a fresh venv, real processes.

Builds wheels of aspen-core and of the two plugins beside this file, installs them (and
pytest) into a new virtual environment, dependencies pinned to the workspace's lock, then
drives that venv's ``aspen`` binary: ``aspen plugins`` reports ``hello`` loaded and
``broken`` failed, a node starts anyway, serves ``hello.greet`` to the CLI and to a Python
client, reads the plugin's config file section, and runs the plugin's KV event
subscriber. Finally aspen-hello's own tests pass there with the ``aspen.testing`` fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aspen
from aspen.errors import AspenError, UnavailableError
from aspen.testing import free_node_port, wait_for

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Seconds allowed for building wheels and installing them into the fresh venv.
INSTALL_TIMEOUT = 600
#: Seconds a node process has to start serving.
START_TIMEOUT = 60


def _run(*argv: str | Path, timeout: float = INSTALL_TIMEOUT, **kwargs) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding aspen-core, aspen-hello and aspen-broken, installed from wheels."""
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build the wheels (./test installs it)"
    tmp = tmp_path_factory.mktemp("contract")
    wheels = tmp / "wheels"
    for project in (ROOT / "core", HERE / "aspen-hello", HERE / "aspen-broken"):
        _run(uv, "build", "--wheel", "--quiet", "--out-dir", wheels, project)
    constraints = tmp / "constraints.txt"
    constraints.write_text(
        _run(
            uv,
            "export",
            "--frozen",
            "--no-hashes",
            "--all-packages",
            "--no-emit-workspace",
            cwd=ROOT,
        )
    )
    venv = tmp / "venv"
    _run(uv, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "-c",
        constraints,
        "pytest",
        *sorted(wheels.glob("*.whl")),
    )
    where = _run(python, "-c", "import aspen, aspen_hello; print(aspen.__file__)")
    assert where.startswith(str(venv)), f"aspen imported from {where}, not the fresh venv"
    for package in ("aspen", "aspen_hello"):
        marker = f"import {package}, pathlib; print(pathlib.Path({package}.__file__).parent)"
        typed = Path(_run(python, "-c", marker).strip()) / "py.typed"
        assert typed.is_file(), f"the {package} wheel does not ship py.typed"
    return venv / "bin"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test's environment without Aspen or workspace settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASPEN_", "UV_", "VIRTUAL_ENV", "PYTHON"))
    }
    return {**env, "ASPEN_DATA_DIR": str(tmp / "default-data"), **extra}


def test_plugins_lists_hello_loaded_and_broken_failed(venv_bin, tmp_path):
    proc = subprocess.run(
        [venv_bin / "aspen", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    infos = {info["name"]: info for info in json.loads(proc.stdout)}
    hello, broken = infos["hello"], infos["broken"]
    assert (hello["status"], hello["distribution"], hello["version"]) == (
        "loaded",
        "aspen-hello",
        "0.1.0",
    )
    assert hello["error"] == ""
    assert set(hello["hooks"]) == {
        "aspen_cli_commands",
        "aspen_config_sections",
        "aspen_on_kv_event",
        "aspen_rpc_handlers",
    }
    assert (broken["status"], broken["distribution"]) == ("failed", "aspen-broken")
    assert broken["error"] == (
        "import failed: ImportError: aspen-broken needs libbroken, which is not installed"
    )
    assert "Traceback" not in proc.stderr


class RunningNode:
    """The venv's ``aspen node start`` as a process, and how to reach it."""

    def __init__(self, bin_dir: Path, tmp: Path) -> None:
        self.bin_dir = bin_dir
        self.data_dir = tmp / "node"
        self.endpoint = f"127.0.0.1:{free_node_port()}"
        self.log = tmp / "node.log"
        self.config = tmp / "aspen.toml"
        self.config.write_text('[hello]\ngreeting = "Howdy"\n')
        self.env = _env(tmp)
        self.proc: subprocess.Popen | None = None

    @property
    def token(self) -> str:
        """The node's root token."""
        return (self.data_dir / "root-token").read_text().strip()

    def start(self) -> None:
        """Start the process and wait until it answers."""
        argv = [
            self.bin_dir / "aspen",
            "node",
            "start",
            "--data-dir",
            self.data_dir,
            "--listen",
            self.endpoint,
            "--config",
            self.config,
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)

        def serving() -> bool:
            assert self.proc.poll() is None, f"node exited:\n{self.log.read_text()}"
            with aspen.connect(self.endpoint, token=self.token, timeout=2) as c:
                return bool(c.status())

        wait_for(serving, timeout=START_TIMEOUT, interval=0.1, ignore=(AspenError, OSError))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the venv's ``aspen`` against this node."""
        env = {**self.env, "ASPEN_ENDPOINT": self.endpoint, "ASPEN_TOKEN": self.token}
        return subprocess.run(
            [self.bin_dir / "aspen", *args], capture_output=True, text=True, env=env, timeout=60
        )

    def stop(self) -> int:
        """SIGTERM (as a service manager would) and return the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def node(venv_bin: Path, tmp_path: Path) -> Iterator[RunningNode]:
    """A node process of the fresh venv, with both plugins installed."""
    running = RunningNode(venv_bin, tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_node_serves_the_plugin_despite_the_broken_one(node):
    greet = node.cli("hello", "greet", "Bob")
    assert (greet.returncode, greet.stdout, greet.stderr) == (0, "Howdy, Bob!\n", "")

    with aspen.connect(node.endpoint, token=node.token) as c:
        assert c.call("hello.greet", {"name": "Ann"}) == {"greeting": "Howdy, Ann!"}
        with pytest.raises(AspenError) as bad:
            c.call("hello.greet", {"name": 42})
        assert bad.value.code == "invalid_argument"
        with pytest.raises(UnavailableError) as missing:
            c.call("broken.anything", {})
        assert missing.value.details.get("plugin") == "broken"

        put = node.cli("--json", "kv", "put", "colour", "blue")
        assert put.returncode == 0, put.stderr
        revision = json.loads(put.stdout)["revision"]
        seen = wait_for(
            lambda: c.kv.get(b"/_aspen/hello/seen/colour"),
            timeout=10,
            message="aspen-hello recorded the key it saw",
        )
        assert seen.value == str(revision).encode()

        plugins = {p["name"]: p["status"] for p in c.status()["plugins"]}
        assert plugins == {"broken": "failed", "hello": "loaded"}

    assert node.cli("kv", "get", "colour").stdout == "blue"
    assert node.stop() == 0
    log = node.log.read_text()
    assert "warning: plugin 'broken' failed: import failed: ImportError" in log
    assert "Traceback" not in log


def test_the_plugins_own_tests_pass_with_the_aspen_fixtures(venv_bin, tmp_path):
    """pytest finds the fixtures through aspen-core's ``pytest11`` entry point."""
    tests = tmp_path / "hello-tests"
    shutil.copytree(HERE / "aspen-hello" / "tests", tests)
    (tests / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    proc = subprocess.run(
        [venv_bin / "python", "-m", "pytest", "-q", "--strict-markers", tests],
        capture_output=True,
        text=True,
        cwd=tests,
        env=_env(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout

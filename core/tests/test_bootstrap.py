"""scripts/bootstrap (what ./start and ./test run first), on a fresh environment as a new
user meets it: it says what it installs, and a later run keeps a plugin the user installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: Seconds one bootstrap or install may take (packages come from uv's cache, or PyPI).
INSTALL_SECONDS = 600


def _run(argv: list[str | os.PathLike[str]], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=INSTALL_SECONDS,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def test_bootstrap_says_what_it_installs_and_keeps_user_plugins(tmp_path):
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed (./test installs it)"
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "ASPEN_"))}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    bootstrap = ["bash", "-c", '. scripts/bootstrap && echo "UV=$UV"']

    first = _run(bootstrap, env)
    assert "bootstrap: first run: installing into" in first.stderr
    plugins = " ".join(f"aspen-{p.name}" for p in sorted((ROOT / "plugins").glob("*/")))
    assert f"aspen-core and the plugins ({plugins})" in first.stderr
    assert (venv / "bin" / "aspen").exists()

    # a user installs their own plugin into the environment ./start runs
    hello = ROOT / "tests" / "plugin_contract" / "aspen-hello"
    _run([uv, "pip", "install", "--quiet", "--python", venv / "bin" / "python", hello], env)
    again = _run(bootstrap, env)
    assert "first run" not in again.stderr
    check = [venv / "bin" / "python", "-c", "import aspen_hello, aspen_hooks"]
    assert _run(check, env).returncode == 0  # still there after the next ./start or ./test

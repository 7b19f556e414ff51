"""The hardened shell job type on its own (real processes, no cluster): allow-list,
clean environment, working directory, rlimits, output caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aspen_jobs.shell import ShellPolicy, run_shell
from aspen_jobs.types import JobContext, JobFailed


def _run(command: str, policy: ShellPolicy, **payload: Any) -> dict[str, Any]:
    job = {
        "id": "j1",
        "queue": "q",
        "attempt_count": 1,
        "timeout": 30.0,
        "payload": {"command": command, **payload},
    }
    return anyio.run(run_shell, JobContext(job=job, policy=policy))  # type: ignore[no-any-return]


def test_an_allowed_command_runs_and_others_are_refused(tmp_path: Path):
    policy = ShellPolicy(allow=("echo",), workdir=str(tmp_path))
    assert _run("echo hello", policy)["stdout"] == "hello\n"
    with pytest.raises(JobFailed, match=r"'rm' .* is not allowed") as info:
        _run("rm -rf x", policy)
    assert info.value.permanent and info.value.command == "rm -rf x"
    with pytest.raises(JobFailed, match="chains or substitutes"):
        _run("echo a; rm -rf x", policy)


def test_the_environment_is_clean_and_the_directory_confined(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    (tmp_path / "sub").mkdir()
    policy = ShellPolicy(allow=("*",), env_allow=("PATH",), workdir=str(tmp_path))
    env = _run("env", policy)["stdout"]
    names = {line.split("=", 1)[0] for line in env.splitlines()}
    assert "SECRET_TOKEN" not in names and "HOME" not in names
    assert {"PATH", "ASPEN_JOB_ID", "ASPEN_JOB_PAYLOAD"} <= names
    assert _run("pwd", policy, cwd="sub")["stdout"].strip() == str(tmp_path / "sub")
    with pytest.raises(JobFailed, match="not a directory inside"):
        _run("pwd", policy, cwd="../..")


def test_rlimits_and_output_caps_apply(tmp_path: Path):
    policy = ShellPolicy(allow=("*",), workdir=str(tmp_path), max_files=32, max_output=1000)
    assert _run("ulimit -n", policy)["stdout"].strip() == "32"
    out = _run("head -c 100000 /dev/zero", policy)["stdout"]
    assert "[output truncated: kept 1000 of 100000 bytes]" in out
    with pytest.raises(JobFailed, match="exit status 3") as info:
        _run("exit 3", policy)
    assert info.value.exit_code == 3

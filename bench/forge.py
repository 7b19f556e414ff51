"""aspen-forge vs git's own servers: clone and push of the click history (3,329 commits).

Same run, same machine: Aspen (1 and 3 nodes, git smart HTTP served by aspen-forge) vs
``git daemon --export-all`` vs ``git http-backend`` behind a tiny threaded CGI server
(below), with a local ``git clone --no-local`` as the floor. Each server gets:

* **push**: the click history (branches main and stable) into an empty repository;
* **clone**: a full ``git clone --bare`` of it;
* **fetch 1**: one new commit pushed, then ``git fetch`` of it in an existing clone
  (latency of the fetch);
* **8 clones**: eight concurrent full clones (wall time).

Medians of ``--repeat`` rounds; ratios to http-backend. Goal (issue 13): clone within 2x of
http-backend, push within 3x. Run:

    .venv/bin/python bench/forge.py [--repeat 3] [--nodes 1,3] [--json bench/results/forge.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "forge" / "tests"))

from forge_git import CLICK_BUNDLE as BUNDLE  # noqa: E402  (the tests' helpers)
from forge_git import ForgeCluster, git_env  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Git:
    def __init__(self, home: Path) -> None:
        self.env = git_env(home)

    def __call__(self, *args: str, cwd: Path | None = None, token: str | None = None) -> str:
        extra = ["-c", f"http.extraHeader=Authorization: Bearer {token}"] if token else []
        done = subprocess.run(
            ["git", *extra, *args], cwd=cwd, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr}")
        return done.stdout


# ---------------------------------------------------------------------- http-backend (CGI)
class CgiHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` per request as CGI, streaming both bodies."""

    protocol_version = "HTTP/1.1"
    project_root = ""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": self.project_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "bench",
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("content-type", ""),
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        if self.headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["content-encoding"]
        if self.headers.get("git-protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["git-protocol"]
        length = self.headers.get("content-length")
        if length is not None:
            env["CONTENT_LENGTH"] = length
        proc = subprocess.Popen(
            ["git", "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None

        def feed() -> None:
            try:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        proc.stdin.write(self.rfile.read(size))  # type: ignore[union-attr]
                        self.rfile.readline()
                elif length:
                    left = int(length)
                    while left:
                        piece = self.rfile.read(min(left, 65536))
                        if not piece:
                            break
                        proc.stdin.write(piece)  # type: ignore[union-attr]
                        left -= len(piece)
            finally:
                proc.stdin.close()  # type: ignore[union-attr]

        feeder = threading.Thread(target=feed)
        feeder.start()
        status, headers = 200, []
        while True:
            line = proc.stdout.readline().rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            piece = proc.stdout.read1(65536)
            if not piece:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")
        feeder.join()
        proc.wait()


@contextlib.contextmanager
def http_backend(root: Path) -> Iterator[str]:
    handler = type("Handler", (CgiHandler,), {"project_root": str(root)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@contextlib.contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr",
            f"--base-path={root}", f"--port={port}", "--listen=127.0.0.1", str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    try:
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def aspen_forge(data_dir: Path, nodes: int) -> Iterator[tuple[Callable[[str], str], str, Any]]:
    sys.path.insert(0, str(ROOT / "plugins" / "forge" / "tests"))

    from aspen.testing import local_cluster

    env = {"ASPEN_FORGE_HTTP_LISTEN": "127.0.0.1:0"}
    with local_cluster(data_dir, nodes, plugins=["forge"], env=env) as cluster:
        cluster.leader_index()
        forge = ForgeCluster(cluster)
        yield (lambda repo: forge.url(1, repo)), cluster.token, forge


# ---------------------------------------------------------------------- the measures
def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    git: Git,
    work: Path,
    click: Path,
    url_of: Callable[[str], str],
    create: Callable[[str], None],
    token: str | None,
    round_no: int,
) -> dict[str, float]:
    """push, clone, fetch-1 and 8 concurrent clones against one server."""
    repo = f"bench/click{round_no}"
    create(repo)
    url = url_of(repo)
    result: dict[str, float] = {}
    result["push"] = timed(lambda: git("push", "-q", url, "main", "stable", cwd=click, token=token))
    target = work / f"clone{round_no}"
    result["clone"] = timed(lambda: git("clone", "-q", "--bare", url, str(target), token=token))
    editor = work / f"edit{round_no}"
    git("clone", "-q", "-b", "main", url, str(editor), token=token)
    (editor / "NEW.txt").write_text(f"round {round_no}\n")
    git("add", "NEW.txt", cwd=editor)
    git("commit", "-q", "-m", "one more", cwd=editor)
    git("push", "-q", "origin", "HEAD:main", cwd=editor, token=token)
    spec = "+refs/heads/*:refs/heads/*"
    result["fetch1"] = timed(lambda: git("fetch", "-q", "origin", spec, cwd=target, token=token))
    many = [work / f"many{round_no}-{i}" for i in range(8)]

    def eight() -> None:
        errors: list[BaseException] = []

        def clone(path: Path) -> None:
            try:
                git("clone", "-q", "--bare", url, str(path), token=token)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=clone, args=(p,)) for p in many]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{len(errors)} of 8 clones failed: {errors[0]}")

    result["clone8"] = timed(eight)
    for p in [target, editor, *many]:
        shutil.rmtree(p, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", default="1,3")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "forge.json")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="forge-bench-") as tmp:
        base = Path(tmp)
        git = Git(base / "home")
        click = base / "click.git"
        git("clone", "-q", "--bare", str(BUNDLE), str(click))
        floor = [
            timed(
                lambda i=i: git(
                    "clone", "-q", "--bare", "--no-local", str(click), str(base / f"floor{i}")
                )
            )
            for i in range(args.repeat)
        ]
        rounds["local clone --no-local"] = [{"clone": t} for t in floor]
        served = base / "served"
        served.mkdir()

        def create_bare(repo: str) -> None:
            git("init", "-q", "--bare", str(served / f"{repo}.git"))
            git("config", "http.receivepack", "true", cwd=served / f"{repo}.git")

        work = base / "work"
        work.mkdir()
        with http_backend(served) as url:
            rounds["git http-backend"] = [
                measure(git, work, click, lambda r: f"{url}/{r}.git", create_bare, None, i)
                for i in range(args.repeat)
            ]
        with git_daemon(served) as url:
            rounds["git daemon"] = [
                measure(git, work, click, lambda r: f"{url}/{r}.git", create_bare, None, 100 + i)
                for i in range(args.repeat)
            ]
        for nodes in [int(n) for n in args.nodes.split(",") if n]:
            with aspen_forge(base / f"aspen{nodes}", nodes) as (url_of, token, forge):

                def create(repo: str, forge: Any = forge) -> None:
                    forge.call("forge.repo_create", {"repo": repo})

                rounds[f"aspen-forge {nodes} node{'s' if nodes > 1 else ''}"] = [
                    measure(git, work, click, url_of, create, token, 200 + i)
                    for i in range(args.repeat)
                ]
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()
    }
    ref = medians["git http-backend"]
    print(
        f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; medians of {args.repeat}"
    )
    print(
        f"{'server':28} {'push s':>8} {'clone s':>8} {'fetch1 s':>9} {'8 clones s':>11}"
        "   ratio to http-backend (push, clone)"
    )
    for name, m in medians.items():
        cells = [f"{m[k]:8.3f}" if k in m else f"{'':8}" for k in ("push", "clone")]
        cells.append(f"{m['fetch1']:9.3f}" if "fetch1" in m else " " * 9)
        cells.append(f"{m['clone8']:11.3f}" if "clone8" in m else " " * 11)
        ratio = ", ".join(f"{m[k] / ref[k]:.2f}x" for k in ("push", "clone") if k in m)
        print(f"{name:28} {' '.join(cells)}   {ratio}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"medians": medians, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()

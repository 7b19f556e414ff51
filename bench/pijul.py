"""aspen-pijul figures: record / apply / output time vs history length, unrecord cost
(replay vs the pristine snapshot), clone of a 1,000-change repository from a 3-node
cluster; git on the same edits in the same table.

    .venv/bin/python bench/pijul.py [--sizes 100,1000,5000] [--files 20] [--clone 1000] [--no-git]

One history is grown edit by edit (a line inserted at a pseudo-random place of one of
``--files`` files, every third edit also deleting one) and measured when it reaches each
size, so history length and file size are separate axes (``--files 1``: one file that
grows with the history, as before). Times are medians of a few
repetitions in milliseconds; ratios pijul/git are from the same run.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aspen_pijul.model.change import Change
from aspen_pijul.model.channel import Channel
from aspen_pijul.model.record import Meta, record
from aspen_pijul.model.sandbox import Sandbox


def _ms(f, reps: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _edit(rng: random.Random, lines: list[bytes], i: int) -> None:
    lines.insert(rng.randint(0, len(lines)), b"line %d of the poem\n" % i)
    if i % 3 == 2 and len(lines) > 1:
        del lines[rng.randrange(len(lines))]


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--clone", type=int, default=1000, help="changes in the cloned repo (0: skip)")
    ap.add_argument("--files", type=int, default=20, help="files the edits are spread over")
    ap.add_argument("--no-git", action="store_true")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    use_git = not args.no_git and shutil.which("git") is not None
    tmp = Path(tempfile.mkdtemp(prefix="pijul-bench-"))
    gdir = tmp / "git"
    gdir.mkdir()
    if use_git:
        _git("init", "-q", cwd=gdir)
        _git("config", "user.email", "b@example.com", cwd=gdir)
        _git("config", "user.name", "bench", cwd=gdir)
    rng = random.Random(1)
    s = Sandbox()
    files: dict[str, list[bytes]] = {f"f{i:03d}.txt": [] for i in range(args.files)}
    rows = []
    clone_history: list[str] = []
    n = 0
    for size in sizes:
        while n < size:
            path = rng.choice(sorted(files))
            _edit(rng, files[path], n)
            s.record("main", _tree(files), f"edit {n}")
            if use_git:
                (gdir / path).write_bytes(b"".join(files[path]))
                _git("add", path, cwd=gdir)
                _git("commit", "-q", "--allow-empty", "-m", f"edit {n}", cwd=gdir)
            n += 1
            if n == args.clone:
                clone_history = list(s.channel("main").order)
        ch = s.channel("main")
        path = rng.choice(sorted(files))
        nxt = {**files, path: list(files[path])}
        _edit(rng, nxt[path], n)
        tree = _tree(nxt)
        change = record(ch, tree, Meta("next", ("b",), n))
        assert change is not None
        s.store.put(change)
        row = _measure(s, ch, change, tree, path, n, gdir if use_git else None)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.clone and clone_history:
        rows.append(_clone_figures(tmp, s, clone_history, gdir if use_git else None))
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    json.dump(rows, sys.stdout, indent=1)
    print()


def _tree(files: dict[str, list[bytes]]) -> dict[str, bytes]:
    return {p: b"".join(lines) for p, lines in files.items()}


def _apply_unrecord(ch: Channel, h: str) -> None:
    """Apply ``h`` then unrecord it (the channel is left as it was)."""
    ch.apply(h)
    ch.unrecord(h)


def _measure(
    s: Sandbox,
    ch: Channel,
    change: Change,
    tree: dict[str, bytes],
    path: str,
    n: int,
    gdir: Path | None,
) -> dict[str, float]:
    """The figures of one history length (``path``: the file the measured change edits;
    ``output_ms``: printing every file afresh, ``output_one_ms``: after one edit)."""
    inode = ch.file_inodes()[path]

    def output_one() -> None:
        _apply_unrecord(ch, change.hash)
        ch.output_lines(inode)

    row: dict[str, float] = {
        "changes": len(ch.order),
        "edits": n,
        "files": len(tree),
        "file_lines": tree[path].count(b"\n"),
        "total_lines": sum(d.count(b"\n") for d in tree.values()),
        "record_ms": _ms(lambda: record(ch, tree, Meta("x", ("b",), n))),
        "apply_ms": _ms(lambda: _apply_unrecord(ch, change.hash)),
        "output_ms": _ms(lambda: _fresh_output(ch)),
        "output_one_ms": _ms(output_one),
        "unrecord_replay_ms": _ms(lambda: Channel.replay("r", s.store, ch.order), 1),
        "unrecord_snapshot_ms": _ms(lambda: pickle.loads(pickle.dumps(ch.snapshot())), 1),
    }
    if gdir is not None:
        (gdir / path).write_bytes(tree[path])

        def commit() -> None:
            _git("commit", "-q", "--allow-empty", "-am", "next", cwd=gdir)
            _git("reset", "-q", "--hard", "HEAD~1", cwd=gdir)

        row["git_commit_and_reset_ms"] = _ms(commit, 3)
        row["git_show_ms"] = _ms(lambda: _git("show", f"HEAD:{path}", cwd=gdir), 3)
    return row


def _fresh_output(ch: Channel) -> None:
    """Print every file of ``ch`` without the per-file cache (what a cold start costs)."""
    from aspen_pijul.model.output import output_file

    for inode in ch.file_inodes().values():
        output_file(ch.graph, inode, ch.known)


def _clone_figures(tmp: Path, s: Sandbox, history: list[str], gdir: Path | None) -> dict:  # type: ignore[type-arg]
    """Push ``history`` to a 3-node cluster, then time a clone (pull into an empty repo)."""
    from aspen.testing.cluster import local_cluster
    from aspen_pijul.repo import Repo
    from aspen_pijul.sync import pull, push

    src = Repo.init(tmp / "src")
    for h in history:
        src.store.put(s.store.get(h))
    src.save_channel(Channel.replay("main", src.store, history))
    out: dict = {"clone_changes": len(history)}  # type: ignore[type-arg]
    with local_cluster(tmp / "cluster", 3, plugins=["pijul"]) as cluster, cluster.client() as c:
        t = time.perf_counter()
        push(src, c, "bench", "main", "main")
        out["push_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        dst = Repo.init(tmp / "dst")
        ch = pull(dst, c, "bench", "main", "main")
        dst.save_channel(ch)
        dst.write_out(ch.output())
        out["clone_ms"] = (time.perf_counter() - t) * 1000
    if gdir is not None:
        t = time.perf_counter()
        subprocess.run(
            ["git", "clone", "-q", "--no-local", str(gdir), str(tmp / "gclone")], check=True
        )
        out["git_clone_local_ms"] = (time.perf_counter() - t) * 1000
        out["git_clone_note"] = f"git history has {sizes_note(gdir)} commits (the full run)"
    return out


def sizes_note(gdir: Path) -> str:
    """The number of commits in the git repository."""
    r = subprocess.run(
        ["git", "rev-list", "--count", "HEAD"], cwd=gdir, capture_output=True, text=True
    )
    return r.stdout.strip()


if __name__ == "__main__":
    main()

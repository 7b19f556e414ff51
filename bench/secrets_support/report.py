"""The results table: one row per (system, storage, interface, nodes, op, concurrency),
the median of the repeats, with Aspen/OpenBao ratios against each OpenBao set-up of the
same size."""

from __future__ import annotations

import math
import statistics
from typing import Any

from secrets_support.load import OPS

Row = dict[str, Any]
#: Fields that identify a measured point (repeats share them).
POINT = ("system", "storage", "interface", "http_client", "nodes", "op", "concurrency")
#: Fields reported as the median of the repeats.
MEDIANS = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "server_cpu_pct_of_one_core",
    "loadgen_cpu_pct_of_one_core",
    "other_cpu_pct_of_one_core",
)


def merge_repeats(rows: list[Row]) -> list[Row]:
    """One row per point: medians of :data:`MEDIANS` over its quiet runs (over all of
    them when every run was noisy), errors added up, ``repeats``, ``noisy``."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(f) for f in POINT), []).append(r)
    merged = []
    for point, runs in groups.items():
        group = [r for r in runs if not r.get("noisy")] or runs
        row = dict(zip(POINT, point, strict=True))
        row.update({f: statistics.median(r[f] for r in group) for f in MEDIANS})
        row["errors"] = sum(r["errors"] for r in group)
        row["repeats"] = len(group)
        row["noisy"] = all(r.get("noisy") for r in group)
        merged.append(row)
    return merged


def _order(r: Row) -> tuple:
    return (
        r["nodes"],
        OPS.index(r["op"]),
        r["concurrency"],
        r["system"] == "openbao",
        r["system"],
        r["interface"],
        r["storage"],
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not math.isnan(a) and not math.isnan(b) else "-"


def table(rows: list[Row]) -> str:
    """A Markdown table of ``rows`` (repeats merged; CPU in % of one core, "other" being
    processes that are neither servers nor load generator); Aspen rows carry ``ops/s`` and
    ``p99`` ratios to the OpenBao HTTP rows of the same nodes, op and concurrency (one
    column pair per OpenBao storage)."""
    rows = merge_repeats(rows)
    bao = {
        (r["storage"], r["nodes"], r["op"], r["concurrency"]): r
        for r in rows
        if r["system"] == "openbao"
    }
    storages = sorted({k[0] for k in bao}, key=lambda s: s != "raft")
    head = ["system", "storage", "interface", "nodes", "op", "C", "ops/s", "p50 ms", "p99 ms"]
    head += ["errors", "server CPU %", "loadgen CPU %", "other CPU %"]
    for s in storages:
        head += [f"ops vs bao-{s}", f"p99 vs bao-{s}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=_order):
        client = f" ({r['http_client']})" if r.get("http_client") else ""
        cells = [r["system"], r["storage"], r["interface"] + client, str(r["nodes"]), r["op"]]
        cells += [str(r["concurrency"]), f"{r['ops_per_s']:.0f}", f"{r['p50_ms']:.2f}"]
        cells += [f"{r['p99_ms']:.2f}", str(r["errors"])]
        cells += [f"{r['server_cpu_pct_of_one_core']:.0f}"]
        cells += [f"{r['loadgen_cpu_pct_of_one_core']:.0f}"]
        cells += [f"{r['other_cpu_pct_of_one_core']:.0f}" + (" noisy" if r["noisy"] else "")]
        for s in storages:
            peer = bao.get((s, r["nodes"], r["op"], r["concurrency"]))
            if r["system"] != "openbao" and peer:
                cells += [_ratio(r["ops_per_s"], peer["ops_per_s"])]
                cells += [_ratio(r["p99_ms"], peer["p99_ms"])]
            else:
                cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Table and plot of bench/scale.py's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (row field, column title, scale, format) of the printed table.
COLUMNS = [
    ("load_keys_per_s", "load k/s", 1e-3, "{:.1f}"),
    ("get_p50_ms", "get p50", 1, "{:.2f}"),
    ("get_p99_ms", "get p99", 1, "{:.2f}"),
    ("put_p50_ms", "put p50", 1, "{:.2f}"),
    ("put_p99_ms", "put p99", 1, "{:.2f}"),
    ("range_start_p50_ms", "rng start", 1, "{:.2f}"),
    ("range_middle_p50_ms", "rng mid", 1, "{:.2f}"),
    ("range_end_p50_ms", "rng end", 1, "{:.2f}"),
    ("count_ms", "count ms", 1, "{:.0f}"),
    ("watch_catchup_s", "watch s", 1, "{:.2f}"),
    ("snapshot_create_s", "snap s", 1, "{:.2f}"),
    ("join_s", "join s", 1, "{:.1f}"),
    ("join_peak_rss", "join MiB", 1 / 2**20, "{:.0f}"),
    ("restart_s", "restart s", 1, "{:.2f}"),
    ("rss_bytes", "RSS MiB", 1 / 2**20, "{:.0f}"),
    ("rss_anon_bytes", "anon MiB", 1 / 2**20, "{:.0f}"),
    ("peak_rss_bytes", "peak MiB", 1 / 2**20, "{:.0f}"),
    ("disk_bytes_per_key", "disk B/key", 1, "{:.0f}"),
    ("disk_after_snapshot_per_key", "snap B/key", 1, "{:.0f}"),
    ("keepalive_p50_ms", "ka p50", 1, "{:.2f}"),
    ("idle_cpu_pct", "idle cpu%", 1, "{:.1f}"),
]

#: Fields plotted against size (one panel each).
PLOTTED = [
    ("get_p50_ms", "get p50 (ms)"),
    ("put_p50_ms", "put p50 (ms)"),
    ("range_middle_p50_ms", "range page, limit 100, middle (ms)"),
    ("count_ms", "count of the prefix (ms)"),
    ("watch_catchup_s", "watch catch-up, 100k events (s)"),
    ("restart_s", "restart (s)"),
    ("join_s", "new node catch-up (s)"),
    ("rss_anon_bytes", "anonymous RSS after load (bytes)"),
    ("disk_bytes_per_key", "disk bytes per key"),
]


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one Markdown row per measured (target, nodes, size)."""
    cols = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    print("| target | nodes | keys | " + " | ".join(c[1] for c in cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    for r in sorted(rows, key=lambda r: (r["nodes"], r["size"], r["target"])):
        cells = [
            fmt.format(r[field] * scale) if field in r else "-" for field, _, scale, fmt in cols
        ]
        print(f"| {r['target']} | {r['nodes']} | {r['size']:,} | " + " | ".join(cells) + " |")
    print("(2 shared cores for servers and client; ms unless noted; one client, random keys)")


def plot(rows: list[dict[str, Any]], out: Path) -> Path:
    """Draw each PLOTTED field against size (log x), one line per target and cluster size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(15, 12))
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["target"], r["nodes"]), []).append(r)
    for ax, (field, title) in zip(axes.flat, PLOTTED, strict=False):
        for (target, nodes), rs in sorted(series.items()):
            pts = sorted((r["size"], r[field]) for r in rs if field in r)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{target} {nodes}n")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("keys")
        if field == "disk_bytes_per_key":  # etcd's preallocated WAL dwarfs small sizes
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.suptitle("Cost vs keyspace size (100-byte values; 2 shared cores)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out

#!/usr/bin/env python3
"""Plots p99 latency against dataset size from bench/results/<tasks>.tsv.

    python3 bench/plot.py            # writes bench/p99-vs-size.png
"""
import csv
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
QUERIES = ["default_page", "task_count_asc", "task_state", "name_like_batch", "last_page", "unpaged_1000"]


def main() -> int:
    data = {}  # (backend, query) -> [(tasks, p99)]
    for path in glob.glob(os.path.join(HERE, "results", "*.tsv")):
        name = os.path.basename(path)[:-4]
        if not name.isdigit():
            continue
        tasks = int(name)
        with open(path, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["query"] in QUERIES and row["p99_ms"] not in ("", "-"):
                    data.setdefault((row["backend"], row["query"]), []).append((tasks, float(row["p99_ms"])))
    if not data:
        print("no results in bench/results", file=sys.stderr)
        return 1
    backends = sorted({b for b, _ in data})
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), sharey=True, squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for q in QUERIES:
            pts = sorted(data.get((backend, q), []))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=q)
        ax.set_xscale("log")
        ax.set_xlabel("tasks in the dataset (largest project: tasks/100 batches)")
        ax.set_title(f"{backend}: p99 at 32 connections")
        ax.axhline(20, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("p99 latency (ms)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(HERE, "p99-vs-size.png")
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

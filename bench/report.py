#!/usr/bin/env python3
"""Prints bench/results/<tasks>.tsv as a Markdown table.

    python3 bench/report.py 1000000
"""
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "1000000"
    rows = list(csv.DictReader(open(os.path.join(HERE, "results", f"{name}.tsv"), newline=""), delimiter="\t"))
    print("| backend | query | reply bytes | req/s | p50 ms | p99 ms | ceiling req/s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["query"] in ("import", "unpaged_rss_growth_mb"):
            continue
        print(f"| {r['backend']} | {r['query']} | {r['bytes']} | {float(r['rps']):,.0f} | {r['p50_ms']} | {r['p99_ms']} "
              f"| {float(r['ceiling_rps']):,.0f} | {r['ratio']} |")
    for r in rows:
        if r["query"] == "import":
            print(f"\nImport on {r['backend']}: {int(float(r['rps'])):,} tasks/s.", end="")
    print()
    for r in rows:
        if r["query"] == "unpaged_rss_growth_mb":
            print(f"\n`is_paged=false` over {r['bytes']} batches on {r['backend']}: peak RSS growth {r['rps']} MB.", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The lifecycle's speed on SQLite and PostgreSQL, each against a baseline
# taken in the same run (bench/lifecycle.py has the details):
#
#   bench/lifecycle.sh [--tasks N] [--latency N] [--slots S] [--workers W] [--backends sqlite,postgres]
#
# create -> running latency on an idle system (one serve, default settings,
# one real worker), and the throughput of tasks whose executor exits at once
# as a ratio to `xargs -P S` spawning the same executor.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=2000 LATENCY=50 SLOTS=64 WORKERS=4 BACKENDS=sqlite,postgres
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
    case "$1" in
        --tasks) TASKS=$2; shift 2 ;;
        --latency) LATENCY=$2; shift 2 ;;
        --slots) SLOTS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --release --quiet --bin taskcenter
WORK=${BENCH_WORK:-target/bench}
mkdir -p "$WORK"
args=(--tasks "$TASKS" --latency "$LATENCY" --slots "$SLOTS" --workers "$WORKERS")
for backend in ${BACKENDS//,/ }; do
    case "$backend" in
        sqlite)
            db="$WORK/lifecycle.db"
            rm -f "$db" "$db-wal" "$db-shm"
            url=$db ;;
        postgres)
            name="tc_lifecycle_bench_$$"
            psql "$PG_ADMIN" -qc "create database $name"
            url="${PG_ADMIN%/*}/$name" ;;
        *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
    echo "== $backend"
    python3 bench/lifecycle.py target/release/taskcenter "$url" "${args[@]}"
    if [ "$backend" = postgres ]; then
        psql "$PG_ADMIN" -qc "drop database if exists $name with (force)"
    fi
done

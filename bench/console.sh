#!/usr/bin/env bash
# The console's benchmarks, in one run on SQLite:
#
#   bench/console.sh [--tasks N] [--duration SECONDS] [--rounds R]
#
# 1. In the browser (headless Chromium over WebDriver, tests/console.rs
#    `console_bench`): with the dataset's largest project (N/100 batches;
#    10,000 at the default N), the time from navigation to the first page of
#    rows drawn, and from a task's state change to its batch's bar changing
#    on screen.
# 2. What watching consoles cost the list: wrk on the default page at 32
#    connections while one task of that page is stopped and started five
#    times a second, without and with 50 consoles long-polling the page
#    (bench/pollers.py, as the console does), alternating for R rounds;
#    prints both and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

TASKS=1000000
DURATION=10
ROUNDS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --tasks) TASKS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
PORT=18097
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port $PORT is in use; stop what holds it first" >&2
    exit 1
fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v chromedriver >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }
cargo build --release --quiet --bin taskcenter
BIN=target/release/taskcenter

WORK=${BENCH_WORK:-target/bench}
mkdir -p "$WORK"
DATA="$WORK/data-$TASKS.ndjson"
if [ ! -s "$DATA" ]; then
    "$BIN" generate --tasks "$TASKS" > "$DATA.tmp" && mv "$DATA.tmp" "$DATA"
fi
DB="$WORK/console-$TASKS.db"
rm -f "$DB" "$DB-wal" "$DB-shm"
"$BIN" --database-url "$DB" import "$DATA" 2>&1 | tail -n 1
TASKCENTER_DATABASE_URL="$DB" "$BIN" serve --listen "127.0.0.1:$PORT" --no-scheduler > "$WORK/console-serve.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
TOKEN=$("$BIN" --database-url "$DB" token issue --project p0)

echo "== browser"
CONSOLE_BENCH_ADDR="127.0.0.1:$PORT" CONSOLE_BENCH_TOKEN="$TOKEN" CONSOLE_BENCH_PROJECT=p0 \
    cargo test --quiet --test console -- --ignored --exact console_bench --nocapture 2>&1 |
    tee "$WORK/console-bench-test.log" | grep "^console_bench"

echo "== list throughput while the page changes 5 times a second, without and with 50 watching consoles"
URL="http://127.0.0.1:$PORT/v2/p0/batch-tasks"
rps() { wrk -t1 -c32 -d"${DURATION}s" -H "X-Auth-Token: $TOKEN" "$URL" | awk '/Requests\/sec/ {print $2}'; }
phase() {
    python3 bench/pollers.py "127.0.0.1:$PORT" p0 "$TOKEN" "$1" $((DURATION + 3)) > "$WORK/pollers.out" &
    local pid=$!
    sleep 2
    rps
    wait "$pid"
}
rest=() watched=()
for round in $(seq 1 "$ROUNDS"); do
    rest+=("$(phase 0)")
    r0=$(cat "$WORK/pollers.out")
    watched+=("$(phase 50)")
    echo "round $round: ${rest[-1]} req/s ($r0); ${watched[-1]} req/s ($(cat "$WORK/pollers.out"))"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
r=$(median "${rest[@]}") w=$(median "${watched[@]}")
echo "median: no console $r req/s, 50 consoles $w req/s, ratio $(awk -v a="$w" -v b="$r" 'BEGIN {printf "%.3f", a/b}')"

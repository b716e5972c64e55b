#!/usr/bin/env bash
# Benchmarks the batch-task list against a static-body ceiling, in one run.
#
#   bench/run.sh [--tasks N] [--duration SECONDS] [--backends sqlite,postgres]
#                [--list-source memory|database]
#
# Imports a generated dataset (N tasks; the largest project p0 holds N/100
# batches), starts `serve` on each backend, drives every query of
# bench/queries.tsv with wrk at 32 connections, serves a static JSON body of
# the same size from a bare axum handler as the ceiling, and prints per query
# and backend: requests/s, p50, p99 and the ratio to the ceiling. Also the
# import throughput, the peak RSS growth of `serve` during is_paged=false
# on the largest project, and signed (AK/SK) against token requests on the
# same query, back to back (the `signed_vs_token` line: signed rps, token rps
# in the ceiling column, their ratio). Results land in bench/results/<N>.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

TASKS=1000000
DURATION=10
BACKENDS=sqlite,postgres
CONNECTIONS=32
LIST_SOURCE=memory
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
while [ $# -gt 0 ]; do
    case "$1" in
        --tasks) TASKS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --backends) BACKENDS=$2; shift 2 ;;
        --list-source) LIST_SOURCE=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

for port in 18098 18099; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use (a previous run still going?); stop it first" >&2
        exit 1
    fi
done
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
python3 -c 'import huaweicloudsdkcore' 2>/dev/null || python3 -m pip install -q huaweicloudsdkcore
# Signed requests need a master key to seal access keys; one for this run.
TASKCENTER_MASTER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export TASKCENTER_MASTER_KEY
cargo build --release --quiet --bin taskcenter --example ceiling
BIN=target/release/taskcenter
CEILING=target/release/examples/ceiling

WORK=${BENCH_WORK:-target/bench}
mkdir -p "$WORK" bench/results
DATA="$WORK/data-$TASKS.ndjson"
if [ ! -s "$DATA" ]; then
    "$BIN" generate --tasks "$TASKS" > "$DATA.tmp" && mv "$DATA.tmp" "$DATA"
fi
OUT="bench/results/$TASKS.tsv"
[ "$LIST_SOURCE" = memory ] || OUT="bench/results/$TASKS-$LIST_SOURCE.tsv"
printf 'backend\tquery\tbytes\trps\tp50_ms\tp99_ms\tceiling_rps\tratio\n' > "$OUT"
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

# wrk's latency figures in milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }
drive() { # url token → "rps p50 p99"
    drive_with "$1" "X-Auth-Token: $2"
}
drive_with() { # url header... → "rps p50 p99"
    local url=$1 r h
    shift
    local args=()
    for h in "$@"; do args+=(-H "$h"); done
    r=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}" "$url")
    echo "$(echo "$r" | awk '/Requests\/sec/ {print $2}') $(echo "$r" | awk '$1=="50%" {print $2}' | to_ms) $(echo "$r" | awk '$1=="99%" {print $2}' | to_ms)"
}
wait_port() { for _ in $(seq 1 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

declare -A CEIL
ceiling_rps() { # bytes → rps of the static body of that size
    local size=$1
    if [ -z "${CEIL[$size]:-}" ]; then
        "$CEILING" --listen 127.0.0.1:18099 --size "$size" & local pid=$!
        wait_port http://127.0.0.1:18099/
        CEIL[$size]=$(drive http://127.0.0.1:18099/ none | awk '{print $1}')
        kill "$pid"; wait "$pid" 2>/dev/null || true
    fi
    echo "${CEIL[$size]}"
}

for backend in ${BACKENDS//,/ }; do
    case "$backend" in
        sqlite) rm -f "$WORK/bench.db"*; URL="$WORK/bench.db" ;;
        postgres)
            db="taskcenter_bench_$$"
            psql "$PG_ADMIN" -qAtc "drop database if exists $db with (force)" -c "create database $db"
            URL="${PG_ADMIN%/*}/$db" ;;
    esac
    import_log=$("$BIN" --database-url "$URL" import "$DATA" 2>&1 | tail -n 1)
    echo "[$backend] $import_log"
    printf '%s\timport\t-\t%s\t-\t-\t-\t-\n' "$backend" "$(echo "$import_log" | sed -E 's/.*\(([0-9]+) tasks\/s\).*/\1/')" >> "$OUT"
    # No scheduler: the dataset's imported tasks have no workers, and a
    # scheduler recovering a million of them would be measured, not the list.
    TASKCENTER_DATABASE_URL="$URL" "$BIN" serve --listen 127.0.0.1:18098 --list-source "$LIST_SOURCE" --no-scheduler > "$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
    wait_port http://127.0.0.1:18098/healthz
    declare -A TOKEN=()
    while IFS=$'\t' read -r name project query; do
        case "$name" in ''|\#*) continue ;; esac
        [ -n "${TOKEN[$project]:-}" ] || TOKEN[$project]=$("$BIN" --database-url "$URL" token issue --project "$project")
        url="http://127.0.0.1:18098/v2/$project/batch-tasks?$query"
        bytes=$(curl -s -H "X-Auth-Token: ${TOKEN[$project]}" "$url" | wc -c)
        read -r rps p50 p99 <<< "$(drive "$url" "${TOKEN[$project]}")"
        ceil=$(ceiling_rps "$bytes")
        ratio=$(awk -v a="$rps" -v b="$ceil" 'BEGIN {printf "%.2f", a/b}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$name" "$bytes" "$rps" "$p50" "$p99" "$ceil" "$ratio" | tee -a "$OUT"
    done < bench/queries.tsv
    # Signed requests against token requests, same query, back to back. The
    # signature is made once and replayed (valid for its 15-minute window),
    # so every request pays the full verification: canonical request, two
    # SHA-256 and an HMAC.
    printf 'bench-password\n' | "$BIN" --database-url "$URL" user create --project p0 bench > /dev/null
    keys=$("$BIN" --database-url "$URL" access-key create --user bench)
    ak=$(echo "$keys" | awk '$1=="access_key:" {print $2}')
    sk=$(echo "$keys" | awk '$1=="secret_key:" {print $2}')
    url="http://127.0.0.1:18098/v2/p0/batch-tasks"
    mapfile -t signed < <(python3 bench/sign.py "$ak" "$sk" 127.0.0.1:18098 /v2/p0/batch-tasks p0)
    bytes=$(curl -s "${signed[@]/#/-H}" "$url" | wc -c)
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${signed[@]/#/-H}" "$url")" = 200 ] || { echo "signed request refused" >&2; exit 1; }
    read -r trps _ _ <<< "$(drive "$url" "${TOKEN[p0]}")"
    read -r srps sp50 sp99 <<< "$(drive_with "$url" "${signed[@]}")"
    ratio=$(awk -v a="$srps" -v b="$trps" 'BEGIN {printf "%.2f", a/b}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" signed_vs_token "$bytes" "$srps" "$sp50" "$sp99" "$trps" "$ratio" | tee -a "$OUT"
    # Peak RSS growth of serve while it answers is_paged=false on p0.
    token=${TOKEN[p0]}
    rss_before=$(awk '/VmRSS/ {print $2}' /proc/$SERVER_PID/status)
    echo 5 > /proc/$SERVER_PID/clear_refs 2>/dev/null || true
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "X-Auth-Token: $token" "http://127.0.0.1:18098/v2/p0/batch-tasks?is_paged=false" > /dev/null
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$SERVER_PID/status)
    growth_mb=$(awk -v a="$hwm" -v b="$rss_before" 'BEGIN {printf "%.1f", (a-b)/1024}')
    batches=$(curl -s -H "X-Auth-Token: $token" "http://127.0.0.1:18098/v2/p0/batch-tasks?page_size=5" | sed -E 's/^\{"count":([0-9]+).*/\1/')
    echo "[$backend] is_paged=false over $batches batches: peak RSS growth ${growth_mb} MB"
    printf '%s\tunpaged_rss_growth_mb\t%s\t%s\t-\t-\t-\t-\n' "$backend" "$batches" "$growth_mb" >> "$OUT"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    if [ "$backend" = postgres ]; then psql "$PG_ADMIN" -qAtc "drop database if exists $db with (force)"; fi
done
echo "results: $OUT"
column -t -s $'\t' "$OUT"

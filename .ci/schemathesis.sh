#!/usr/bin/env bash
# Schemathesis (all checks, stateful included, a bounded number of examples)
# against a live `serve` of the debug build on DATABASE_URL, set up with a
# project p1, a service, a group, a source, a worker and a metrics token.
#
#   .ci/schemathesis.sh DATABASE_URL
#
# A failure is a case where the document and the server disagree (a valid
# request refused, an invalid one accepted, an undocumented status or
# shape) or a 5xx; .ci/run runs it on SQLite and on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=$1
BIN=target/debug/taskcenter
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TASKCENTER_DATABASE_URL=$DB
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" project create one --id p1 > /dev/null
"$BIN" service add --project p1 --name svc --version 1.0.0 --alg-name A --company C > /dev/null
ST_TOKEN=$("$BIN" token issue --project p1)
ST_WORKER=$("$BIN" workers add st-worker)
ST_METRICS=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export ST_TOKEN ST_WORKER ST_METRICS
"$BIN" serve --listen "127.0.0.1:$PORT" --metrics-token "$ST_METRICS" > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -s -o /dev/null "$BASE/healthz" && break; sleep 0.1; done
curl -s -H "X-Auth-Token: $ST_TOKEN" "$BASE/v2/p1/video-group" \
    -d '{"id":"group1","video_group_name":"group1","access_type":"cloud"}' > /dev/null
curl -s -H "X-Auth-Token: $ST_TOKEN" "$BASE/v2/p1/source" -d '{"id":"source1","video_source_name":"source1",
    "access_type":"cloud","type":"url","video_group_ids":["group1"],
    "type_config":"<type>URL</type><config><URL_ADDRESS>rtsp://s1/live</URL_ADDRESS></config>"}' > /dev/null

# `st`, through the interpreter that has the package (its script may not be on PATH).
python3 -c 'import sys; from schemathesis.cli import schemathesis; sys.argv[0] = "st"; sys.exit(schemathesis())' \
    --config-file .ci/schemathesis.toml run "$BASE/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance --max-examples "${ST_EXAMPLES:-25}" --seed "${ST_SEED:-1}" \
    --phases examples,coverage,fuzzing,stateful --no-color --max-failures 50 \
    --request-timeout 10 --warnings off --generation-database none 2>&1 | tee "${ST_LOG:-$WORK/st.log}" | tail -n 40
status=${PIPESTATUS[0]}
if grep -q "panicked" "$WORK/serve.log"; then
    echo "serve panicked:" >&2
    grep -B2 -A10 panicked "$WORK/serve.log" >&2
    exit 1
fi
exit "$status"

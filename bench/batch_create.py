#!/usr/bin/env python3
"""How long CreateBatchTask takes over G groups of 1,000 sources.

    bench/batch_create.py BIN DATABASE_URL [--groups 1,10,100] [--rounds 3]

Starts `BIN serve --no-scheduler` on a fresh database, creates max(G) groups of 1,000 sources
each over the API, then times CreateBatchTask over the first G groups (whole groups), R times
per G, alternating the sizes. Prints each G's times and median."""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("db")
ap.add_argument("--groups", default="1,10,100")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--port", type=int, default=18095)
a = ap.parse_args()
a.bin = os.path.abspath(a.bin)
if "://" not in a.db:
    a.db = os.path.abspath(a.db)
sizes = [int(g) for g in a.groups.split(",")]
env = dict(os.environ, TASKCENTER_DATABASE_URL=a.db, RUST_LOG="warn")
work = tempfile.mkdtemp(prefix="tc-batch-")
serve = subprocess.Popen([a.bin, "serve", "--listen", f"127.0.0.1:{a.port}", "--no-scheduler"], env=env, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)


def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    if r.status != 200:
        sys.exit(f"{method} {path}: {r.status} {raw[:300]!r}")
    return json.loads(raw)


try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.1)
    token = subprocess.run([a.bin, "token", "issue", "--project", "default"], env=env, cwd=work, check=True,
                           capture_output=True, text=True).stdout.strip()
    subprocess.run([a.bin, "service", "add", "--project", "default", "--name", "probe", "--version", "1.0.0",
                    "--alg-name", "Probe", "--company", "Bench"], env=env, cwd=work, check=True, capture_output=True)
    for g in range(max(sizes)):
        call("POST", "/v2/default/video-group", {"id": f"g{g}", "video_group_name": f"group{g}", "access_type": "cloud"})
        for i in range(1000):
            call("POST", "/v2/default/source", {"id": f"s{g}-{i}", "video_source_name": f"s{g}-{i}",
                                                 "access_type": "cloud", "url": f"rtsp://s{g}-{i}/live",
                                                 "video_group_ids": [f"g{g}"]})
    times = {g: [] for g in sizes}
    n = 0
    for _ in range(a.rounds):
        for g in sizes:
            n += 1
            t = time.time()
            r = call("POST", "/v2/default/batch-tasks", {
                "name": f"b{n}", "service_name": "probe", "service_version": "1.0.0",
                "batch_input": {"video_source_group": [{"video_source_group_id": f"g{k}"} for k in range(g)]},
                "output": {"event_center": True}})
            times[g].append((time.time() - t) * 1000)
            assert r["succeed_count"] == g * 1000, r
    for g in sizes:
        print(f"batch_create groups={g} tasks={g * 1000} ms={' '.join(f'{x:.0f}' for x in times[g])} "
              f"median={statistics.median(times[g]):.0f}")
finally:
    serve.kill()

#!/usr/bin/env python3
"""Placement with a big backlog (or many idle workers), against the same run without.

    bench/backlog.py BIN [--backend sqlite|postgres] [--cases 10000:0,1000000:0] [--slots 100]
                         [--workers 4] [--seconds 20]

Each case is BACKLOG:IDLE. IDLE simulated edge workers (the agent's protocol: register, then
long-polling syncs with nothing running) stay connected throughout; with IDLE > 0 the case first
measures serve's CPU for SECONDS with only them connected (what idle workers cost).

For each backlog N, on a fresh database: imports N pending tasks (batches of 1,000 over 1,000
sources of one cloud service), starts `BIN serve` (default settings) and W real workers whose
executor is `sleep 1`, waits until every slot has turned over once, then for SECONDS counts the
tasks that succeeded and the CPU seconds serve spent. With `sleep 1`, the free slots allow SLOTS
placements a second: a scheduler bound by free slots places close to that whatever the backlog.
Prints, per backlog, the rate and serve's CPU per placement, then both as ratios of the first
backlog's figures.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
ap.add_argument("--pg-admin", default=os.environ.get("PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres"))
ap.add_argument("--cases", default="10000:0,1000000:0")
ap.add_argument("--slots", type=int, default=100)
ap.add_argument("--workers", type=int, default=4)
ap.add_argument("--seconds", type=int, default=20)
ap.add_argument("--port", type=int, default=18097)
a = ap.parse_args()
a.bin = os.path.abspath(a.bin)
work = tempfile.mkdtemp(prefix="tc-backlog-")
PER_BATCH = 1000


def dump(path, n):
    with open(path, "w") as f:
        w = lambda r: f.write(json.dumps(r, separators=(",", ":")) + "\n")
        w({"kind": "project", "id": "bp", "name": "backlog", "created_at": 1})
        w({"kind": "service", "project_id": "bp", "id": "svc", "service_name": "probe", "service_version": "1.0.0",
           "alg_name": "Probe", "company": "Bench", "deploy_type": "cloud", "deployed": True, "created_at": 1})
        w({"kind": "video_group", "project_id": "bp", "id": "g0", "name": "zone", "created_at": 1})
        for s in range(PER_BATCH):
            w({"kind": "video_source", "project_id": "bp", "id": f"s{s}", "name": f"cam{s}",
               "url": f"rtsp://10.0.{s // 250}.{s % 250}/live", "group_ids": ["g0"], "created_at": 1})
        at = 1_700_000_000_000
        for b in range((n + PER_BATCH - 1) // PER_BATCH):
            k = min(PER_BATCH, n - b * PER_BATCH)
            tasks = [{"id": f"t{b}-{j}", "video_source_id": f"s{j}", "state": "pending",
                      "created_at": at + b * PER_BATCH + j, "updated_at": at + b * PER_BATCH + j} for j in range(k)]
            w({"kind": "batch_task", "project_id": "bp", "id": f"{b:032x}", "name": f"backlog-{b}",
               "service_name": "probe", "service_version": "1.0.0", "priority": ["high", "medium", "low"][b % 3],
               "created_at": at + b * PER_BATCH, "group_ids": ["g0"], "tasks": tasks})


def cpu_s(p):
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def idle_workers(port, creds, stop):
    """Long-polls a sync per credential until `stop` is set: edge workers with nothing to run."""
    import asyncio

    async def one(cred):
        r, w = await asyncio.open_connection("127.0.0.1", port)

        async def post(path, body):
            data = json.dumps(body).encode()
            w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cred}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = int(next(l.split(b":")[1] for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length")))
            await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: {head[:60]!r}")

        await post("/worker/v1/register", {"kind": "edge", "slots": 4})
        try:
            while not stop.is_set():
                await post("/worker/v1/sync", {"running": [], "wait_ms": 20000})
        except (asyncio.IncompleteReadError, ConnectionError):
            if not stop.is_set():
                raise
        w.close()

    async def main():
        await asyncio.gather(*(one(c) for c in creds))

    asyncio.run(main())


def run(n, idle):
    if a.backend == "sqlite":
        db = os.path.join(work, f"backlog-{n}-{idle}.db")
        drop = lambda: None
    else:
        name = f"tc_backlog_{os.getpid()}_{n}_{idle}"
        subprocess.run(["psql", a.pg_admin, "-qc", f"create database {name}"], check=True)
        db = a.pg_admin.rsplit("/", 1)[0] + "/" + name
        drop = lambda: subprocess.run(["psql", a.pg_admin, "-qc", f"drop database if exists {name} with (force)"],
                                      check=True)
    env = dict(os.environ, TASKCENTER_DATABASE_URL=db, RUST_LOG="warn")
    procs = []
    try:
        path = os.path.join(work, f"backlog-{n}.ndjson")
        dump(path, n)
        t = time.time()
        subprocess.run([a.bin, "import", path], env=env, check=True, capture_output=True)
        imported = time.time() - t
        os.remove(path)
        cli = lambda *args: subprocess.run([a.bin, *args], env=env, check=True, capture_output=True,
                                           text=True).stdout.strip()
        token = cli("token", "issue", "--project", "bp")
        procs.append(subprocess.Popen([a.bin, "serve", "--listen", f"127.0.0.1:{a.port}"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        conn = None
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("serve did not start")
            time.sleep(0.1)

        def succeeded():
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
            c.request("GET", "/v2/bp/batch-tasks?is_paged=false", headers={"X-Auth-Token": token})
            page = json.loads(c.getresponse().read())
            c.close()
            return sum(b["batch_task_status_info"].get("succeeded", 0) for b in page["batch_task_list"])

        idle_cores = None
        if idle:
            import threading
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(4) as ex:
                creds = list(ex.map(lambda i: cli("workers", "add", f"idle{i}"), range(idle)))
            stop = threading.Event()
            sims = threading.Thread(target=idle_workers, args=(a.port, creds, stop), daemon=True)
            sims.start()
            # Past the registrations and the first long polls' return (20 s).
            time.sleep(25)
            c0, t0 = cpu_s(procs[0]), time.time()
            time.sleep(a.seconds)
            idle_cores = (cpu_s(procs[0]) - c0) / (time.time() - t0)
        per = max(1, a.slots // a.workers)
        for w in range(a.workers):
            cred = cli("workers", "add", f"w{w}")
            procs.append(subprocess.Popen(
                [a.bin, "worker", "--server", f"http://127.0.0.1:{a.port}", "--token", cred, "--slots", str(per),
                 "--type", "cloud", "--exec", "sleep 1"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        # Warm up until every slot has turned over once.
        deadline = time.time() + 120
        while succeeded() < a.slots:
            if time.time() > deadline:
                sys.exit("the first tasks did not finish")
            time.sleep(0.2)
        s0, c0, t0 = succeeded(), cpu_s(procs[0]), time.time()
        time.sleep(a.seconds)
        s1, c1, t1 = succeeded(), cpu_s(procs[0]), time.time()
        placed, took, cpu = s1 - s0, t1 - t0, c1 - c0
        if idle:
            stop.set()
        return {"n": n, "idle": idle, "idle_cores": idle_cores, "import_s": imported, "rate": placed / took,
                "cpu_ms_per": 1000 * cpu / max(placed, 1), "cores": cpu / took}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        drop()


out = []
for case in a.cases.split(","):
    n, idle = (int(x) for x in case.split(":"))
    r = run(n, idle)
    out.append(r)
    idle_note = f" idle_workers={idle} cost serve {r['idle_cores']:.3f} cores;" if idle else ""
    print(f"backlog={n}{idle_note} import={r['import_s']:.1f} s placements={r['rate']:.1f}/s "
          f"(slots allow {a.slots}/s) serve_cpu={r['cores']:.2f} cores = {r['cpu_ms_per']:.2f} ms per placement",
          flush=True)
base = out[0]
for r in out[1:]:
    print(f"{r['n']}:{r['idle']} vs {base['n']}:{base['idle']}: rate ratio={r['rate'] / base['rate']:.3f} "
          f"cpu per placement ratio={r['cpu_ms_per'] / base['cpu_ms_per']:.3f}")

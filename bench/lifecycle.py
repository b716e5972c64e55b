#!/usr/bin/env python3
"""The lifecycle's speed, against a baseline taken in the same run.

    bench/lifecycle.py BIN DATABASE_URL [--latency N] [--tasks N] [--slots S] [--workers W]

Starts `BIN serve` (default settings) on DATABASE_URL (a fresh database), registers a service,
a group and sources, and starts W real `taskcenter worker` processes.

- latency: N single-source batches, one at a time on an idle system, each executor `sleep 600`;
  for each, the time from sending CreateBatchTask to the task's `Started` move (its history's
  timestamp, on the same clock). Prints p50, p99 and max.
- throughput: one batch per group over TASKS sources whose executor is `true`, on W workers of
  S/W slots each; the time from the create to the last task succeeded, against
  `xargs -P S` running `true` TASKS times (the baseline: the same executor, the same
  parallelism, no taskcenter). Prints both rates and their ratio.
- with --list-load S: `wrk` on the default list page for S seconds at rest, again while the
  throughput tasks churn, and at rest once more after the last of them succeeded; prints the
  three rates, the churning rate's ratio to the mean of the two at-rest rates (the baseline
  brackets the treatment, so a drift of the machine over the run moves both sides alike) and
  to the first alone, and for each window the cores that serve, wrk, the workers with their
  executors and the database took, and what stayed idle. Every window lists the same batches:
  the throughput batches are created before the first window and wait, every slot being held,
  until their workers start; the throughput then counts from the workers' start.
- with --worker-nice N: the workers (and the executors they start) run at nice N, as on a host
  where the analysis side yields the CPU to serve.
- with --executor-priority idle: the workers start their executors at that priority
  (`taskcenter worker --executor-priority`); the agents themselves keep normal priority.
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
ap.add_argument("db")
ap.add_argument("--latency", type=int, default=50)
ap.add_argument("--tasks", type=int, default=2000)
ap.add_argument("--slots", type=int, default=64)
ap.add_argument("--workers", type=int, default=4)
ap.add_argument("--port", type=int, default=18096)
ap.add_argument("--second-serve", action="store_true",
                help="latency only: attach the worker to a second serve on the same database, "
                     "send the API calls to the first (several serve processes share PostgreSQL)")
ap.add_argument("--list-load", type=int, default=0, metavar="SECONDS",
                help="also run wrk on the batch list for SECONDS at rest, while the tasks churn and "
                     "at rest again after them, and print where the cores went in each window")
ap.add_argument("--worker-nice", type=int, default=0, metavar="N",
                help="run the worker processes (and so their executors) at nice N")
ap.add_argument("--executor-priority", default="normal", choices=["normal", "idle"],
                help="the workers' --executor-priority")
ap.add_argument("--worker-priority", default="normal", choices=["normal", "idle"],
                help="the workers' --priority (the whole worker: agent and executors)")
a = ap.parse_args()
a.bin = os.path.abspath(a.bin)
if "://" not in a.db:
    a.db = os.path.abspath(a.db)
env = dict(os.environ, TASKCENTER_DATABASE_URL=a.db, RUST_LOG="warn")
work = tempfile.mkdtemp(prefix="tc-lifecycle-")
procs = []


def cli(*args, stdin=None):
    return subprocess.run([a.bin, *args], env=env, cwd=work, check=True, capture_output=True,
                          text=True, input=stdin).stdout.strip()


def start(*args):
    pre = ["nice", "-n", str(a.worker_nice)] if args[0] == "worker" and a.worker_nice else []
    if args[0] == "worker":
        args = (*args, "--executor-priority", a.executor_priority,
                "--priority", a.worker_priority)
    p = subprocess.Popen([*pre, a.bin, *args], env=env, cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


conn = None


def call(method, path, body=None):
    global conn
    for _ in range(2):
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            headers = {"X-Auth-Token": token}
            data = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                data = json.dumps(body)
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            if r.status != 200:
                sys.exit(f"{method} {path}: {r.status} {raw[:300]!r}")
            return json.loads(raw) if raw else None
        except (ConnectionError, http.client.HTTPException):
            conn = None
    sys.exit(f"{method} {path}: no connection")


def cpu_s(p):
    """User + system CPU seconds of process p so far."""
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_tree(p):
    """CPU seconds of process p and of the children it has reaped (a worker's executors)."""
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def idle_s():
    """Idle CPU seconds of the whole machine so far."""
    f = open("/proc/stat").readline().split()
    return (int(f[4]) + int(f[5])) / os.sysconf("SC_CLK_TCK")


def db_s():
    """CPU seconds of every PostgreSQL process on the machine so far (0 on SQLite; other
    databases' work counts too, so keep the server otherwise quiet)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            head, tail = open(f"/proc/{pid}/stat").read().rsplit(")", 1)
        except OSError:
            continue
        if head.endswith("(postgres"):
            f = tail.split()
            total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * q))]


def serve(port):
    start("serve", "--listen", f"127.0.0.1:{port}")
    deadline = time.time() + 30
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("serve did not start")
        time.sleep(0.1)


try:
    serve(a.port)
    worker_port = a.port
    if a.second_serve:
        worker_port = a.port + 1
        serve(worker_port)
    token = cli("token", "issue", "--project", "default")
    for name, mode in (("probe", "cloud"),):
        cli("service", "add", "--project", "default", "--name", name, "--version", "1.0.0",
            "--alg-name", "Probe", "--company", "Bench", "--deploy-type", mode)
    groups = max(1, a.tasks // 1000)
    for g in range(groups):
        call("POST", "/v2/default/video-group", {"id": f"g{g}", "video_group_name": f"group{g}", "access_type": "cloud"})
    call("POST", "/v2/default/video-group", {"id": "lat", "video_group_name": "latency", "access_type": "cloud"})
    for i in range(a.latency):
        call("POST", "/v2/default/source", {"id": f"l{i}", "video_source_name": f"l{i}", "access_type": "cloud",
                                             "url": f"rtsp://l{i}/live", "video_group_ids": ["lat"]})
    for i in range(a.tasks):
        call("POST", "/v2/default/source", {"id": f"s{i}", "video_source_name": f"s{i}", "access_type": "cloud",
                                             "url": f"rtsp://s{i}/live", "video_group_ids": [f"g{i % groups}"]})
    per = max(1, a.slots // a.workers)
    # Latency: one worker whose executor keeps running.
    cred = cli("workers", "add", "lat-worker")
    start("worker", "--server", f"http://127.0.0.1:{worker_port}", "--token", cred, "--slots", str(a.latency),
          "--type", "cloud", "--exec", "sleep 600")
    time.sleep(2)
    lat = []
    for i in range(a.latency):
        t0 = time.time() * 1000
        r = call("POST", "/v2/default/batch-tasks", {
            "name": f"lat{i}", "service_name": "probe", "service_version": "1.0.0",
            "batch_input": {"video_source_group": [{"video_source_group_id": "lat",
                                                    "video_source_list": [{"video_source_id": f"l{i}"}]}]},
            "output": {"event_center": True}})
        task = call("GET", f"/v2/default/tasks?batch_id={r['id']}")["tasks"][0]["id"]
        while True:
            h = call("GET", f"/v2/default/tasks/{task}")["history"]
            started = [m["at"] for m in h if m["event"] == "Started"]
            if started:
                lat.append(started[0] - t0)
                break
            if time.time() * 1000 - t0 > 30000:
                sys.exit(f"task {task} did not start: {h}")
            time.sleep(0.005)
        time.sleep(0.2)
    print(f"create_to_running n={len(lat)} p50={pct(lat, .5):.0f} ms p99={pct(lat, .99):.0f} ms max={max(lat):.0f} ms"
          + (" (worker on a second serve)" if a.second_serve else ""))
    if a.second_serve:
        sys.exit(0)
    # The latency worker stays, every slot of it held by a sleeping task.

    def list_rps(label):
        """wrk on the default list page; prints where the cores went meanwhile."""
        t0, serve0, idle0, db0 = time.time(), cpu_s(procs[0]), idle_s(), db_s()
        workers0 = sum(cpu_tree(p) for p in procs[1:])
        w = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{a.list_load}s", "-H", f"X-Auth-Token: {token}",
                              f"http://127.0.0.1:{a.port}/v2/default/batch-tasks"],
                             stdout=subprocess.PIPE, text=True)
        out = w.stdout.read()
        _, status, ru = os.wait4(w.pid, 0)
        if status != 0:
            sys.exit("wrk failed")
        dt = time.time() - t0
        print(f"  cores while the list ran {label}: serve {(cpu_s(procs[0]) - serve0) / dt:.2f}, "
              f"wrk {(ru.ru_utime + ru.ru_stime) / dt:.2f}, workers and their executors "
              f"{(sum(cpu_tree(p) for p in procs[1:]) - workers0) / dt:.2f}, database {(db_s() - db0) / dt:.2f}, "
              f"idle {(idle_s() - idle0) / dt:.2f}")
        return float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))

    def create_batches():
        return [call("POST", "/v2/default/batch-tasks", {
            "name": f"tp{g}", "service_name": "probe", "service_version": "1.0.0",
            "batch_input": {"video_source_group": [{"video_source_group_id": f"g{g}"}]},
            "output": {"event_center": True}})["id"] for g in range(groups)]

    # With the list load, every window lists the same batches: the
    # throughput batches are created first and wait (every slot is held by
    # the latency worker) until their workers start.
    ids = create_batches() if a.list_load else None
    rest_rps = list_rps("at rest") if a.list_load else None
    # Throughput against xargs -P.
    t = time.time()
    subprocess.run(f"seq {a.tasks} | xargs -P {a.slots} -I{{}} true", shell=True, check=True)
    base = a.tasks / (time.time() - t)
    creds = [cli("workers", "add", f"tp{w}") for w in range(a.workers)]

    def start_workers():
        for cred in creds:
            start("worker", "--server", f"http://127.0.0.1:{a.port}", "--token", cred, "--slots", str(per),
                  "--type", "cloud", "--exec", "true")
        return procs[-a.workers:]

    churn_rps = None
    if a.list_load:
        import threading

        def measure():
            nonlocal_box["rps"] = list_rps("while tasks churned")

        nonlocal_box = {}
        loader = threading.Thread(target=measure)
        t = time.time()
        cpu0 = (cpu_s(procs[0]), 0.0)
        loader.start()
        workers = start_workers()
    else:
        workers = start_workers()
        time.sleep(2)
        cpu0 = (cpu_s(procs[0]), sum(cpu_s(p) for p in workers))
        t = time.time()
        ids = create_batches()
    while True:
        page = call("GET", "/v2/default/batch-tasks?is_paged=false")
        done = sum(b["batch_task_status_info"].get("succeeded", 0) for b in page["batch_task_list"] if b["id"] in ids)
        if done >= a.tasks:
            break
        if time.time() - t > 600:
            sys.exit(f"only {done} of {a.tasks} succeeded in 600 s")
        time.sleep(0.02)
    took = time.time() - t
    serve_cpu = cpu_s(procs[0]) - cpu0[0]
    worker_cpu = sum(cpu_s(p) for p in workers) - cpu0[1]
    if a.list_load:
        loader.join()
        churn_rps = nonlocal_box["rps"]
        after_rps = list_rps("at rest after the churn")
        rest = (rest_rps + after_rps) / 2
        print(f"list_rps at_rest={rest_rps:.0f} while_churning={churn_rps:.0f} at_rest_after={after_rps:.0f} "
              f"ratio={churn_rps / rest:.3f} (against the first window alone {churn_rps / rest_rps:.3f}; "
              f"the churn lasted {took:.1f} s of the {a.list_load} s measured)")
    rate = a.tasks / took
    print(f"throughput tasks={a.tasks} slots={a.slots} taskcenter={rate:.0f}/s xargs={base:.0f}/s ratio={rate / base:.3f} "
          f"serve_cpu={serve_cpu / took:.2f} cores workers_cpu={worker_cpu / took:.2f} cores")
finally:
    for p in procs:
        p.kill()

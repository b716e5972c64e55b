#!/usr/bin/env python3
"""Consoles watching the batch list, while the list changes.

    bench/pollers.py ADDR PROJECT TOKEN N SECONDS

N watchers (N may be 0) each hold one connection and long-poll the default
page as the console does: If-None-Match with the page's ETag and
`Prefer: wait=20`, again as soon as an answer comes. Meanwhile one task of a
batch on that page is stopped and started again five times a second, so the
page really changes and every watcher is woken. Prints the answers counted
when SECONDS are up."""
import http.client
import json
import sys
import threading
import time

addr, project, token, n, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
host, port = addr.rsplit(":", 1)
page = f"/v2/{project}/batch-tasks?is_paged=true&page_size=10&page_num=1"
counts = {"200": 0, "304": 0, "other": 0, "changes": 0}
lock = threading.Lock()
end = time.monotonic() + seconds


def call(conn, method, path, headers=None):
    conn.request(method, path, headers=dict({"X-Auth-Token": token}, **(headers or {})))
    resp = conn.getresponse()
    return resp, resp.read()


def watcher(k):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    time.sleep(k / max(n, 1))
    resp, _ = call(conn, "GET", page)
    etag = resp.getheader("ETag")
    while time.monotonic() < end:
        resp, _ = call(conn, "GET", page, {"If-None-Match": etag, "Prefer": "wait=20"})
        etag = resp.getheader("ETag") or etag
        key = str(resp.status) if resp.status in (200, 304) else "other"
        with lock:
            counts[key] += 1


def churn():
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    _, body = call(conn, "GET", page)
    batch = next(b["id"] for b in json.loads(body)["batch_task_list"]
                 if b["batch_task_status_info"].get("pending"))
    _, body = call(conn, "GET", f"/v2/{project}/tasks?batch_id={batch}&task_state=PENDING&page_size=5")
    task = json.loads(body)["tasks"][0]["id"]
    i = 0
    while time.monotonic() < end:
        call(conn, "PUT", f"/v2/{project}/tasks/{task}/action/{'stop' if i % 2 == 0 else 'start'}")
        i += 1
        with lock:
            counts["changes"] += 1
        time.sleep(0.2)
    if i % 2 == 1:
        call(conn, "PUT", f"/v2/{project}/tasks/{task}/action/start")


threads = [threading.Thread(target=watcher, args=(k,), daemon=True) for k in range(n)]
threads.append(threading.Thread(target=churn, daemon=True))
for t in threads:
    t.start()
for t in threads:
    t.join(seconds + 30)
print(f"watchers={n} changes={counts['changes']} ok_200={counts['200']} "
      f"not_modified_304={counts['304']} other={counts['other']}")

#!/usr/bin/env python3
"""Squall's side of the task benchmarks of ../shared/peers (Ray, Dask), from a
Python HTTP client (the standard library's http.client, one kept-alive
connection), printing one JSON object with the keys those scripts use:

  (a) single_task     POST /v1/functions/inc/invoke "1" -> "2"          p50/p99 us
  (b) chain2          POST /v1/dags/incsq/invoke "1" -> "4" (the DAG inc -> square,
                      outputs passed in memory, one atomic unit)        p50/p99 us
  (c) map_10k         POST /v1/jobs {"function": "inc", "inputs": [0..n)}, polled
                      until done, then every result read back           tasks/s, wall s
  (d) obj_1mib        put: PUT /v1/kv/blob (1 MiB); get: GET /v1/kv/blob;
                      task_reads_ref: the DAG blob -> size, which passes 1 MiB from
                      one function to the next                          p50/p99 us

Run by bench/compose_node.sh, which starts a node and passes --node and
--cluster-start-s.
"""
import argparse
import http.client
import json
import os
import platform
import sys
import time
import urllib.parse


def percentile(sorted_vals, q):
    k = (len(sorted_vals) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def latency_us(fn, n, warmup):
    for _ in range(warmup):
        fn()
    samples = []
    pc = time.perf_counter_ns
    for _ in range(n):
        t0 = pc()
        fn()
        samples.append((pc() - t0) / 1000.0)
    samples.sort()
    return {"n": n, "p50_us": round(percentile(samples, 50), 1), "p99_us": round(percentile(samples, 99), 1),
            "mean_us": round(sum(samples) / n, 1)}


class Node:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 80)

    def call(self, method, path, body=b"", want=200):
        self.conn.request(method, path, body=body)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != want:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--map-n", type=int, default=10000)
    ap.add_argument("--cluster-start-s", type=float, default=None)
    args = ap.parse_args()
    node = Node(args.node)
    out = {"bench": "squall-python", "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "python": platform.python_version(), "cpus": os.cpu_count(), "client": "python http.client, keep-alive"}
    if args.cluster_start_s is not None:
        out["cluster_start_s"] = args.cluster_start_s

    node.call("PUT", "/v1/dags/incsq", json.dumps({"chain": ["inc", "square"]}).encode(), want=201)
    node.call("PUT", "/v1/dags/pass1m", json.dumps({"chain": ["blob", "size"]}).encode(), want=201)

    def single():
        assert node.call("POST", "/v1/functions/inc/invoke", b"1") == b"2"
    out["single_task"] = latency_us(single, args.n, args.warmup)

    def chain():
        assert node.call("POST", "/v1/dags/incsq/invoke", b"1") == b"4"
    out["chain2"] = latency_us(chain, args.n, args.warmup)

    def run_map(n):
        body = json.dumps({"function": "inc", "inputs": list(range(n))}).encode()
        job = json.loads(node.call("POST", "/v1/jobs", body, want=202))
        while json.loads(node.call("GET", f"/v1/jobs/{job['id']}"))["state"] == "running":
            time.sleep(0.002)
        results, after = [], None
        while True:
            q = "limit=10000" if after is None else f"after={after}&limit=10000"
            page = json.loads(node.call("GET", f"/v1/jobs/{job['id']}/results?{q}"))
            results.extend(page["results"])
            if page["next"] is None:
                return results
            after = page["next"]

    run_map(1000)
    t = time.perf_counter()
    res = run_map(args.map_n)
    wall = time.perf_counter() - t
    assert len(res) == args.map_n and res[-1]["output"] == str(args.map_n), res[-1]
    out["map_10k"] = {"n": args.map_n, "wall_s": round(wall, 3), "tasks_per_s": round(args.map_n / wall, 1)}

    payload = os.urandom(1 << 20)
    put = latency_us(lambda: node.call("PUT", "/v1/kv/blob", payload, want=204), args.n, args.warmup)
    assert node.call("GET", "/v1/kv/blob") == payload
    get = latency_us(lambda: node.call("GET", "/v1/kv/blob"), args.n, args.warmup)

    def passed():
        assert node.call("POST", "/v1/dags/pass1m/invoke", b"1048576") == b"1048576"
    task = latency_us(passed, args.n, args.warmup)
    out["obj_1mib"] = {"put": put, "get": get, "task_reads_ref": task}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

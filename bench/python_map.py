"""Issue 16's Squall side, from the Python client, against a node already up
(`bench/compose_node.sh` starts one): deploy time and node memory per
Python function, warm invoke latency of the same trivial function in Rust
and Python, and `client.map` of a trivial Python function over 10,000 and
1,000,000 inputs. Prints one JSON object.

    bench/compose_node.sh python3 bench/python_map.py --squall target/release/squall
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import squall


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def latency(url: str, name: str, data: bytes, n: int, warmup: int, gap_s: float = 0.0) -> dict:
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port)
    times = []
    for i in range(warmup + n):
        t = time.perf_counter()
        c.request("POST", f"/v1/functions/{name}/invoke", body=data)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{name}: {r.status} {body!r}")
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e6)
        if gap_s:
            time.sleep(gap_s)
    times.sort()
    return {"p50_us": round(statistics.median(times)), "p99_us": round(times[int(len(times) * 0.99) - 1])}


def inc(x):
    return x + 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--pid", type=int, default=int(os.environ.get("SQUALL_PID", "0")), help="the node's pid [$SQUALL_PID]")
    ap.add_argument("--cluster-start-s", type=float, help="(given by bench/compose_node.sh; not used)")
    ap.add_argument("--squall", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--big", type=int, default=1_000_000)
    args = ap.parse_args()
    out: dict = {}
    client = squall.Client(args.node)
    cache = tempfile.mkdtemp(prefix="squall-bench-cache-")
    env = dict(os.environ, SQUALL_CACHE_DIR=cache)

    def deploy(name: str, source: str) -> float:
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "app.py"), "w") as f:
            f.write(source)
        t = time.perf_counter()
        subprocess.run([args.squall, "deploy", name, os.path.join(d, "app.py"), "--node", args.node], check=True, env=env, capture_output=True)
        return time.perf_counter() - t

    trivial = "def handle(input: bytes) -> bytes:\n    return str(int(input) + 1)\n"
    rss0 = rss_mib(args.pid)
    out["deploy_first_s"] = round(deploy("pyinc", trivial), 2)  # builds the runtime, the node compiles it
    client.invoke("pyinc", "1")
    rss1 = rss_mib(args.pid)
    out["deploy_second_s"] = round(deploy("pyinc2", trivial.replace("+ 1", "+ 2")), 2)
    client.invoke("pyinc2", "1")
    rss2 = rss_mib(args.pid)
    extra = 10
    for i in range(extra):
        deploy(f"pyextra{i}", trivial.replace("+ 1", f"+ {i + 3}"))
        client.invoke(f"pyextra{i}", "1")
    rss3 = rss_mib(args.pid)
    out["rss_first_python_function_mib"] = round(rss1 - rss0, 1)
    out["rss_second_python_function_mib"] = round(rss2 - rss1, 1)
    out["rss_per_further_python_function_mib"] = round((rss3 - rss2) / extra, 1)

    out["warm_invoke"] = {
        "rust": latency(args.node, "inc", b"41", args.n, 200),
        "python": latency(args.node, "pyinc", b"41", args.n, 200),
        # 5 ms between calls: each finds the instance made ready after the last.
        "rust_spaced": latency(args.node, "inc", b"41", args.n // 4, 50, 0.005),
        "python_spaced": latency(args.node, "pyinc", b"41", args.n // 4, 50, 0.005),
    }
    client.map(inc, range(1000), progress=False).results()  # ships inc, warms up
    for label, n in (("map_10k", 10_000), ("map_1m", args.big)):
        t = time.perf_counter()
        k = 0
        for v in client.map(inc, range(n), progress=False):
            k += 1
        wall = time.perf_counter() - t
        assert k == n
        out[label] = {"n": n, "wall_s": round(wall, 3), "tasks_per_s": round(n / wall, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load for the retwis example: one client, one kept-alive HTTP/1.1 connection.

Makes USERS users follow FOLLOWS others each (chosen at random, no one
follows themselves), then runs OPS operations, 80% `timeline USER` and 20%
`post USER TEXT` for users chosen at random, one at a time. Prints one JSON
object: the follow phase's and the mix's operations per second, and for each
kind of operation its count and p50/p99/mean/max latency in milliseconds
(the whole request as this client sees it), and how many connections it
opened (1 unless the node closed one).

Usage: bench/retwis_load.py [--node http://127.0.0.1:7700] [--users 100]
       [--ops 5000] [--seed 1] [--follows 10]
Needs a node with retwis deployed (`squall up --examples`). Python 3
standard library only. A run adds its follows and posts to whatever the
store holds already; use a fresh data dir for comparable numbers.
"""
import argparse
import http.client
import json
import random
import socket
import sys
import time
import urllib.parse

WORDS = (
    "squall lattice counter shard wasm component function store commit merge "
    "timeline post follow user tweet fast durable atomic invocation redis node "
    "the a of to and in is it that on for with as at by from"
).split()


class Client:
    """POSTs over one persistent connection, reconnecting if the node closed it."""

    def __init__(self, node):
        url = urllib.parse.urlsplit(node)
        if url.scheme != "http" or not url.hostname:
            sys.exit(f"--node must be http://HOST:PORT, not {node!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.conn = None
        self.connects = 0

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self.conn.connect()
        self.connects += 1
        # One small request at a time: do not let Nagle hold it back.
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path, body):
        for attempt in (1, 2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the node closed between requests.
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def summary(latencies):
    s = sorted(latencies)
    ms = lambda v: None if v is None else round(v * 1000, 3)
    return {
        "count": len(s),
        "p50_ms": ms(percentile(s, 50)),
        "p99_ms": ms(percentile(s, 99)),
        "mean_ms": ms(sum(s) / len(s)) if s else None,
        "max_ms": ms(s[-1]) if s else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default="http://127.0.0.1:7700")
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--follows", type=int, default=10, help="how many others each user follows")
    args = ap.parse_args()
    if args.users < 2:
        sys.exit("--users must be at least 2")
    follows = min(args.follows, args.users - 1)

    rng = random.Random(args.seed)
    client = Client(args.node)
    path = "/v1/functions/retwis/invoke"
    users = [f"user{i}" for i in range(args.users)]
    errors = []

    def run(command):
        started = time.perf_counter()
        status, body = client.post(path, command.encode())
        took = time.perf_counter() - started
        if status != 200:
            errors.append({"command": command, "status": status, "body": body[:300].decode("utf-8", "replace")})
            if len(errors) >= 10:
                print(json.dumps({"aborted": "too many errors", "errors": errors}, indent=2))
                sys.exit(1)
        return took, body

    # Phase 1: the follow graph.
    follow_lat = []
    started = time.perf_counter()
    for user in users:
        for other in rng.sample([u for u in users if u != user], follows):
            took, _ = run(f"follow {user} {other}")
            follow_lat.append(took)
    follow_secs = time.perf_counter() - started

    # Phase 2: 80% timelines, 20% posts.
    lat = {"timeline": [], "post": []}
    lines_seen = 0
    started = time.perf_counter()
    for _ in range(args.ops):
        user = rng.choice(users)
        if rng.random() < 0.8:
            took, body = run(f"timeline {user}")
            lat["timeline"].append(took)
            lines_seen += body.count(b"\n")
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))
            took, _ = run(f"post {user} {text}")
            lat["post"].append(took)
    mix_secs = time.perf_counter() - started

    out = {
        "node": args.node,
        "users": args.users,
        "follows_per_user": follows,
        "ops": args.ops,
        "seed": args.seed,
        "follow_phase": {"ops_per_s": round(len(follow_lat) / follow_secs, 1), **summary(follow_lat)},
        "mix": {
            "ops_per_s": round(args.ops / mix_secs, 1),
            "seconds": round(mix_secs, 3),
            "timeline": summary(lat["timeline"]),
            "post": summary(lat["post"]),
            "mean_timeline_posts": round(lines_seen / len(lat["timeline"]), 2) if lat["timeline"] else None,
        },
        "connections": client.connects,
        "errors": errors,
    }
    print(json.dumps(out, indent=2))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()

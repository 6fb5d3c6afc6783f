#!/usr/bin/env python3
"""The worst-case requests, Squall vs Redis side by side in one run (loopback).

Times, on each server: one HSET with 60,000 fields, one SADD with 60,000
members, and a full SCAN walk over 200,000 keys with COUNT 10 and COUNT
1000; and the slowest PING another connection saw meanwhile. Prints a
markdown table with the ratio Squall/Redis (lower is better).

Usage: bench/big_requests.py [--squall target/release/squall] [--repeats 3]
Starts redis-server (persistence off) and `squall up --durability async
--shards 1` itself (one shard: the PINGs share it with the big requests).
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self.buf += self.s.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n + 2)[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args):
        self.s.sendall(encode(*args))
        return self.reply()

    def pipeline(self, commands):
        self.s.sendall(b"".join(encode(*c) for c in commands))
        return [self.reply() for _ in commands]


def wait_ping(port):
    for _ in range(300):
        try:
            if Conn(port).call("PING") == b"PONG":
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not start")


def measure(port):
    c = Conn(port)
    for start in range(0, 200_000, 10_000):
        c.pipeline([("SET", f"key:{i}", "v") for i in range(start, start + 10_000)])
    stop = threading.Event()
    worst = [0.0]

    def pinger():
        p = Conn(port)
        while not stop.is_set():
            t = time.perf_counter()
            p.call("PING")
            worst[0] = max(worst[0], time.perf_counter() - t)
            time.sleep(0.001)

    th = threading.Thread(target=pinger)
    th.start()
    out = {}
    hset = encode("HSET", "big-hash", *[x for i in range(60_000) for x in (f"field:{i}", "value")])
    t = time.perf_counter()
    c.s.sendall(hset)
    assert int(c.reply()) == 60_000
    out["HSET 60,000 fields"] = time.perf_counter() - t
    sadd = encode("SADD", "big-set", *[f"member:{i}" for i in range(60_000)])
    t = time.perf_counter()
    c.s.sendall(sadd)
    assert int(c.reply()) == 60_000
    out["SADD 60,000 members"] = time.perf_counter() - t
    for count in (10, 1000):
        t = time.perf_counter()
        cursor, seen = b"0", set()
        while True:
            cursor, keys = c.call("SCAN", cursor, "COUNT", count)
            seen.update(keys)
            if cursor == b"0":
                break
        out[f"full SCAN of 200,002 keys, COUNT {count}"] = time.perf_counter() - t
        assert len(seen) == 200_002, len(seen)
    stop.set()
    th.join()
    out["slowest PING meanwhile"] = worst[0]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--squall", default="target/release/squall")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp()
    results = {"redis": [], "squall": []}
    try:
        for rep in range(a.repeats):
            order = ["redis", "squall"] if rep % 2 == 0 else ["squall", "redis"]
            for system in order:
                if system == "redis":
                    port = 7379
                    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                             "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
                else:
                    port = 7380
                    data = os.path.join(work, "squall-data")
                    shutil.rmtree(data, ignore_errors=True)
                    proc = subprocess.Popen([a.squall, "up", "--data-dir", data, "--resp", f"127.0.0.1:{port}",
                                             "--http", "127.0.0.1:7781", "--durability", "async", "--shards", "1"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_ping(port)
                    print(f"[{rep + 1}/{a.repeats}] {system}", file=sys.stderr)
                    results[system].append(measure(port))
                finally:
                    proc.terminate()
                    proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Worst-case requests; Squall --shards 1 --durability async, Redis persistence off; median of {a.repeats} runs\n")
    print("| request | Redis ms | Squall ms | Squall / Redis |")
    print("|---|---:|---:|---:|")
    for name in results["redis"][0]:
        r = statistics.median(x[name] for x in results["redis"]) * 1000
        s = statistics.median(x[name] for x in results["squall"]) * 1000
        print(f"| {name} | {r:.1f} | {s:.1f} | {s / r:.2f} |")


if __name__ == "__main__":
    main()

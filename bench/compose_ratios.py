#!/usr/bin/env python3
"""Ratios of Squall's task benchmarks to the faster of Ray and Dask, from the
medians.json that run_all.sh writes (bench/compose_compare.sh)."""
import json
import sys

ROWS = [
    # name, path, bigger is better, target
    ("(a) single task round trip p50", ("single_task", "p50_us"), False, 20),
    ("(b) chain square(inc(x)) p50", ("chain2", "p50_us"), False, 20),
    ("(c) map 10k trivial tasks, tasks/s", ("map_10k", "tasks_per_s"), True, 20),
    ("(d) 1 MiB from one function to the next p50", ("obj_1mib", "task_reads_ref", "p50_us"), False, 10),
]


def get(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def main():
    med = json.load(open(sys.argv[1]))
    peers = [p for p in ("ray", "dask") if p in med]
    ours = [l for l in med if l.startswith("squall")]
    print("| metric | faster peer | " + " | ".join(ours) + " | target |")
    print("|---|---:|" + "---:|" * len(ours) + "---:|")
    for name, path, bigger, target in ROWS:
        vals = {p: get(med[p], path) for p in peers if get(med[p], path) is not None}
        if not vals:
            continue
        best = max(vals, key=vals.get) if bigger else min(vals, key=vals.get)
        b = vals[best]
        cells = []
        for o in ours:
            v = get(med[o], path)
            if v is None:
                cells.append("-")
                continue
            ratio = v / b if bigger else b / v
            cells.append(f"{v:,.1f} ({ratio:.1f}x)")
        print(f"| {name} | {best} {b:,.1f} | " + " | ".join(cells) + f" | {target}x |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Spins one process per given CPU for SECS seconds and reports, as one JSON
object, how much wall time each spinner did not run (gaps over 0.5 ms). On a
virtual machine whose host caps its CPU time, the gaps show when the guest as
a whole is stopped, which no process inside it can avoid.

usage: cpu-gaps.py CPU[,CPU...] SECS
"""
import json
import multiprocessing as mp
import os
import sys
import time

GAP_S = 0.0005


def spin(cpu, secs, queue):
    os.sched_setaffinity(0, {cpu})
    end = time.perf_counter() + secs
    last = time.perf_counter()
    gaps = []
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if now - last > GAP_S:
            gaps.append(now - last)
        last = now
    queue.put({
        "cpu": cpu,
        "stalled_ms": round(sum(gaps) * 1e3, 1),
        "stalled_fraction": round(sum(gaps) / secs, 4),
        "gaps": len(gaps),
        "max_gap_ms": round(max(gaps, default=0) * 1e3, 2),
    })


def main():
    cpus = [int(c) for c in sys.argv[1].split(",")]
    secs = float(sys.argv[2])
    queue = mp.Queue()
    procs = [mp.Process(target=spin, args=(c, secs, queue)) for c in cpus]
    for p in procs:
        p.start()
    results = sorted((queue.get() for _ in procs), key=lambda r: r["cpu"])
    for p in procs:
        p.join()
    print(json.dumps({"secs": secs, "cpus": results}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Samples a server's memory and CPU while a load runs.

usage: sample.py OUT.json PID [PID ...]

Every 250 ms it sums VmRSS over the given pids (nginx's master and workers, or the gateway's one
process) and keeps the maximum, and it reads their CPU time. It stops on SIGTERM or SIGINT and
writes {"rss_kib_start", "rss_kib_max", "cpu_seconds", "wall_seconds", "cpu_percent_avg"}.
"""
import json
import os
import signal
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def main():
    out, pids = sys.argv[1], [int(p) for p in sys.argv[2:]]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    start_rss = sum(rss_kib(p) for p in pids)
    start_cpu = sum(cpu_ticks(p) for p in pids)
    start = time.monotonic()
    max_rss = start_rss
    while not stop:
        max_rss = max(max_rss, sum(rss_kib(p) for p in pids))
        time.sleep(0.25)
    wall = time.monotonic() - start
    cpu = (sum(cpu_ticks(p) for p in pids) - start_cpu) / TICKS
    with open(out, "w") as f:
        json.dump(
            {
                "rss_kib_start": start_rss,
                "rss_kib_max": max_rss,
                "cpu_seconds": round(cpu, 2),
                "wall_seconds": round(wall, 2),
                "cpu_percent_avg": round(100 * cpu / wall, 1) if wall > 0 else 0,
            },
            f,
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Samples a server's memory and CPU while a load runs.

usage: sample.py OUT.json PID [PID ...]

Every 250 ms it sums VmRSS over the given pids (nginx's master and workers, the gateway's one
process, or every node of a cluster) and keeps the maximum, and it reads their CPU time. It stops
on SIGTERM or SIGINT and writes {"rss_kib_start", "rss_kib_max", "cpu_seconds", "wall_seconds",
"cpu_percent_avg"}, plus "per_pid" (each pid's own start and maximum RSS and CPU seconds) and
"timeline" ([seconds since start, summed RSS KiB, CPU seconds since start] about once a second),
so that the CPU of one phase of a run (the ramp, the publishing) can be told from the rest.
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
    rss0 = {p: rss_kib(p) for p in pids}
    cpu0 = {p: cpu_ticks(p) for p in pids}
    rss_max = dict(rss0)
    cpu_last = dict(cpu0)  # a pid that exits keeps its last reading
    start_rss = sum(rss0.values())
    start = time.monotonic()
    max_rss = start_rss
    timeline = []
    next_mark = start
    while not stop:
        now_rss = {p: rss_kib(p) for p in pids}
        for p, v in now_rss.items():
            rss_max[p] = max(rss_max[p], v)
        max_rss = max(max_rss, sum(now_rss.values()))
        now = time.monotonic()
        if now >= next_mark:
            for p in pids:
                cpu_last[p] = max(cpu_last[p], cpu_ticks(p))
            cpu = sum(cpu_last[p] - cpu0[p] for p in pids) / TICKS
            timeline.append([round(now - start, 2), sum(now_rss.values()), round(cpu, 2)])
            next_mark += 1.0
        time.sleep(0.25)
    wall = time.monotonic() - start
    for p in pids:
        cpu_last[p] = max(cpu_last[p], cpu_ticks(p))
    cpu = sum(cpu_last[p] - cpu0[p] for p in pids) / TICKS
    with open(out, "w") as f:
        json.dump(
            {
                "rss_kib_start": start_rss,
                "rss_kib_max": max_rss,
                "cpu_seconds": round(cpu, 2),
                "wall_seconds": round(wall, 2),
                "cpu_percent_avg": round(100 * cpu / wall, 1) if wall > 0 else 0,
                "per_pid": {
                    str(p): {
                        "rss_kib_start": rss0[p],
                        "rss_kib_max": rss_max[p],
                        "cpu_seconds": round((cpu_last[p] - cpu0[p]) / TICKS, 2),
                    }
                    for p in pids
                },
                "timeline": timeline,
            },
            f,
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""RSS per idle SSE stream of a server, measured by pid.

    ulimit -n 20000
    python3 loadtest/peers/nchan/idle_rss.py --port PORT --path /sub/bench --pid MASTER_PID --streams 2000

Sums VmRSS of the pid and its children (nginx master + workers) before and after opening
--streams idle connections (plain sockets: `GET path` with `Accept: text/event-stream`,
then read until the end of the response header), waits --settle seconds, and prints one line:
  streams=N not_200=0 rss_before_kib=.. rss_after_kib=.. rss_per_stream_bytes=..
  pss_before_kib=.. pss_after_kib=.. pss_per_stream_bytes=..
VmRSS summed over processes counts shared memory (nchan's zone) once per process that touched
it; PSS counts it once in all.
Only 127.0.0.1 is ever targeted.
"""
import argparse, os, socket, sys, time


def tree(pid):
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for c in f.read().split():
                pids += tree(int(c))
    except OSError:
        pass
    return pids


def sum_field(pid, path, field):
    """Sums a kB field of a /proc file (e.g. VmRSS of status) over the process tree."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/{path}") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_kib(pid):
    return sum_field(pid, "status", "VmRSS:")


def pss_kib(pid):
    """Proportional set size: shared pages (nchan's shm zone) counted once across processes."""
    return sum_field(pid, "smaps_rollup", "Pss:")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/sub/bench")
    ap.add_argument("--pid", type=int, required=True, help="server pid (children are summed too)")
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--sources", type=int, default=1, help="spread over 127.0.0.1..127.0.0.N source addresses")
    a = ap.parse_args()

    time.sleep(a.settle)
    before, before_pss = rss_kib(a.pid), pss_kib(a.pid)
    req = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
           "Accept: text/event-stream\r\n\r\n").encode()
    socks = []
    for i in range(a.streams):
        s = socket.socket()
        s.bind((f"127.0.0.{1 + i % a.sources}", 0))
        s.connect(("127.0.0.1", a.port))
        s.sendall(req)
        socks.append(s)
    bad = 0
    for s in socks:
        s.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        if not buf.startswith(b"HTTP/1.1 200"):
            bad += 1
    time.sleep(a.settle)
    after, after_pss = rss_kib(a.pid), pss_kib(a.pid)
    per = (after - before) * 1024 / a.streams
    per_pss = (after_pss - before_pss) * 1024 / a.streams
    print(f"streams={a.streams} not_200={bad} rss_before_kib={before} rss_after_kib={after} "
          f"rss_per_stream_bytes={per:.0f} pss_before_kib={before_pss} pss_after_kib={after_pss} "
          f"pss_per_stream_bytes={per_pss:.0f}")
    for s in socks:
        s.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

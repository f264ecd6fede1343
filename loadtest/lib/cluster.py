#!/usr/bin/env python3
"""Holds streams on several gateway nodes at once and publishes on one of them: the load of
`loadtest/run --cluster`'s many-node run, with the figures of every stream in one histogram.

usage: cluster.py --loadgen BIN --url URL [--url URL ...] --publish-url URL [options]

`sse-loadgen` takes one `--url`, and six parents (one per node) could only report six sets of
percentiles, which do not add up to the percentiles of all streams, and would each publish their
own events on their own channel. So this script plays the part of sse-loadgen's parent process
itself: it starts sse-loadgen's own stream-holding child processes (`sse-loadgen --child`, one
or more per node, each under the 20,000 open-files limit), speaking their line protocol
(loadtest/src/children.rs):

    child  -> parent   ready {"open":N,"failed":N,"rss_kib_before":K,"rss_kib_idle":K}
    parent -> child    done <last seq published>
    child  -> parent   result {PoolStats: counts and (value, count) histogram buckets}

Once every child is ready it publishes `--events` events at `--rate` per second on ONE node
(`--publish-url`), one channel, the data `"<seq> <unix_nanos> <padding>"` as sse-loadgen's
publisher writes it (loadtest/src/payload.rs), so every event goes to every stream of every node.
The children's latency histograms are merged bucket by bucket (they share the HDR bucketing), so
the percentiles below are those of all deliveries, exactly as sse-loadgen computes them; the same
figures are also kept per node. It prints one JSON line shaped like sse-loadgen's (`--json`), with
`nodes` and `publish_ms` added.

Everything is bounded: the children get `--duration` less one second, and at `--duration` this
script kills whatever is left. Only loopback URLs are accepted (the children check it too).
"""
import argparse
import http.client
import ipaddress
import json
import math
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

# Streams per child process: sse-loadgen's own split (a process may hold 20,000 open files).
PER_CHILD = 18_000
PUBLISH_TIMEOUT = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


def loopback_target(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        sys.exit(f"cluster.py: {url!r}: only http:// URLs")
    for info in socket.getaddrinfo(u.hostname, u.port or 80, proto=socket.IPPROTO_TCP):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            sys.exit(f"cluster.py: refusing {url!r}: not loopback")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


def percentiles(buckets):
    """(value_us, count) pairs -> percentiles in ms, as hdrhistogram's value_at_quantile."""
    pairs = sorted(buckets)
    total = sum(n for _, n in pairs)
    if total == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "count": 0}

    def at(q):
        want = max(1, math.ceil(q * total))
        seen = 0
        for value, n in pairs:
            seen += n
            if seen >= want:
                return value / 1000.0
        return pairs[-1][0] / 1000.0

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": pairs[-1][0] / 1000.0,
            "count": total}


def merge(into, buckets):
    for value, n in buckets:
        into[value] = into.get(value, 0) + n


def proc_figures(pid):
    rss = 0
    cpu = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        pass
    return rss, cpu


class Child:
    def __init__(self, node, args, share, ramp, child_secs, lines, stderr):
        self.node = node
        self.share = share
        cmd = [args.loadgen, "--child", "--url", args.url[node], "--streams", str(share),
               "--ramp", str(ramp), "--source-ips", str(args.source_ips),
               "--event-bytes", str(args.event_bytes), "--settle", str(args.settle),
               "--duration", f"{child_secs:.3f}"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, text=True, bufsize=1)
        self.ready = None
        self.result = None
        self.rss_kib_max = 0
        self.cpu_seconds = 0.0
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()

    def _read(self, lines):
        for line in self.proc.stdout:
            tag, _, payload = line.strip().partition(" ")
            if tag in ("ready", "result"):
                lines.put((self, tag, payload))
        lines.put((self, "eof", ""))

    def say(self, text):
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def sample(self):
        rss, cpu = proc_figures(self.proc.pid)
        self.rss_kib_max = max(self.rss_kib_max, rss)
        if cpu:
            self.cpu_seconds = cpu


class Publisher:
    """One keep-alive connection, one POST at a time, as sse-loadgen's publisher."""

    def __init__(self, url, api_key, channel):
        self.host, self.port, self.path = loopback_target(url)
        self.api_key = api_key
        self.channel = channel
        self.conn = None

    def _post(self, body):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=PUBLISH_TIMEOUT)
        headers = {"Content-Type": "application/json", "User-Agent": "sse-loadgen-cluster"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        self.conn.request("POST", self.path, body=body, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read()
        return resp.status, text[:200]

    def publish(self, data):
        """'accepted' | ('rejected', why) | ('unknown', why)."""
        body = json.dumps({"channel": self.channel, "event": "bench", "data": data})
        for attempt in range(2):
            try:
                status, text = self._post(body)
                if 200 <= status < 300:
                    return "accepted", None
                return "rejected", f"HTTP {status}: {text!r}"
            except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError) as e:
                # A stale keep-alive connection: retry once on a new one.
                self.conn = None
                if attempt == 1:
                    return "unknown", str(e)
            except (OSError, http.client.HTTPException) as e:
                self.conn = None
                return "unknown", str(e)
        return "unknown", "unreachable"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loadgen", required=True, help="the sse-loadgen binary")
    ap.add_argument("--url", action="append", required=True,
                    help="a node's stream URL; once per node (streams are split evenly)")
    ap.add_argument("--publish-url", required=True)
    ap.add_argument("--channel", default="bench")
    ap.add_argument("--api-key", default=os.environ.get("SSE_LOADGEN_API_KEY"))
    ap.add_argument("--streams", type=int, required=True, help="over all nodes")
    ap.add_argument("--ramp", type=float, default=2000.0, help="streams opened per second, in all")
    ap.add_argument("--source-ips", type=int, default=8)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--event-bytes", type=int, default=64)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=120.0, help="hard stop, seconds")
    ap.add_argument("--stderr", help="file for the children's stderr (default: inherit)")
    args = ap.parse_args()
    if args.streams < 1 or args.rate <= 0 or args.ramp <= 0 or args.duration <= 0:
        sys.exit("cluster.py: --streams, --rate, --ramp and --duration must be positive")
    for url in args.url:
        loopback_target(url)
    started = time.monotonic()
    deadline = started + args.duration
    stderr = open(args.stderr, "a") if args.stderr else None

    # Split the streams evenly over the nodes, and each node's share over enough children.
    nodes = len(args.url)
    plan = []
    for node in range(nodes):
        share = args.streams // nodes + (1 if node < args.streams % nodes else 0)
        k = max(1, math.ceil(share / PER_CHILD))
        for j in range(k):
            plan.append((node, share // k + (1 if j < share % k else 0)))
    lines = queue.Queue()
    child_secs = max(0.5, args.duration - 1.0)
    children = [Child(node, args, share, args.ramp * share / args.streams, child_secs, lines, stderr)
                for node, share in plan if share > 0]

    def wait_for(tag):
        pending = {c for c in children if getattr(c, tag) is None}
        while pending and time.monotonic() < deadline:
            for c in children:
                c.sample()
            try:
                child, got, payload = lines.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if got == tag:
                try:
                    setattr(child, tag, json.loads(payload))
                except ValueError:
                    pass
                pending.discard(child)
            elif got == "eof":
                pending.discard(child)

    wait_for("ready")
    ramp_seconds = time.monotonic() - started
    open_total = sum((c.ready or {}).get("open", 0) for c in children)

    # Publish on one node, on an absolute schedule.
    pub = Publisher(args.publish_url, args.api_key, args.channel)
    published = errors = last_seq = 0
    first_error = None
    publish_us = {}
    t0 = time.monotonic()
    for attempt in range(args.events):
        at = t0 + attempt / args.rate
        if at >= deadline:
            break
        while time.monotonic() < at:
            for c in children:
                c.sample()
            time.sleep(min(0.25, max(0.0, at - time.monotonic())))
        seq = last_seq + 1
        data = f"{seq} {time.time_ns()} "
        data += "x" * max(0, args.event_bytes - len(data))
        sent = time.monotonic()
        outcome, why = pub.publish(data)
        took = int((time.monotonic() - sent) * 1e6)
        if outcome == "accepted":
            published += 1
            last_seq = seq
            merge(publish_us, [(took, 1)])
        else:
            errors += 1
            if outcome == "unknown":
                last_seq = seq  # may still be delivered: streams wait for it
            first_error = first_error or f"publish {seq}: {why}"
    publish_seconds = time.monotonic() - t0

    for c in children:
        c.sample()
        c.say(f"done {last_seq}")
    wait_for("result")
    for c in children:
        c.sample()
        try:
            c.proc.stdin.close()
        except OSError:
            pass
    for c in children:
        try:
            c.proc.wait(timeout=max(0.1, min(2.0, deadline + 1 - time.monotonic())))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()

    # Add up, over all streams and per node.
    def add_up(group):
        s = {"requested": 0, "open": 0, "failed": 0, "delivered": 0, "duplicates": 0, "gaps": 0,
             "disconnects": 0, "resets": 0, "malformed": 0}
        lat, conn = {}, {}
        first = None
        for c in group:
            r = c.result
            if r is None:
                s["requested"] += c.share
                s["failed"] += c.share
                first = first or "a child process sent no result"
                continue
            for k in s:
                s[k] += r.get(k, 0)
            merge(lat, r.get("latency_us", []))
            merge(conn, r.get("connect_us", []))
            first = first or r.get("first_error")
        return s, lat, conn, first

    s, lat, conn, stream_error = add_up(children)
    per_node = []
    for node in range(nodes):
        group = [c for c in children if c.node == node]
        ns, nlat, nconn, nerr = add_up(group)
        per_node.append({
            "url": args.url[node], "processes": len(group), "streams_open": ns["open"],
            "streams_failed": ns["failed"], "delivered": ns["delivered"],
            "expected": ns["open"] * published, "duplicates": ns["duplicates"], "gaps": ns["gaps"],
            "disconnects": ns["disconnects"], "latency_ms": percentiles(nlat.items()),
            "connect_ms": percentiles(nconn.items()), "first_error": nerr,
            "loadgen_rss_kib_max": sum(c.rss_kib_max for c in group),
            "loadgen_cpu_seconds": round(sum(c.cpu_seconds for c in group), 2),
        })
    rss_before = sum((c.ready or {}).get("rss_kib_before", 0) for c in children)
    rss_idle = sum((c.ready or {}).get("rss_kib_idle", 0) for c in children)
    report = {
        "streams_requested": args.streams,
        "streams_open": s["open"],
        "streams_failed": args.streams - s["open"],
        "connect_ms": percentiles(conn.items()),
        "events_requested": args.events,
        "events_published": published,
        "publish_errors": errors,
        "expected": s["open"] * published,
        "delivered": s["delivered"],
        "duplicates": s["duplicates"],
        "gaps": s["gaps"],
        "disconnects": s["disconnects"],
        "resets": s["resets"],
        "malformed": s["malformed"],
        "latency_ms": percentiles(lat.items()),
        "publish_ms": percentiles(publish_us.items()),
        "server": {"rss_kib_idle": None, "rss_kib_max": None, "cpu_percent_avg": None},
        "loadgen": {
            "processes": len(children),
            "rss_kib_before": rss_before,
            "rss_kib_idle": rss_idle,
            "rss_bytes_per_stream": (rss_idle - rss_before) * 1024 // s["open"] if s["open"] else 0,
            "rss_kib_max": sum(c.rss_kib_max for c in children),
            "cpu_seconds": round(sum(c.cpu_seconds for c in children), 2),
        },
        "phases_s": {"ramp": round(ramp_seconds, 2), "publish": round(publish_seconds, 2)},
        "nodes": per_node,
        "elapsed_s": time.monotonic() - started,
        "first_error": stream_error or first_error,
    }
    report["pass"] = (report["streams_open"] == args.streams and published == args.events
                      and errors == 0 and report["delivered"] == report["expected"]
                      and report["duplicates"] == 0 and report["gaps"] == 0
                      and report["disconnects"] == 0 and report["malformed"] == 0)
    print(json.dumps(report))
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The reverse-proxy benchmark (`loadtest/run --proxy`): the gateway's routes against nginx
`proxy_pass` and HAProxy, same backend, same client, back to back in one run.

usage: proxy.py --gateway BIN --loadgen BIN --floor BIN --raw DIR --report OUT.md
                [--rounds 3] [--connections 32] [--seconds 10] [--streams 1000]
                [--baseline BIN] [--pingora BIN] [--targets gateway,baseline,pingora,nginx,haproxy]
                [--parts wrk,streams]

--baseline adds another build of the gateway (say, main's) to every round, for an A/B of the
same command: the report then shows the gateway against it too. --pingora adds the bare pingora
proxy (examples/pingora_proxy.rs): the report then shows what the gateway costs over pingora. --targets runs only some of
the proxies, --parts only the requests (wrk) or only the streams (quicker A/B runs; the
targets against the peers need both parts and both peers).

Each round starts a fresh backend (nginx answering a small fixed body, loadtest/peers/proxy)
and a fresh SSE upstream (sse-floor), then, for each proxy in turn (the order rotates from
round to round, so none always runs first), a fresh proxy in front of both:
  1. streams: `sse-loadgen` opens --streams SSE streams through the proxy to sse-floor, the
     proxy's RSS (VmRSS summed over its processes) is read before and once all are open, then
     10 events are published straight to sse-floor and counted at every stream;
  2. requests: `wrk --latency` keep-alive GETs of the small body through the proxy, after a
     2 s warm-up: req/s, p50 and p99, and the proxy's CPU per request (user and kernel,
     from /proc/PID/stat over every process of it).
The backend alone (wrk straight at it) is measured in every round too: its ceiling must be
above every proxied figure, or the backend would be what is measured.
Figures are medians over the rounds; every target is against the better peer (req/s, p99) or
nginx (memory per stream), as a ratio with a pass/fail mark. Writes RAW/*.json (every run) and
the markdown report, prints the table, and exits 1 if a target was missed or an event lost.
Only 127.0.0.1 is used; every process started here is stopped by pid.
"""
import argparse
import json
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers", "proxy")
BENCH_YAML = os.path.join(HERE, "..", "bench.yaml")
ALL_PROXIES = ("gateway", "baseline", "pingora", "nginx", "haproxy")
PROXIES = ("gateway", "nginx", "haproxy")  # the proxies of this run (set in main)
PATH_SMALL = "/small/hello"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids):
    """(user, kernel) CPU seconds summed over the pids, from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = kernel = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            kernel += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / ticks, kernel / ticks


def wait_port(port, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


class Peer:
    """nginx (backend or proxy) or HAProxy, by loadtest/peers/proxy/start and stop."""

    def __init__(self, kind, backend=None, sse=None):
        self.kind = kind
        self.port = free_port()
        args = [os.path.join(PEERS, "start"), kind, str(self.port)]
        if backend:
            args += [backend, sse]
        line = subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout
        fields = dict(kv.split("=", 1) for kv in line.split())
        self.pid, self.dir = int(fields["pid"]), fields["dir"]
        self.addr = f"127.0.0.1:{self.port}"

    def pids(self):
        """The master and its workers; nginx's workers (never HAProxy's one process) are waited
        for, or a reading of the master alone would pass for the server's memory."""
        deadline = time.monotonic() + 5
        while True:
            workers = children(self.pid)
            if workers or self.kind == "haproxy" or time.monotonic() > deadline:
                return [self.pid] + workers
            time.sleep(0.05)

    def stop(self):
        subprocess.run([os.path.join(PEERS, "stop"), self.dir], timeout=30)


class Process:
    """A server of ours that prints `... listening on http://ADDR` (the gateway, sse-floor)."""

    def __init__(self, args, log_prefix):
        self.out = open(log_prefix + ".out", "w+")
        self.err = open(log_prefix + ".err", "w")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=self.err)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.out.seek(0)
            m = re.search(r"listening on http://(\S+)", self.out.read())
            if m:
                self.addr = m.group(1)
                wait_port(int(self.addr.rsplit(":", 1)[1]))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{args[0]} did not start; see {log_prefix}.err")

    def pids(self):
        return [self.pid]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


def gateway_config(raw, backend, sse):
    """loadtest/bench.yaml with two routes: the small body and the event streams."""
    path = os.path.join(raw, "gateway-proxy.yaml")
    with open(BENCH_YAML) as f:
        base = f.read()
    with open(path, "w") as f:
        f.write(base)
        f.write(
            "routes:\n"
            "  - {path_prefix: /small/, upstream: backend}\n"
            "  - {path_prefix: /sub/, upstream: sse, timeout: 0s}\n"
            "upstreams:\n"
            f"  backend: {{servers: [\"{backend}\"]}}\n"
            f"  sse: {{servers: [\"{sse}\"]}}\n"
        )
    return path


def parse_wrk(text):
    def ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    lat = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    return {
        "requests_per_second": float(rps.group(1)) if rps else None,
        "p50_ms": lat.get("50"),
        "p90_ms": lat.get("90"),
        "p99_ms": lat.get("99"),
        "requests": int(total.group(1)) if total else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def run_wrk(args, addr, raw, name, pids):
    """wrk through ADDR; with the server's CPU per request (user and kernel, all of PIDS)."""
    url = f"http://{addr}{PATH_SMALL}"
    base = ["wrk", "-t1", f"-c{args.connections}", "--timeout", "2s"]
    subprocess.run(base + ["-d2s", url], capture_output=True, timeout=30)  # warm-up: pools fill
    cmd = base + [f"-d{args.seconds}s", "--latency", url]
    load0 = os.getloadavg()[0]
    user0, kernel0 = cpu_seconds(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 30).stdout
    user1, kernel1 = cpu_seconds(pids)
    with open(os.path.join(raw, f"{name}.wrk.txt"), "w") as f:
        f.write(out)
    result = parse_wrk(out)
    result["command"] = " ".join(cmd).replace(addr, "ADDR")
    result["loadavg_start"] = load0
    if result["requests"]:
        result["cpu_user_us_per_request"] = round((user1 - user0) * 1e6 / result["requests"], 1)
        result["cpu_kernel_us_per_request"] = round((kernel1 - kernel0) * 1e6 / result["requests"], 1)
    return result


def run_streams(args, target, raw, name, floor):
    pids = target.pids()
    time.sleep(1)
    before = rss_kib(pids)
    cmd = [args.loadgen, "--url", f"http://{target.addr}/sub/bench",
           "--publish-url", f"http://{floor.addr}/pub/bench", "--publish-format", "raw",
           "--streams", str(args.streams), "--ramp", "2000", "--rate", "2", "--events", "10",
           "--settle", "5", "--duration", "60", "--json"]
    for pid in pids:
        cmd += ["--server-pid", str(pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    with open(os.path.join(raw, f"{name}.loadgen.json"), "w") as f:
        json.dump(report, f)
    idle = (report.get("server") or {}).get("rss_kib_idle")
    opened = report.get("streams_open") or 0
    shown = " ".join(shlex.quote(c) for c in cmd[:cmd.index("--server-pid")])
    shown = shown.replace(args.loadgen, "target/release/sse-loadgen").replace(target.addr, "PROXY")
    shown = shown.replace(floor.addr, "FLOOR")
    return {
        "command": shown + " --server-pid PID...",
        "streams_open": opened,
        "rss_kib_before": before,
        "rss_kib_idle": idle,
        "rss_bytes_per_stream": round((idle - before) * 1024 / opened) if idle and opened else None,
        "expected": report.get("expected"),
        "delivered": report.get("delivered"),
        "latency_p99_ms": (report.get("latency_ms") or {}).get("p99"),
        "pass": report.get("pass"),
        "error": report.get("first_error") or (out.stderr[-400:] if not lines else None),
    }


# A part not run (--parts).
NO_WRK = {"requests_per_second": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
          "requests": None, "non_2xx": 0, "socket_errors": 0}
NO_STREAMS = {"streams_open": 0, "rss_kib_before": None, "rss_kib_idle": None,
              "rss_bytes_per_stream": None, "expected": 0, "delivered": 0, "latency_p99_ms": None}


def start_proxy(kind, args, raw, name, backend, floor):
    if kind in ("gateway", "baseline"):
        config = gateway_config(raw, backend.addr, floor.addr)
        binary = args.gateway if kind == "gateway" else args.baseline
        return Process([binary, "--config", config], os.path.join(raw, name + ".gateway"))
    if kind == "pingora":
        return Process([args.pingora, f"127.0.0.1:{free_port()}", backend.addr, floor.addr],
                       os.path.join(raw, name + ".pingora"))
    return Peer(kind, backend.addr, floor.addr)


def one_round(args, k):
    runs = []
    backend = Peer("backend")
    try:
        floor = Process([args.floor, "--listen", "127.0.0.1:0", "--threads", "2", "--max-seconds", "600"],
                        os.path.join(args.raw, f"round{k}.floor"))
        try:
            round_runs(args, k, backend, floor, runs)
        finally:
            floor.stop()
    finally:
        backend.stop()
    return runs


def round_runs(args, k, backend, floor, runs):
    """The backend alone, then each proxy in this round's order (appended to RUNS)."""
    raw = args.raw
    name = f"round{k}.backend"
    if "wrk" in args.parts:
        print(f"== round {k}: backend alone (wrk)", file=sys.stderr)
        runs.append({"round": k, "target": "backend",
                     "wrk": run_wrk(args, backend.addr, raw, name, backend.pids())})
    order = PROXIES[k % len(PROXIES):] + PROXIES[:k % len(PROXIES)]
    for kind in order:
        name = f"round{k}.{kind}"
        print(f"== round {k}: {kind}", file=sys.stderr)
        proxy = start_proxy(kind, args, raw, name, backend, floor)
        try:
            streams = run_streams(args, proxy, raw, name, floor) if "streams" in args.parts else NO_STREAMS
            wrk = run_wrk(args, proxy.addr, raw, name, proxy.pids()) if "wrk" in args.parts else NO_WRK
        finally:
            proxy.stop()
        print("   " + json.dumps({
            "wrk": {x: wrk.get(x) for x in ("requests_per_second", "p99_ms", "non_2xx", "socket_errors",
                                            "cpu_user_us_per_request", "cpu_kernel_us_per_request")},
            "streams": {x: streams.get(x) for x in ("streams_open", "rss_bytes_per_stream", "delivered", "expected")},
        }), file=sys.stderr)
        runs.append({"round": k, "target": kind, "streams": streams, "wrk": wrk})


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    out = {}
    for target in ("backend",) + PROXIES:
        mine = [r for r in runs if r["target"] == target]
        s = {
            "rounds": len(mine),
            "rps": median([r["wrk"]["requests_per_second"] for r in mine]),
            "p99_ms": median([r["wrk"]["p99_ms"] for r in mine]),
            "p50_ms": median([r["wrk"]["p50_ms"] for r in mine]),
            "errors": sum(r["wrk"]["non_2xx"] + r["wrk"]["socket_errors"] for r in mine),
            "cpu_user": median([r["wrk"].get("cpu_user_us_per_request") for r in mine]),
            "cpu_kernel": median([r["wrk"].get("cpu_kernel_us_per_request") for r in mine]),
        }
        if target != "backend":
            s["events_run"] = any(r["streams"]["expected"] for r in mine)
            s["per_stream"] = median([r["streams"]["rss_bytes_per_stream"] for r in mine])
            s["delivered"] = sum(r["streams"]["delivered"] or 0 for r in mine)
            s["expected"] = sum(r["streams"]["expected"] or 0 for r in mine)
            s["opened"] = min((r["streams"]["streams_open"] for r in mine), default=0)
            s["event_p99_ms"] = median([r["streams"]["latency_p99_ms"] for r in mine])
        out[target] = s
    return out


def ab_rows(s, other="baseline"):
    """The gateway against another target (the baseline build): (figure, gateway, other, ratio)."""
    gw, base = s["gateway"], s[other]
    rows = []
    for figure, key, fmt in (("req/s (median)", "rps", "{:,.0f}"), ("p99 (median)", "p99_ms", "{:.2f} ms"),
                             ("CPU per request, user + kernel (median)", "cpu", "{:.1f} µs"),
                             ("RSS per proxied idle stream (median)", "per_stream", None)):
        a, b = gw.get(key), base.get(key)
        if key == "cpu":
            a = gw["cpu_user"] + gw["cpu_kernel"] if gw["cpu_user"] is not None else None
            b = base["cpu_user"] + base["cpu_kernel"] if base["cpu_user"] is not None else None
        if a is None or b is None:
            continue
        shown = (lambda v: kib(v)) if fmt is None else (lambda v, f=fmt: f.format(v))
        rows.append((figure, shown(a), shown(b), a / b if b else None))
    return rows


def verdicts(s):
    """(figure, gateway, peer shown, ratio, pass) for each target (none without both peers)."""
    if not all(t in s for t in ("gateway", "nginx", "haproxy")):
        return None, []
    gw, ng, ha = s["gateway"], s["nginx"], s["haproxy"]
    better = max(("nginx", "haproxy"), key=lambda t: s[t]["rps"] or 0)
    rows = []
    if gw["rps"] is None or s[better]["rps"] is None:
        better = None
    if better:
        rps_ratio = gw["rps"] / s[better]["rps"]
        rows.append(("req/s (median)", f"{gw['rps']:,.0f}", f"{better} {s[better]['rps']:,.0f}",
                     rps_ratio, rps_ratio >= 1.0))
        p99_ratio = gw["p99_ms"] / s[better]["p99_ms"] if gw["p99_ms"] and s[better]["p99_ms"] else None
        rows.append(("p99 (median)", f"{gw['p99_ms']:.2f} ms", f"{better} {s[better]['p99_ms']:.2f} ms",
                     p99_ratio, p99_ratio is not None and p99_ratio <= 1.0))
        if gw["cpu_user"] is not None and ng["cpu_user"] is not None and ha["cpu_user"] is not None:
            ours = gw["cpu_user"] + gw["cpu_kernel"]
            leaner = min(("nginx", "haproxy"), key=lambda t: s[t]["cpu_user"] + s[t]["cpu_kernel"])
            theirs = s[leaner]["cpu_user"] + s[leaner]["cpu_kernel"]
            rows.append(("CPU per request, user + kernel (median; shown, not a target)", f"{ours:.1f} µs",
                         f"{leaner} {theirs:.1f} µs", ours / theirs, None))
    if gw["events_run"]:
        mem_ratio = gw["per_stream"] / ng["per_stream"] if gw["per_stream"] and ng["per_stream"] else None
        rows.append(("RSS per proxied idle stream (median)", kib(gw["per_stream"]), f"nginx {kib(ng['per_stream'])}",
                     mem_ratio, mem_ratio is not None and mem_ratio <= 1.0))
        for t in PROXIES:
            ok = s[t]["expected"] > 0 and s[t]["delivered"] == s[t]["expected"]
            rows.append((f"events through {t}", f"{s[t]['delivered']:,} / {s[t]['expected']:,}", "all", None, ok))
    return better, rows


def kib(b):
    return "-" if b is None else f"{b / 1024:.1f} KiB"


NAMES = {"backend": "backend alone", "gateway": "sse-gateway", "baseline": "sse-gateway (baseline build)",
         "pingora": "bare pingora proxy",
         "nginx": "nginx `proxy_pass`", "haproxy": "HAProxy"}


def table(s, parts):
    lines = ["| | " + " | ".join(NAMES[t] for t in ("backend",) + PROXIES) + " |",
             "|---" * (len(PROXIES) + 2) + "|"]

    def row(label, cell, with_backend):
        cells = [cell(s[t]) for t in PROXIES]
        lines.append(f"| {label} | " + ("" if not with_backend else cell(s["backend"])) + " | "
                     + " | ".join(cells) + " |")

    if "wrk" in parts:
        row("req/s, small body, keep-alive", lambda t: f"{t['rps']:,.0f}" if t["rps"] else "-", True)
        row("p50 / p99", lambda t: f"{t['p50_ms']:.2f} / {t['p99_ms']:.2f} ms" if t["p99_ms"] else "-", True)
        row("server CPU per request, user + kernel",
            lambda t: f"{t['cpu_user']:.1f} + {t['cpu_kernel']:.1f} µs" if t["cpu_user"] is not None else "-", True)
    if "streams" in parts:
        row("RSS per proxied idle stream", lambda t: kib(t["per_stream"]), False)
        row("events delivered / expected (all rounds)", lambda t: f"{t['delivered']:,} / {t['expected']:,}", False)
        row("event p99, publish to receipt",
            lambda t: f"{t['event_p99_ms']:.1f} ms" if t["event_p99_ms"] is not None else "-", False)
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--command", default="loadtest/run --proxy")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--baseline", help="another gateway binary measured in the same rounds (A/B)")
    ap.add_argument("--pingora", help="the bare pingora proxy (examples/pingora_proxy.rs), measured in the same "
                    "rounds: what the gateway costs over the proxy it is built on")
    ap.add_argument("--targets", default=",".join(ALL_PROXIES), help="the proxies to run, comma-separated")
    ap.add_argument("--parts", default="wrk,streams", help="wrk, streams or both")
    args = ap.parse_args()
    args.parts = args.parts.split(",")
    global PROXIES
    PROXIES = tuple(t for t in ALL_PROXIES if t in args.targets.split(",")
                    and (t != "baseline" or args.baseline) and (t != "pingora" or args.pingora))
    if "gateway" not in PROXIES:
        ap.error("--targets must include gateway")
    os.makedirs(args.raw, exist_ok=True)
    # bench.yaml's publish key (unused here: the events are published to sse-floor).
    os.environ.setdefault("BENCH_KEY", f"bench-{os.getpid()}-{time.time_ns()}")

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    uptime0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    runs = []
    for k in range(1, args.rounds + 1):
        runs += one_round(args, k)
    uptime1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with open(os.path.join(args.raw, "runs.json"), "w") as f:
        json.dump(runs, f, indent=1)

    s = summarize(runs)
    better, rows = verdicts(s)
    figures = table(s, args.parts)
    targets = []
    if rows:
        targets = ["| target | sse-gateway | against | ratio | |", "|---|---|---|---|---|"]
        for figure, ours, theirs, ratio, ok in rows:
            r = f"{ratio:.2f}x" if ratio is not None else ""
            mark = "" if ok is None else ("pass" if ok else "FAIL")
            targets.append(f"| {figure} | {ours} | {theirs} | {r} | {mark} |")
    over = []
    if "pingora" in PROXIES:
        over = ["| the gateway over bare pingora | sse-gateway | bare pingora proxy | ratio |", "|---|---|---|---|"]
        over += [f"| {f} | {a} | {b} | {r:.2f}x |" for f, a, b, r in ab_rows(s, "pingora") if r is not None]
    ab = []
    if "baseline" in PROXIES:
        ab = ["| A/B | sse-gateway | baseline build | ratio |", "|---|---|---|---|"]
        ab += [f"| {f} | {a} | {b} | {r:.2f}x |" for f, a, b, r in ab_rows(s) if r is not None]
        ab += ["", f"Baseline build: `{args.baseline}`."]
    print("\n".join(figures + [""] + targets + [""] + over + [""] + ab))

    wrk_cmd = next((r["wrk"].get("command") for r in runs if r["target"] == "gateway"), None)
    sse_cmd = next((r["streams"].get("command") for r in runs if r["target"] == "gateway"), None)
    build = ""
    try:
        with open(os.path.join(args.raw, "build.txt")) as f:
            build = f.read().strip()
    except OSError:
        pass
    md = [f"# Reverse proxy: sse-gateway against nginx and HAProxy ({started})", "",
          f"`{args.command}`: {args.rounds} rounds; in each, a fresh backend and SSE upstream, then "
          "each proxy fresh in turn (the order rotates). Figures are medians over the rounds.", "",
          *figures, "",
          "Targets: proxied req/s at least the better peer's with a p99 no worse; RSS per "
          "proxied idle stream no more than nginx's; every event through every proxy.", "",
          *targets, "", *over, "", *ab, "",
          "## Setup", "",
          "- backend: nginx (`loadtest/peers/proxy/backend.conf.template`) answering "
          f"`GET {PATH_SMALL}` with a 33-byte body from memory, 2 workers;",
          "- SSE upstream: `sse-floor --threads 2` (`GET /sub/bench` opens a stream, `POST "
          "/pub/bench` writes the body to every stream);",
          "- sse-gateway: `loadtest/bench.yaml` with routes `/small/` -> backend and `/sub/` -> "
          "sse (`timeout: 0s`);",
          "- nginx: `loadtest/peers/proxy/nginx.conf.template` (2 workers, `keepalive 128` "
          "upstream, `proxy_buffering off` for `/sub/`);",
          "- HAProxy: `loadtest/peers/proxy/haproxy.cfg.template` (`nbthread 2`, `http-reuse always`);",
          "- bare pingora proxy (with --pingora): `examples/pingora_proxy.rs`, pingora's `HttpProxy` "
          "choosing the upstream by path and nothing else, as many threads as the gateway;",
          f"- requests: `{wrk_cmd}` after a 2 s warm-up;",
          f"- streams: `{sse_cmd}`; RSS per stream = (summed VmRSS once all streams are open - "
          "before) / streams open;",
          "- CPU per request: the server's utime and stime (`/proc/PID/stat`, every process of it) "
          "over the measured wrk run, divided by its requests;",
          f"- build: {build}",
          f"- `uptime` at the start: `{uptime0}`",
          f"- `uptime` at the end: `{uptime1}`", "",
          "## Every run", "",
          "| round | target | req/s | p50 | p99 | errors | CPU/request (user + kernel) | streams open | RSS before | RSS with streams | per stream | delivered | event p99 |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        w, st = r["wrk"], r.get("streams")
        cells = [str(r["round"]), r["target"],
                 f"{w['requests_per_second']:,.0f}" if w["requests_per_second"] else "-",
                 f"{w['p50_ms']:.2f} ms" if w["p50_ms"] else "-",
                 f"{w['p99_ms']:.2f} ms" if w["p99_ms"] else "-",
                 str(w["non_2xx"] + w["socket_errors"]),
                 f"{w['cpu_user_us_per_request']} + {w['cpu_kernel_us_per_request']} µs"
                 if w.get("cpu_user_us_per_request") is not None else "-"]
        if st and st.get("streams_open"):
            cells += [str(st["streams_open"]), f"{st['rss_kib_before']:,} KiB",
                      f"{st['rss_kib_idle']:,} KiB" if st["rss_kib_idle"] else "-",
                      kib(st["rss_bytes_per_stream"]),
                      f"{st['delivered']} / {st['expected']}",
                      f"{st['latency_p99_ms']:.1f} ms" if st["latency_p99_ms"] is not None else "-"]
        else:
            cells += [""] * 6
        md.append("| " + " | ".join(cells) + " |")
    with open(args.report, "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"wrote {args.report}")
    return 0 if all(ok for *_, ok in rows if ok is not None) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the benchmark report: a markdown table against the targets, the exact commands, and an
SVG plot of publish->receive latency percentiles against stream count.

usage: report.py RAW_DIR OUT.md OUT.svg
       report.py --cluster RAW_DIR OUT.md     (loadtest/run --cluster: nodes on one Redis)
       report.py --chaos RAW_DIR OUT.md       (loadtest/run --chaos: faults during steady traffic)
       report.py --perf RAW_DIR OUT.md [OUT.svg]  (loadtest/run --perf: the targets as ratios to the
                                                   floor, and a chart of them)
"""
import glob
from html import escape
import json
import os
import platform
import sys
import time



def commands(runs):
    """The command of every run, in a code block: what a reader reruns."""
    lines = ["```"]
    for (t, name), r in sorted(runs.items()):
        lines += [f"# {t} {name}", r.get("command", "")]
    return lines + ["```", ""]

def load(raw, targets=("gateway", "nchan", "floor", "source")):
    runs = {}
    for path in glob.glob(os.path.join(raw, "*.json")):
        base = os.path.basename(path)
        # TARGET.SCENARIO.json only (not the .loadgen / .server parts).
        if base.count(".") != 2 or base.split(".")[0] not in targets:
            continue
        try:
            with open(path) as f:
                r = json.load(f)
        except ValueError:
            continue
        runs[(r["target"], r["scenario"])] = r
    return runs


def lat(r, p):
    return (r or {}).get("loadgen", {}).get("latency_ms", {}).get(p)


def delivered(r):
    lg = (r or {}).get("loadgen", {})
    if not lg.get("expected"):
        return None
    return 100.0 * lg.get("delivered", 0) / lg["expected"]


def rss_per_stream(r):
    if not r:
        return None
    s, lg = r["server"], r.get("loadgen", {})
    n = lg.get("streams_open") or r["streams"]
    return (s["rss_kib_max"] - s["rss_kib_start"]) / n if n else None


def per_event(figures):
    """CPU per delivered event, "user + kernel" in µs, from sse-loadgen's figures."""
    u, k = (figures or {}).get("cpu_user_us_per_event"), (figures or {}).get("cpu_kernel_us_per_event")
    return "n/a" if u is None or k is None else f"{u:.1f} + {k:.1f} µs"


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def ratio(ours, theirs, lower_is_better=True):
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return ""
    r = theirs / ours if lower_is_better else ours / theirs
    return f"{r:.1f}x better" if r >= 1 else f"{1 / r:.1f}x worse"


def main():
    if sys.argv[1] == "--cluster":
        return cluster_main(*sys.argv[2:4])
    if sys.argv[1] == "--chaos":
        return chaos_main(*sys.argv[2:4])
    if sys.argv[1] == "--perf":
        return perf_main(*sys.argv[2:5])
    raw, out_md, out_svg = sys.argv[1:4]
    runs = load(raw)
    g = lambda name: runs.get(("gateway", name))
    n = lambda name: runs.get(("nchan", name))
    fl = lambda name: runs.get(("floor", name))
    rows = []

    def row(figure, target, ours, theirs, met, lower=True, floor=("", None)):
        if ours[1] is None and theirs[1] is None and "n/a" in f"{ours[0]}{theirs[0]}":
            return  # not part of this run (e.g. `loadtest/run --source`)
        # How many times the floor's figure ours is (the floor is the least any server can do).
        over = f"{ours[1] / floor[1]:.2f}x" if ours[1] and floor[1] else ""
        rows.append((figure, target, ours[0], theirs[0], ratio(ours[1], theirs[1], lower), floor[0],
                     over, "yes" if met else "**no**"))

    v, w = rss_per_stream(g("idle_10k")), rss_per_stream(n("idle_10k"))
    row("RSS per idle stream at 10,000 streams", "<= 8 KiB", (fmt(v, " KiB", 2), v), (fmt(w, " KiB", 2), w), v is not None and v <= 8)
    for name, figure, target, p99max, need_all in [
        ("fanout_10000_2", "10,000 streams x 2 events/s, p99", "<= 50 ms", 50, False),
        ("fanout_10000_20", "10,000 streams x 20 events/s, delivered / p99", "100%, <= 250 ms", 250, True),
        ("fanout_19000_2", "19,000 streams in one process x 2 events/s, delivered / p99", "100%, <= 150 ms", 150, True),
    ]:
        a, b, c = g(name), n(name), fl(name)
        pa, pb, pc = lat(a, "p99"), lat(b, "p99"), lat(c, "p99")
        da, db, dc = delivered(a), delivered(b), delivered(c)
        met = pa is not None and pa <= p99max and (not need_all or da == 100.0)
        both = lambda d, p: f"{fmt(d, '%', 2)} / {fmt(p, ' ms')}" if need_all else fmt(p, " ms")
        floor = (both(dc, pc), pc) if c else ("", None)
        row(figure, target, (both(da, pa), pa), (both(db, pb), pb), met, floor=floor)
    s = runs.get(("source", "source_10000_2"))
    if s:
        ps = lat(s, "p99")
        row("Upstream source event -> 10,000 streams x 2 events/s (one upstream connection), delivered / p99",
            "100%, <= 50 ms (as POST /broadcast)", (f"{fmt(delivered(s), '%', 2)} / {fmt(ps, ' ms')}", ps),
            ("not applicable", None), ps is not None and ps <= 50 and delivered(s) == 100.0)
    a, b = g("k6_streams"), n("k6_streams")
    if a or b:
        def k6_streams(r):
            if not r:
                return "not measured"
            m = r.get("k6", {}).get("metrics", {})
            missing = m.get("events_missing", {}).get("count", 0)
            dup = m.get("events_duplicate", {}).get("count", 0)
            ok = m.get("stream_ok", {}).get("value")
            verdict = "all events" if r["exit"] == 0 else "thresholds crossed"
            return f"{verdict}: {missing} missing, {dup} duplicate, streams ok {fmt(100 * ok if ok is not None else None, '%')}"
        row("k6: 2,000 VUs hold streams, 40 events each, counted in the body", "every event, once",
            (k6_streams(a), None), (k6_streams(b), None), bool(a) and a["exit"] == 0)
    def k6_rate(r):
        m = (r or {}).get("k6", {}).get("metrics", {})
        return m.get("http_reqs", {}).get("rate"), m.get("http_req_duration", {}).get("p(99)")

    ceiling = fl("k6_publish")
    crate, cp99 = k6_rate(ceiling)
    floor = (f"k6's ceiling: {fmt(crate, ' req/s', 0)}, p99 {fmt(cp99, ' ms')}", crate) if ceiling else ("", None)
    for name, figure in [
        ("k6_publish", "POST /broadcast with 1,000 subscribers on the published channel (k6, batches)"),
        ("k6_publish_other", "POST /broadcast with 1,000 subscribers on another channel (k6, batches)"),
    ]:
        k = g(name)
        if not k:
            continue
        rps, p99 = k6_rate(k)
        met = rps is not None and p99 is not None and rps >= 20000 and p99 <= 20
        row(figure, ">= 20,000 req/s, p99 <= 20 ms", (f"{fmt(rps, ' req/s', 0)}, p99 {fmt(p99, ' ms')}", rps),
            ("not measured", None), met, lower=False, floor=floor)

    curve = sorted(
        (r["streams"], r) for (t, name), r in runs.items() if name.startswith("fanout_") and name.endswith("_2")
        and t == "gateway"
    )
    lines = [
        f"# Benchmark results, {time.strftime('%Y-%m-%d', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; server and load",
        "generator share it. Made by `loadtest/run`; every figure below comes from the commands listed at",
        "the end. nchan is nginx + libnginx-mod-nchan from Debian, 2 worker processes (see",
        "`loadtest/peers/nchan/`). The floor is `sse-floor` (`loadtest/src/bin/sse-floor.rs`), 2 threads:",
        "one `write` per stream per event straight from an epoll loop, nothing else, i.e. the least",
        "any HTTP/1.1 SSE server can do here under the same load generator to send each event on its",
        "own. It does not batch, so where events come faster than one fan-out takes (20 events/s to",
        "10,000 streams) it falls behind and the gateway, which writes whatever is queued in one write,",
        "beats it. \"x floor\" is the gateway's figure over the floor's; for k6 the floor is k6's own",
        "ceiling here, `sse-floor` answering the publishes with nothing else to do.",
        "",
        "## Against the targets",
        "",
        "| figure | target | sse-gateway | nginx + nchan | ratio | floor (sse-floor) | x floor | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Every run", "",
              "| target | scenario | streams open | events | delivered | dup | gaps | disconnects | connect p99 | latency p50 / p90 / p99 / max | server RSS max | server CPU | CPU per delivered event, server / load generator (user + kernel) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (t, name), r in sorted(runs.items()):
        lg = r.get("loadgen", {})
        if not lg:
            continue
        l = lg.get("latency_ms", {})
        lines.append(
            f"| {t} | {name} | {lg.get('streams_open')} | {lg.get('events_published')} | "
            f"{lg.get('delivered')} / {lg.get('expected')} | {lg.get('duplicates')} | {lg.get('gaps')} | "
            f"{lg.get('disconnects')} | {fmt(lg.get('connect_ms', {}).get('p99'), ' ms')} | "
            f"{fmt(l.get('p50'))} / {fmt(l.get('p90'))} / {fmt(l.get('p99'))} / {fmt(l.get('max'))} ms | "
            f"{r['server']['rss_kib_max'] / 1024:,.1f} MiB | {r['server']['cpu_percent_avg']}% | "
            f"{per_event(lg.get('server'))} / {per_event(lg.get('loadgen'))} |")
    lines += ["", f"![latency percentiles against stream count]({os.path.basename(out_svg)})", "",
              "## Commands", "", "The load generator is `target/release/sse-loadgen`; `$BENCH_KEY` is the",
              "publish key the script sets for the gateway. Each run starts a fresh server.", ""]
    lines += commands(runs)
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    write_svg(runs, out_svg)


def cpu_per_event(r):
    """Server CPU per delivered event (user + kernel, µs) of a run, or None."""
    f = (r or {}).get("loadgen", {}).get("server") or {}
    u, k = f.get("cpu_user_us_per_event"), f.get("cpu_kernel_us_per_event")
    return None if u is None or k is None else u + k


def achieved(r):
    """", N/s": the publishes per second a run achieved, when sse-loadgen reported it."""
    rate = (r or {}).get("loadgen", {}).get("publish_rate")
    return "" if rate is None else f", {rate:.1f}/s"


def criterion_median(raw, group, name):
    """The median time (ns) of a criterion benchmark whose estimates are under RAW/criterion."""
    try:
        with open(os.path.join(raw, "criterion", group, name, "new", "estimates.json")) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, ValueError, KeyError):
        return None


def write_ratio_svg(plotted, path):
    """One bar per target: the measured ratio, a tick at its limit, green where met."""
    W, L, R, T, row_h = 760, 300, 40, 40, 26
    H = T + row_h * len(plotted) + 40
    top = max([v for _, v, _, _, _ in plotted] + [lim for _, _, lim, _, _ in plotted] + [1.0]) * 1.1
    X = lambda v: L + min(v, top) / top * (W - L - R)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="10" y="20" font-size="14">each target as a ratio from one run; the black tick is its limit</text>']
    for i in range(int(top / 0.5) + 1):
        v = i * 0.5
        out.append(f'<line x1="{X(v):.1f}" y1="{T - 6}" x2="{X(v):.1f}" y2="{H - 34}" stroke="#eee"/>')
        out.append(f'<text x="{X(v):.1f}" y="{H - 20}" text-anchor="middle">{v:.1f}x</text>')
    for i, (label, value, limit, at_least, met) in enumerate(plotted):
        y = T + i * row_h
        colour = "#2b8a3e" if met else "#c92a2a"
        sign = "&#8805;" if at_least else "&#8804;"
        out.append(f'<text x="{L - 8}" y="{y + 15}" text-anchor="end">{escape(label)} ({sign} {limit:g}x)</text>')
        out.append(f'<rect x="{L}" y="{y + 4}" width="{X(value) - L:.1f}" height="{row_h - 10}" fill="{colour}"/>')
        out.append(f'<text x="{X(value) + 4:.1f}" y="{y + 15}">{value:.2f}x</text>')
        out.append(f'<line x1="{X(limit):.1f}" y1="{y + 1}" x2="{X(limit):.1f}" y2="{y + row_h - 3}" stroke="black" stroke-width="2"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def perf_main(raw, out_md, out_svg=None):
    """The performance targets, each as a ratio from this one run, with a pass/fail mark. Only
    the scenarios that ran; a "baseline" build (PERF_BASELINE) gets rows of its own."""
    runs = load(raw, targets=("gateway", "baseline", "nchan", "floor", "pingora"))
    rows = []
    notes = []

    plotted = []

    def row(figure, target, gateway, floor, nchan, x, met, plot=None):
        """A table row; `plot` = (label, value, limit, at_least) puts it on the chart too."""
        rows.append((figure, target, gateway, floor, nchan, x, "pass" if met else "**fail**"))
        if plot is not None and plot[1] is not None:
            plotted.append((*plot, met))

    def over(a, b):
        return a / b if a is not None and b else None

    for name, label in [("fanout_10000_2", "10,000 x 2/s"), ("fanout_10000_20", "10,000 x 20/s"),
                        ("fanout_19000_2", "19,000 x 2/s")]:
        for build in ("baseline", "gateway"):
            g, f, n = (runs.get((t, name)) for t in (build, "floor", "nchan"))
            if g is None:
                continue
            which = ", baseline build" if build == "baseline" else ""
            pg, pf, pn = lat(g, "p99"), lat(f, "p99"), lat(n, "p99")
            x = over(pg, pf)
            all_in = delivered(g) == 100.0
            row(f"p99 publish -> receive, {label} (delivered){which}",
                "<= 1.2x floor, < nchan, all delivered",
                f"{fmt(pg, ' ms')} ({fmt(delivered(g), '%', 2)}{achieved(g)})",
                f"{fmt(pf, ' ms')} ({fmt(delivered(f), '%', 2)}{achieved(f)})",
                f"{fmt(pn, ' ms')} ({fmt(delivered(n), '%', 2)}{achieved(n)})", fmt(x, "x", 2),
                x is not None and x <= 1.2 and (pn is None or pg < pn) and all_in,
                plot=(f"p99 {label}{which} / floor", x, 1.2, False))
            cg, cf, cn = cpu_per_event(g), cpu_per_event(f), cpu_per_event(n)
            x = over(cg, cf)
            row(f"server CPU per delivered event, {label}{which}", "<= 1.3x floor", fmt(cg, " µs", 2),
                fmt(cf, " µs", 2), fmt(cn, " µs", 2), fmt(x, "x", 2), x is not None and x <= 1.3,
                plot=(f"CPU per delivery {label}{which} / floor", x, 1.3, False))
    if ("gateway", "idle_10k") in runs:
        v, w = rss_per_stream(runs.get(("gateway", "idle_10k"))), rss_per_stream(runs.get(("nchan", "idle_10k")))
        row("RSS per idle stream at 10,000 streams", "<= 4 KiB", fmt(v, " KiB", 2), "", fmt(w, " KiB", 2), "",
            v is not None and v <= 4)

    def k6_rounds(target, name):
        """Per round (NAME_r1, NAME_r2, ...; or NAME alone): (req/s, p99 ms, server CPU µs per
        request), by round number."""
        rounds = {}
        for (t, n), r in runs.items():
            if t == target and (n == name or n.startswith(name + "_r")):
                m = (r or {}).get("k6", {}).get("metrics", {})
                reqs = m.get("http_reqs", {})
                if reqs.get("rate") is None:
                    continue
                cpu = (r.get("server") or {}).get("cpu_seconds")
                per_req = cpu * 1e6 / reqs["count"] if cpu is not None and reqs.get("count") else None
                rounds[n[len(name) + 2:] or "1"] = (reqs["rate"], m.get("http_req_duration", {}).get("p(99)"), per_req)
        return rounds

    def median(values):
        values = [v for v in values if v is not None]
        return sorted(values)[len(values) // 2] if values else None

    gateway_k6, ceiling_k6 = k6_rounds("gateway", "k6_publish_other"), k6_rounds("floor", "k6_publish")
    pingora_k6 = k6_rounds("pingora", "k6_publish")
    if gateway_k6:
        n = len(gateway_k6)
        grate, crate = (median(v[0] for v in k.values()) for k in (gateway_k6, ceiling_k6))
        x = over(grate, crate)
        row(f"k6 POST /broadcast, 1,000 subscribers on another channel: req/s (median of {n})",
            ">= 0.95x k6's ceiling", fmt(grate, " req/s", 0), fmt(crate, " req/s", 0), "", fmt(x, "x", 2),
            x is not None and x >= 0.95, plot=("k6 publish req/s / k6's ceiling", x, 0.95, True))
        if pingora_k6:
            # Each round's gateway over the same round's bare pingora app: the two ran back to
            # back, so a swing of the machine between rounds weighs on both.
            paired = [over(gateway_k6[k][0], pingora_k6[k][0]) for k in gateway_k6 if k in pingora_k6]
            x = median(paired)
            prate = median(v[0] for v in pingora_k6.values())
            row(f"k6 POST /broadcast: req/s over the bare pingora app's in the same round (median of {len(paired)})",
                ">= 0.95x the bare pingora app", fmt(grate, " req/s", 0), f"pingora {fmt(prate, ' req/s', 0)}", "",
                fmt(x, "x", 2), x is not None and x >= 0.95,
                plot=("k6 publish req/s / bare pingora app", x, 0.95, True))
            notes.append(
                f"The bare pingora app (`examples/pingora_proxy.rs`) reads the body and answers 202 from "
                f"pingora's `HttpProxy`: the least any publish endpoint on pingora does. It reached "
                f"{fmt(over(prate, crate), 'x', 2)} k6's ceiling (median). Round by round, the gateway over it: "
                + ", ".join(fmt(v, "x", 2) for v in paired) + ".")
            cpu = {t: median(v[2] for v in k.values())
                   for t, k in (("gateway", gateway_k6), ("pingora", pingora_k6), ("floor", ceiling_k6))}
            notes.append(
                f"Server CPU per publish (user + kernel, medians): gateway {fmt(cpu['gateway'], ' µs', 1)}, "
                f"bare pingora app {fmt(cpu['pingora'], ' µs', 1)}, floor {fmt(cpu['floor'], ' µs', 1)}.")
        gp99, cp99 = (median(v[1] for v in k.values()) for k in (gateway_k6, ceiling_k6))
        x = over(gp99, cp99)
        row(f"k6 POST /broadcast: p99 (median of {n})", "<= 2x the ceiling's p99", fmt(gp99, " ms", 2),
            fmt(cp99, " ms", 2), "", fmt(x, "x", 2), x is not None and x <= 2,
            plot=("k6 publish p99 / the ceiling's", x, 2.0, False))

    bench = {name: criterion_median(raw, "two_channels", name)
             for name in ("one_writer", "two_writers", "floor_one_thread", "floor_two_threads")}
    if None not in bench.values():
        gain, machine = over(bench["one_writer"], bench["two_writers"]), over(bench["floor_one_thread"], bench["floor_two_threads"])
        row("fan-out scaling: delivered events/s with 2 writer threads over 1 (two channels x 2,500 streams)",
            ">= 1.8x", fmt(gain, "x", 2), f"machine {fmt(machine, 'x', 2)}", "", "", gain >= 1.8,
            plot=("fan-out gain, 2 writers over 1", gain, 1.8, True))
        # No machine gains more than 2x from a second core on the same work: a bare-send gain
        # above that means the one-thread run was slowed by something else, so 2x stands for it.
        x = over(gain, min(machine, 2.0))
        row("fan-out scaling over the machine's own gain from a second thread (same sends, same run; at most 2x)",
            ">= 0.9x the machine's gain", fmt(gain, "x", 2), f"machine {fmt(machine, 'x', 2)}", "",
            fmt(x, "x", 2), x >= 0.9, plot=("fan-out gain / the machine's", x, 0.9, True))
        notes.append(
            "Fan-out scaling is `cargo bench --bench fanout -- two_channels` (medians): one writer "
            f"{fmt(bench['one_writer'] / 1e6, ' ms', 2)} and two {fmt(bench['two_writers'] / 1e6, ' ms', 2)} "
            "to send two events to 5,000 streams; the machine's bare sends to the same number from one "
            f"thread {fmt(bench['floor_one_thread'] / 1e6, ' ms', 2)} and from two "
            f"{fmt(bench['floor_two_threads'] / 1e6, ' ms', 2)}. 1.8x is 0.9 of a perfect 2x on two "
            "cores; the machine's own gain is the most any server gains here.")
    lines = [
        f"# Performance against the floor, {time.strftime('%Y-%m-%d', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; servers and load",
        "generator share it. Made by `loadtest/run --perf`: sse-floor (the least any HTTP/1.1 SSE server",
        "can do per delivery here: one `write` per stream per event from an epoll loop), the gateway and",
        "nginx + nchan take turns within each scenario, under the same load generator. \"x\" is the",
        "gateway's figure over the floor's (for publishing, over k6's ceiling: sse-floor answering the",
        "publishes with nothing else to do).",
        "",
        "Latency runs from when each event was due by the publishing schedule to its receipt; the",
        "publisher sends one request at a time, so a server that answers a publish only after its",
        "fan-out makes the next ones wait, and that wait counts. After the share delivered, each",
        "latency cell gives the publishes per second that run achieved.",
        "",
        "| figure | target | sse-gateway | floor | nginx + nchan | x | met |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    for note_text in notes:
        lines += ["", note_text]
    if out_svg and plotted:
        write_ratio_svg(plotted, out_svg)
        lines += ["", f"![every target as a ratio, with its limit]({os.path.basename(out_svg)})"]
    lines += ["", "## Commands", ""] + commands(runs)
    if None not in bench.values():
        lines[-2:-1] = ["# fan-out scaling", "cargo bench --bench fanout -- two_channels", "```"]
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines[:16 + len(rows) + 2 * len(notes)]))


def write_svg(runs, path):
    """Latency p50/p90/p99 (ms) against streams, gateway solid, nchan dashed, floor dotted, 2 events/s."""
    series = {}
    for (t, name), r in runs.items():
        if name.startswith("fanout_") and name.endswith("_2") and r.get("loadgen", {}).get("latency_ms"):
            for p in ("p50", "p90", "p99"):
                series.setdefault((t, p), []).append((r["streams"], r["loadgen"]["latency_ms"][p]))
    W, H, L, B, T, R = 720, 420, 70, 50, 30, 150
    xs = sorted({x for pts in series.values() for x, _ in pts}) or [1]
    ymax = max([y for pts in series.values() for _, y in pts] + [1]) * 1.1
    X = lambda x: L + (x / max(xs)) * (W - L - R)
    Y = lambda y: H - B - (y / ymax) * (H - B - T)
    colors = {"p50": "#2b8a3e", "p90": "#e67700", "p99": "#c92a2a"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="18" font-size="14">publish to receive latency at 2 events/s, by concurrent streams</text>',
           f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
           f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">streams</text>',
           f'<text x="16" y="{(T+H-B)/2}" transform="rotate(-90 16 {(T+H-B)/2})" text-anchor="middle">ms</text>']
    for x in xs:
        out.append(f'<text x="{X(x):.1f}" y="{H-B+16}" text-anchor="middle">{x:,}</text>')
    for i in range(6):
        y = ymax * i / 5
        out.append(f'<text x="{L-6}" y="{Y(y)+4:.1f}" text-anchor="end">{y:.0f}</text>')
        out.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{W-R}" y2="{Y(y):.1f}" stroke="#eee"/>')
    legend_y = T + 10
    for (t, p), pts in sorted(series.items()):
        pts.sort()
        dash = {"gateway": "", "floor": ' stroke-dasharray="2,3"'}.get(t, ' stroke-dasharray="6,4"')
        d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colors[p]}" stroke-width="2"{dash} points="{d}"/>')
        for x, y in pts:
            out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{colors[p]}"/>')
        out.append(f'<line x1="{W-R+10}" y1="{legend_y}" x2="{W-R+35}" y2="{legend_y}" stroke="{colors[p]}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{W-R+40}" y="{legend_y+4}">{t} {p}</text>')
        legend_y += 18
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def window_cpu(sample, start, end):
    """CPU seconds per second (100 = one core) of a sample.py timeline between two offsets."""
    tl = (sample or {}).get("timeline") or []
    def cpu_at(t):
        prev = None
        for point in tl:
            if point[0] >= t:
                if prev is None or point[0] == prev[0]:
                    return point[2]
                f = (t - prev[0]) / (point[0] - prev[0])
                return prev[2] + f * (point[2] - prev[2])
            prev = point
        return prev[2] if prev else None
    if not tl:
        return None
    end = min(end, tl[-1][0])
    if end - start < 1:
        return None
    a, b = cpu_at(start), cpu_at(end)
    return None if a is None or b is None else 100 * (b - a) / (end - start)


def publish_window(r):
    """Seconds after the load generator started when publishing began and ended (approximate
    for sse-loadgen, which does not say when its ramp ended: streams / ramp rate)."""
    phases = r.get("loadgen", {}).get("phases_s") or {}
    ramp = phases.get("ramp", r["streams"] / 2000 + 0.5)
    return ramp, ramp + phases.get("publish", (r["events"] - 1) / r["rate"])


def hist_quantile(metrics, name, q):
    """Upper bound of the Prometheus histogram bucket holding quantile q (seconds -> ms)."""
    buckets = []
    for key, value in metrics.items():
        if key.startswith(name + "_bucket{le=\""):
            le = key.split("le=\"", 1)[1].split("\"", 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    want = q * buckets[-1][1]
    for le, count in buckets:
        if count >= want:
            return le * 1000
    return None


def note(raw, which):
    """The text of RAW/WHICH.txt (uptime, build), kept by loadtest/run beside the raw figures."""
    try:
        with open(os.path.join(raw, f"{which}.txt")) as f:
            return f.read().strip()
    except OSError:
        return "n/a"


def cluster_main(raw, out_md):
    runs = load(raw, ("gateway", "cluster"))
    single = runs.get(("gateway", "fanout_10000_2"))
    one = runs.get(("cluster", "redis1_10000_2"))
    cross = runs.get(("cluster", "cross_10000_2"))
    many = sorted((r for (t, n), r in runs.items() if t == "cluster" and r.get("nodes", 0) > 2),
                  key=lambda r: r["streams"])
    uptime = lambda which: note(raw, which)
    def summary(r):
        lg = r.get("loadgen", {})
        return (f"{lg.get('delivered', 0):,} / {lg.get('expected', 0):,} delivered, "
                f"{lg.get('duplicates')} dup, {lg.get('gaps')} gaps")

    def all_in(r):
        lg = (r or {}).get("loadgen", {})
        return bool(lg) and lg.get("streams_open") == r["streams"] and lg.get("expected", 0) > 0 \
            and lg.get("delivered") == lg.get("expected") and lg.get("duplicates") == 0 \
            and lg.get("gaps") == 0 and lg.get("disconnects") == 0 \
            and lg.get("events_published") == r["events"]

    rows = []
    ps, pc = lat(single, "p99"), lat(cross, "p99")
    ok = ps is not None and pc is not None and pc <= 2 * ps and all_in(cross)
    rows.append(("Cross-node publish -> receive p99, 10,000 streams on node B, 2 events/s x 40 "
                 "published on node A", "<= 2x single-node",
                 f"{fmt(pc, ' ms')} cross-node vs {fmt(ps, ' ms')} single-node (memory broker): "
                 f"{fmt(pc / ps if pc and ps else None, 'x', 2)}; {summary(cross) if cross else 'not run'}",
                 "yes" if ok else "**no**"))
    if one:
        po = lat(one, "p99")
        rows.append(("The same on one node with the Redis broker (streams and publishes on node A)",
                     "reported", f"p99 {fmt(po, ' ms')}: {fmt(po / ps if po and ps else None, 'x', 2)} "
                     f"single-node; {summary(one)}", ""))
    for r in many:
        lg = r.get("loadgen", {})
        s = r.get("server", {})
        open_ = lg.get("streams_open") or 0
        rows.append((f"{r['streams']:,} streams over {r['nodes']} nodes on one Redis, 1 event/s x "
                     f"{r['events']} published on node A", "100% delivered",
                     f"{open_:,} open; {summary(r)}, {lg.get('disconnects')} disconnects",
                     "yes" if all_in(r) else "**no**"))
        if open_:
            rows.append((f"Gateway RSS per stream at {open_:,} streams (sum over {r['nodes']} nodes)",
                         "reported (single node: <= 8 KiB per idle stream)",
                         f"{s.get('rss_kib_max', 0) / open_:.2f} KiB total RSS / stream; "
                         f"{(s.get('rss_kib_max', 0) - s.get('rss_kib_start', 0)) / open_:.2f} KiB growth / stream",
                         ""))
        l = lg.get("latency_ms", {})
        rows.append((f"Latency at {open_:,} streams, publish -> receive", "reported",
                     f"p50 {fmt(l.get('p50'))} / p90 {fmt(l.get('p90'))} / p99 {fmt(l.get('p99'))} / "
                     f"max {fmt(l.get('max'))} ms", ""))
        a, b = publish_window(r)
        gw, rd, lp = (window_cpu(r.get(k), a, b) for k in ("server", "redis", "loadgen_proc"))
        rows.append((f"CPU while publishing at {open_:,} streams (% of one core; the machine has 200%)",
                     "reported", f"gateways {fmt(gw, '%', 0)} (sum of {r['nodes']}), Redis {fmt(rd, '%', 0)}, "
                     f"load generators {fmt(lp, '%', 0)}", ""))

    lines = [
        f"# Cluster benchmark results, {time.strftime('%Y-%m-%d', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; every gateway",
        "node, Redis and the load generators share it. Made by `loadtest/run --cluster`; every figure",
        "comes from the commands at the end, raw JSON beside this file.",
        "",
        f"- build: {uptime('build')}",
        f"- `uptime` at the start: `{uptime('uptime-start')}`",
        f"- `uptime` at the end: `{uptime('uptime-end')}`",
        "",
        "Each run starts a fresh `redis-server` (`--save \"\" --appendonly no`, on a free loopback",
        "port) and fresh gateway nodes with `loadtest/bench.yaml` plus `broker: {kind: redis}`.",
        "Latency is from just before the `POST /broadcast` on node A to the event's arrival on a",
        "stream: it includes the Lua publish script, Redis pub/sub to every node, and each node's",
        "fan-out. The many-node run is driven by `loadtest/lib/cluster.py`: it starts sse-loadgen's",
        "own stream-holding child processes (`sse-loadgen --child`, one per node) and publishes",
        "itself on node A, one channel for all streams, so the percentiles are over every delivery.",
        "",
        "## Against the targets",
        "",
        "| figure | target | measured | met |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]

    order = [r for r in (single, one, cross) if r] + many
    lines += ["", "## Every run", "",
              "CPU is in % of one core (200% = the whole machine). \"While publishing\" is averaged from "
              "the first publish to the last (sample.py timelines); \"machine\" is every process on it, "
              "from /proc/stat over the whole run, ramp included. Load average at the run's start -> end. "
              "\"Publish answer\" is how long `POST /broadcast` took to answer (only the many-node "
              "driver measures it).",
              "",
              "| run | nodes | streams open | events | delivered / expected | dup | gaps | disc. | "
              "latency p50 / p90 / p99 / max | publish answer p50 / max | gateway RSS max (sum) | "
              "CPU while publishing: gateways / Redis / loadgen | machine busy | load avg |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in order:
        lg = r.get("loadgen", {})
        l = lg.get("latency_ms", {})
        pm = lg.get("publish_ms") or {}
        name = r["scenario"] if r["target"] == "cluster" else f"{r['scenario']} (memory broker)"
        a, b = publish_window(r)
        gw = window_cpu(r.get("server"), a, b)
        rd = window_cpu(r.get("redis"), a, b)
        lp = window_cpu(r.get("loadgen_proc"), a, b)
        m = r.get("machine") or {}
        mach = (100 * os.cpu_count() * m["busy_cpu_seconds"] / m["total_cpu_seconds"]
                if m.get("total_cpu_seconds") else None)
        lines.append(
            f"| {name} | {r.get('nodes', 1)} | {lg.get('streams_open')} | {lg.get('events_published')} | "
            f"{lg.get('delivered', 0):,} / {lg.get('expected', 0):,} | {lg.get('duplicates')} | {lg.get('gaps')} | "
            f"{lg.get('disconnects')} | {fmt(l.get('p50'))} / {fmt(l.get('p90'))} / {fmt(l.get('p99'))} / "
            f"{fmt(l.get('max'))} ms | {fmt(pm.get('p50'))} / {fmt(pm.get('max'))} ms | "
            f"{r['server'].get('rss_kib_max', 0) / 1024:,.1f} MiB | "
            f"{fmt(gw, '%', 0)} / {fmt(rd, '%', 0)} / {fmt(lp, '%', 0)} | {fmt(mach, '%', 0)} | "
            f"{m.get('loadavg_start', 'n/a')} -> {m.get('loadavg_end', 'n/a')} |")

    for r in [r for r in (one, cross) if r] + many:
        per_pid = r.get("server", {}).get("per_pid", {})
        nodes_lg = r.get("loadgen", {}).get("nodes") or []
        lines += ["", f"### {r['scenario']}: per node", "",
                  "| node | streams | delivered / expected | latency p50 / p99 | gateway RSS start -> max | "
                  "gateway CPU s | hub -> socket write p50 / p99 (metric buckets) | events from the Redis log "
                  "(recovered / lost) | slow consumers |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, pid in enumerate(r.get("node_pids", [])):
            pp = per_pid.get(str(pid), {})
            mt = (r.get("metrics") or [])[k] if k < len(r.get("metrics") or []) else {}
            nl = nodes_lg[k] if k < len(nodes_lg) else None
            if nl is None and k == r["nodes"] - 1 and r["nodes"] <= 2:
                lg = r.get("loadgen", {})
                nl = {"streams_open": lg.get("streams_open"), "delivered": lg.get("delivered"),
                      "expected": lg.get("expected"), "latency_ms": lg.get("latency_ms", {})}
            role = " (publish)" if k == 0 else ""
            h = "sse_gateway_publish_to_write_seconds"
            lines.append(
                f"| {chr(65 + k)}{role} | {(nl or {}).get('streams_open', 0) or 0:,} | "
                f"{(nl or {}).get('delivered', 0) or 0:,} / {(nl or {}).get('expected', 0) or 0:,} | "
                f"{fmt(((nl or {}).get('latency_ms') or {}).get('p50'))} / "
                f"{fmt(((nl or {}).get('latency_ms') or {}).get('p99'))} ms | "
                f"{pp.get('rss_kib_start', 0) / 1024:,.1f} -> {pp.get('rss_kib_max', 0) / 1024:,.1f} MiB | "
                f"{pp.get('cpu_seconds', 'n/a')} | "
                f"<= {fmt(hist_quantile(mt, h, 0.5))} / <= {fmt(hist_quantile(mt, h, 0.99))} ms | "
                f"{int(mt.get('sse_gateway_broker_events_recovered_total', 0))} / "
                f"{int(mt.get('sse_gateway_broker_events_lost_total', 0))} | "
                f"{int(mt.get('sse_gateway_slow_consumer_disconnects_total', 0))} |")
        ri = r.get("redis_info") or {}
        rs = r.get("redis") or {}
        lines += ["", f"Redis: {rs.get('cpu_seconds', 'n/a')} CPU s over {rs.get('wall_seconds', 'n/a')} s, "
                  f"RSS max {rs.get('rss_kib_max', 0) / 1024:.1f} MiB, used_memory_peak "
                  f"{ri.get('used_memory_peak_human', 'n/a')}, {ri.get('connected_clients', 'n/a')} clients, "
                  f"{ri.get('total_commands_processed', 'n/a')} commands, "
                  f"client_recent_max_output_buffer {ri.get('client_recent_max_output_buffer', 'n/a')} B."]
        lp = r.get("loadgen", {}).get("loadgen", {})
        if lp:
            lines.append(f"Load generator: {lp.get('processes')} process(es), "
                         f"{lp.get('rss_bytes_per_stream')} bytes RSS per stream, "
                         f"first error: {r.get('loadgen', {}).get('first_error')}.")

    notes = sorted(os.path.basename(p) for p in glob.glob(os.path.join(raw, "*.txt"))
                   if not os.path.basename(p).startswith(("cluster.", "gateway.", "uptime-", "build.")))
    if notes:
        rawdir = os.path.basename(os.path.normpath(raw))
        lines += ["", "Notes kept beside the raw figures (added by hand after the run): " +
                  ", ".join(f"[`{n}`]({rawdir}/{n})" for n in notes) + "."]
    lines += ["", "## Commands", "",
              "`$BENCH_KEY` is the publish key the script sets; ADDR ports are those of that run.",
              "", "```"]
    for r in order:
        lines.append(f"# {r['target']} {r['scenario']}")
        lines.append(r.get("command", ""))
    lines += ["```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(lines))


def chaos_main(raw, out_md):
    try:
        with open(os.path.join(raw, "chaos.json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = {}
    c = r.get("chaos", {})
    p, s = c.get("published", {}), c.get("source", {})
    subs = c.get("subscribers", {})

    def both(key, show=lambda v: f"{v:,}" if isinstance(v, int) else str(v)):
        return f"| {show(p.get(key, 'n/a'))} | {show(s.get(key, 'n/a'))} |"

    lines = [
        f"# Chaos run, {time.strftime('%Y-%m-%d', time.gmtime())}",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; every",
        "gateway node, Redis, the upstream and `sse-chaos` share it. Made by `loadtest/run --chaos`",
        "(`loadtest/src/bin/sse-chaos/`); the command is at the end, the raw JSON and each process's",
        "log beside this file.",
        "",
        f"- build: {note(raw, 'build')}",
        f"- `uptime` at the start: `{note(raw, 'uptime-start')}`",
        f"- `uptime` at the end: `{note(raw, 'uptime-end')}`",
        "",
        f"{c.get('nodes', 'n/a')} gateway nodes on one `redis-server` without persistence, "
        f"{subs.get('count', 'n/a')} subscribers ({c.get('subscribers_per_node', 'n/a')} per node, each on "
        f"channels `chaos` and `notifications` in one stream, resuming with `Last-Event-ID` like "
        f"`EventSource`), {c.get('rate', 'n/a')} events/s published with `POST /broadcast` spread over "
        f"the nodes for {c.get('duration_s', 'n/a')} s, and {c.get('source_rate', 'n/a')} notifications/s "
        "posted to the reference upstream, which one gateway source (per cluster) relays into "
        "`notifications`. Every event carries a sequence number of its own and is sent once: a 503 "
        "is counted, not retried.",
        "",
        f"**{c.get('verdict', 'no result: the run failed, see the exit status below')}**",
        "",
        "## Faults",
        "",
        "| at | fault | what happened | took |",
        "|---|---|---|---|",
    ]
    for f in c.get("faults", []):
        lines.append(f"| {f['at_s']:.1f} s | {f['fault']} | {f['detail']} | {f['took_ms']:,} ms |")
    lines += [
        "",
        "## Every accepted event, at every subscriber",
        "",
        "An accepted event (202 from the gateway, 201 from the upstream) is owed to every subscriber,",
        "live or replayed after a resume. *Missed after a reset* is covered by a `reset` event the",
        "subscriber got; *lost* is missing with no reset; *duplicated* arrived twice (same sequence",
        "number or same id) at one subscriber. *Unanswered* sends (the connection broke) are owed to",
        "nobody.",
        "",
        "| figure | POST /broadcast (channel `chaos`) | upstream -> source (channel `notifications`) |",
        "|---|---|---|",
        "| sent " + both("sent"),
        "| accepted (202 / 201) " + both("accepted"),
        "| 503 " + both("status_503"),
        "| other statuses " + both("other_status", lambda v: ", ".join(f"{k}: {n}" for k, n in v.items()) or "0"),
        "| not sent (no connection) " + both("not_sent"),
        "| unanswered (connection broke) " + both("unanswered"),
        f"| delivered / expected | {p.get('delivered', 0):,} / {p.get('expected_deliveries', 0):,} | "
        f"{s.get('delivered', 0):,} / {s.get('expected_deliveries', 0):,} |",
        "| missed after a reset " + both("missed_after_reset"),
        "| lost deliveries " + both("lost_deliveries"),
        "| **lost events** (missing at one subscriber or more) " + both("lost_events"),
        "| lost at every subscriber " + both("lost_everywhere"),
        "| **duplicated events** " + both("duplicated_events"),
        "| refused, yet delivered " + both("refused_but_delivered"),
        "| unanswered, yet delivered " + both("unanswered_delivered"),
        "| an answer's id given to two events " + both("ids_reused"),
        "| first lost sequence numbers " + both("lost_first", lambda v: ", ".join(map(str, v)) or "none"),
        "| lost at some subscribers only (first; by the node of their first stream) "
        + both("lost_partly_first", lambda v: "; ".join(v) or "none"),
        "",
        "By phase (events by the time of their answer; a phase runs from one fault to the next):",
        "",
        "| from | after | accepted | 503 | lost | duplicated |",
        "|---|---|---|---|---|---|",
    ]
    for ph in p.get("phases", []):
        lines.append(f"| {ph['from_s']:.1f} s | {ph['after']} | {ph['accepted']:,} | {ph['status_503']:,} | "
                     f"{ph['lost_events']:,} | {ph['duplicated_events']:,} |")
    kv = lambda d: ", ".join(f"{k} {n}" for k, n in (d or {}).items()) or "none"
    yes_no = lambda v: "n/a" if v is None else ("yes" if v else "**no**")
    lines += [
        "",
        "## Subscribers and nodes",
        "",
        f"- streams opened: {subs.get('opens', 'n/a')}, reconnects: {subs.get('reconnects', 'n/a')} "
        f"({subs.get('moved', 'n/a')} subscribers moved to another node)",
        f"- `reset` events by reason: {kv(subs.get('resets'))}",
        f"- why streams ended or failed to open: {kv(subs.get('ends'))}",
        f"- events not ours: {subs.get('foreign_events', 'n/a')}; received over the log cap (not "
        f"accounted): {subs.get('not_kept', 'n/a')}",
        f"- every subscriber caught up: {yes_no(c.get('caught_up'))} (settle {fmt(c.get('settle_s'), ' s')}); "
        f"run {fmt(c.get('elapsed_s'), ' s')} in all",
        "",
        "| node | started | broker events lost (metric) | recovered from the log (metric) |",
        "|---|---|---|---|",
    ]
    for n in c.get("node_figures", []):
        lines.append(f"| {n['node']} | {n['starts']}x | {fmt(n.get('broker_events_lost'), digits=0)} | "
                     f"{fmt(n.get('broker_events_recovered'), digits=0)} |")
    lines += ["", "The metrics are those of each node's last process (a killed node's count is gone with it). A",
              "node started after Redis came back empty counts as lost the events the emptied log no longer",
              "holds (those from before the restart); no subscriber resuming elsewhere misses them for that.",
              "", "## Command", "", "```",
              f"loadtest/run --chaos    # exit {r.get('exit', 'n/a')}",
              r.get("command", ""), "```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()

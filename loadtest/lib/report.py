#!/usr/bin/env python3
"""Writes the benchmark report: a markdown table against the targets, the exact commands, and an
SVG plot of publish->receive latency percentiles against stream count.

usage: report.py RAW_DIR OUT.md OUT.svg
"""
import glob
import json
import os
import platform
import sys
import time


def load(raw):
    runs = {}
    for path in glob.glob(os.path.join(raw, "*.json")):
        base = os.path.basename(path)
        # TARGET.SCENARIO.json only (not the .loadgen / .server parts).
        if base.count(".") != 2 or base.split(".")[0] not in ("gateway", "nchan", "source"):
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
    raw, out_md, out_svg = sys.argv[1:4]
    runs = load(raw)
    g = lambda name: runs.get(("gateway", name))
    n = lambda name: runs.get(("nchan", name))
    rows = []

    def row(figure, target, ours, theirs, met, lower=True):
        if ours[1] is None and theirs[1] is None and "n/a" in f"{ours[0]}{theirs[0]}":
            return  # not part of this run (e.g. `loadtest/run --source`)
        rows.append((figure, target, ours[0], theirs[0], ratio(ours[1], theirs[1], lower), "yes" if met else "**no**"))

    v, w = rss_per_stream(g("idle_10k")), rss_per_stream(n("idle_10k"))
    row("RSS per idle stream at 10,000 streams", "<= 8 KiB", (fmt(v, " KiB", 2), v), (fmt(w, " KiB", 2), w), v is not None and v <= 8)
    for name, figure, target, p99max, need_all in [
        ("fanout_10000_2", "10,000 streams x 2 events/s, p99", "<= 50 ms", 50, False),
        ("fanout_10000_20", "10,000 streams x 20 events/s, delivered / p99", "100%, <= 250 ms", 250, True),
        ("fanout_19000_2", "19,000 streams in one process x 2 events/s, delivered / p99", "100%, <= 150 ms", 150, True),
    ]:
        a, b = g(name), n(name)
        pa, pb = lat(a, "p99"), lat(b, "p99")
        da, db = delivered(a), delivered(b)
        met = pa is not None and pa <= p99max and (not need_all or da == 100.0)
        ours = f"{fmt(da, '%', 2)} / {fmt(pa, ' ms')}" if need_all else fmt(pa, " ms")
        theirs = f"{fmt(db, '%', 2)} / {fmt(pb, ' ms')}" if need_all else fmt(pb, " ms")
        row(figure, target, (ours, pa), (theirs, pb), met)
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
    k = g("k6_publish")
    if k:
        m = k.get("k6", {}).get("metrics", {})
        rps = m.get("http_reqs", {}).get("rate")
        p99 = m.get("http_req_duration", {}).get("p(99)")
        met = rps is not None and p99 is not None and rps >= 20000 and p99 <= 20
        row("POST /broadcast with 1,000 subscribers (k6)", ">= 20,000 req/s, p99 <= 20 ms",
            (f"{fmt(rps, ' req/s', 0)}, p99 {fmt(p99, ' ms')}", None), ("not measured", None), met)

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
        "`loadtest/peers/nchan/`).",
        "",
        "## Against the targets",
        "",
        "| figure | target | sse-gateway | nginx + nchan | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} | {f} |" for a, b, c, d, e, f in rows]
    lines += ["", "## Every run", "",
              "| target | scenario | streams open | events | delivered | dup | gaps | disconnects | connect p99 | latency p50 / p90 / p99 / max | server RSS max | server CPU |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
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
            f"{r['server']['rss_kib_max'] / 1024:,.1f} MiB | {r['server']['cpu_percent_avg']}% |")
    lines += ["", f"![latency percentiles against stream count]({os.path.basename(out_svg)})", "",
              "## Commands", "", "The load generator is `target/release/sse-loadgen`; `$BENCH_KEY` is the",
              "publish key the script sets for the gateway. Each run starts a fresh server.", "", "```"]
    for (t, name), r in sorted(runs.items()):
        lines.append(f"# {t} {name}")
        lines.append(r.get("command", ""))
    lines += ["```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    write_svg(runs, out_svg)


def write_svg(runs, path):
    """Latency p50/p90/p99 (ms) against streams, gateway solid, nchan dashed, 2 events/s."""
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
        dash = ' stroke-dasharray="6,4"' if t != "gateway" else ""
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


if __name__ == "__main__":
    main()

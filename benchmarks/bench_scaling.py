"""Benchmark 5: time and peak memory per item as N grows (each N in a fresh process), plotted.

    python benchmarks/bench_scaling.py [--sizes 10000,100000,1000000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import common

RUN_ONE = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
import common
n = int(sys.argv[1])
ws = common.workspace_with_job("bench.noop", n, 10_000, 2)
ws.create("bench", "bench", "2026-11-24")
t = time.perf_counter()
ws.process("bench", "bench", "2026-11-24")
print(json.dumps({"items": n, "seconds": time.perf_counter() - t, "peak_rss_mb": common.peak_rss_mb()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, "-c", RUN_ONE, str(n), str(Path(__file__).parent)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["us_per_item"] = round(row["seconds"] / n * 1e6, 2)
        rows.append(row)
        print(row)
    path = common.save("scaling", {"rows": rows})
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("µs per work item", "peak RSS (MB)"))
    xs = [r["items"] for r in rows]
    fig.add_trace(go.Scatter(x=xs, y=[r["us_per_item"] for r in rows], mode="lines+markers", name="µs/item"), 1, 1)
    fig.add_trace(go.Scatter(x=xs, y=[r["peak_rss_mb"] for r in rows], mode="lines+markers", name="MB"), 1, 2)
    fig.update_xaxes(type="log", title="work items")
    fig.update_layout(title="allegro-ops engine scaling (no-op handler)", showlegend=False)
    html = path.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=True)
    print(f"plot: {html}")


if __name__ == "__main__":
    main()

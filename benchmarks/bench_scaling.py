"""Benchmark 5: time and peak memory per work item as N grows, each N in a fresh process, with the
query figures of bench_queries.py / bench_analyst.py (10M items) when their results exist; plotted
with plotly to results/scaling.html (and scaling.png when kaleido is installed).

    python benchmarks/bench_scaling.py                       # N = 10k, 100k, 1M, bench.noop
    python benchmarks/bench_scaling.py --quick               # N = 10k, 100k
    python benchmarks/bench_scaling.py --job-types bench.noop,bench.noop_dicts --sizes 10000,100000
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import common


def engine_rows(job_types: list[str], sizes: list[int], batch_size: int, concurrency: int) -> list[dict[str, Any]]:
    """One run per job type and N, each in its own process (so its peak RSS is its own)."""
    rows = []
    for job_type in job_types:
        for n in sizes:
            print(f"{job_type}: {n:,} items ...", flush=True)
            run = common.in_fresh_process({"job_type": job_type, "items": n, "batch_size": batch_size,
                                           "concurrency": concurrency, "floor": True})
            row = {k: run[k] for k in ("job_type", "items", "status", "seconds", "items_per_s", "us_per_item",
                                        "peak_rss_mb", "rss_before_mb", "ratio", "engine_decoder")}
            row["floor_us_per_item"] = round(run["floor_s"]["engine"] / n * 1e6, 2)
            row["rss_growth_mb"] = row["peak_rss_mb"] - row["rss_before_mb"]
            rows.append(row)
            print(f"  {row['status']} {row['seconds']:.2f}s  {row['us_per_item']} us/item (floor "
                  f"{row['floor_us_per_item']})  peak RSS {row['peak_rss_mb']} MB "
                  f"(+{row['rss_growth_mb']} MB in the run)", flush=True)
    return rows


def query_figures() -> list[dict[str, Any]]:
    """The query benchmarks' latest figures, one row per (query, N): from operator_queries.json and
    analyst_queries_<N>.json in results/, when present."""
    rows: list[dict[str, Any]] = []
    path = common.RESULTS / "operator_queries.json"
    if path.is_file():
        rows += _operator_rows(json.loads(path.read_text()))
    for path in sorted(common.RESULTS.glob("analyst_queries_*.json")):
        doc = json.loads(path.read_text())
        for query, ms in doc.get("median_ms", {}).items():
            rows.append({"source": "analyst (median)", "query": query, "items": doc["work_items"], "ms": ms,
                         "time": doc.get("time")})
    return rows


def _operator_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Benchmark 3's figures: flat ``<query>_p95_ms`` keys, or sections of ``{query: {"p95": ms}}``
    (cold, back to back), and the Reprocess of 1,000 errored items (engine time outside the handler)."""
    def row(source: str, query: str, items: int, ms: float) -> dict[str, Any]:
        return {"source": source, "query": query, "items": items, "ms": ms, "time": doc.get("time")}

    items, rows = doc.get("work_items", 0), []
    for key, value in doc.items():
        if key.endswith("_p95_ms") and isinstance(value, (int, float)):
            rows.append(row("operator (p95)", key[: -len("_p95_ms")], items, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) and "p95" in v for v in value.values()):
            source = f"operator, {key.replace('_', ' ')} (p95)"
            rows += [row(source, query, items, v["p95"]) for query, v in value.items()]
    for name, run in (doc.get("reprocess") or {}).items():
        if isinstance(run, dict) and "outside_handler_median_ms" in run:
            n = run.get("work_items_in_workspace") or run.get("work_items") or items
            rows.append(row("operator (median)", f"reprocess 1,000 errored: {name.replace('_', ' ')}", n,
                            run["outside_handler_median_ms"]))
    return rows


def plot(rows: list[dict[str, Any]], queries: list[dict[str, Any]], html: Path) -> str:
    """The scaling plot as HTML (plotly.js inlined: it opens offline); PNG beside it with kaleido."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("µs per work item (Process to COMPLETED)",
                                                        "peak RSS of the run's process (MB)",
                                                        "query time (ms)"))
    for job_type in dict.fromkeys(r["job_type"] for r in rows):
        mine = [r for r in rows if r["job_type"] == job_type]
        xs = [r["items"] for r in mine]
        fig.add_trace(go.Scatter(x=xs, y=[r["us_per_item"] for r in mine], mode="lines+markers",
                                 name=f"{job_type}: engine"), 1, 1)
        fig.add_trace(go.Scatter(x=xs, y=[r["floor_us_per_item"] for r in mine], mode="lines+markers",
                                 line={"dash": "dot"}, name=f"{job_type}: floor ({mine[0]['engine_decoder']})"), 1, 1)
        fig.add_trace(go.Scatter(x=xs, y=[r["peak_rss_mb"] for r in mine], mode="lines+markers",
                                 name=f"{job_type}: peak RSS"), 1, 2)
    for (source, query) in dict.fromkeys((q["source"], q["query"]) for q in queries):
        mine = sorted((q for q in queries if q["source"] == source and q["query"] == query), key=lambda q: q["items"])
        operator = source.startswith("operator")  # the targets: drawn bold
        fig.add_trace(go.Scatter(x=[q["items"] for q in mine], y=[q["ms"] for q in mine], mode="lines+markers",
                                 name=f"{source}: {query}", legendgroup=source, opacity=1.0 if operator else 0.5,
                                 visible=True if operator else "legendonly",  # analysts' queries: a click away
                                 marker={"symbol": "diamond" if operator else "circle", "size": 11 if operator else 6},
                                 line={"width": 2 if operator else 1}), 1, 3)
    fig.update_xaxes(type="log", title_text="work items")
    fig.update_yaxes(rangemode="tozero", col=1)
    fig.update_yaxes(rangemode="tozero", col=2)
    fig.update_yaxes(type="log", col=3)
    fig.update_layout(title="allegro-ops scaling: cost per work item and peak memory as N grows (no-op handler)",
                      width=1500, height=560, legend={"font": {"size": 10}})
    fig.write_html(html, include_plotlyjs=True)
    if importlib.util.find_spec("kaleido") is None:
        return "PNG not written: kaleido is not installed (pip install kaleido)"
    try:
        fig.write_image(html.with_suffix(".png"))
    except Exception as exc:  # noqa: BLE001 - kaleido needs a browser it may not find; the HTML stands
        return f"PNG not written: {type(exc).__name__}: {exc}"
    return f"PNG: {html.with_suffix('.png')}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 10k and 100k")
    ap.add_argument("--sizes", help="comma-separated N (default 10000,100000,1000000)")
    ap.add_argument("--job-types", default="bench.noop", help="comma-separated (bench.noop, bench.noop_dicts)")
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]
    rows = engine_rows(args.job_types.split(","), sizes, args.batch_size, args.concurrency)
    queries = query_figures()
    html = common.RESULTS / "scaling.html"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    png = plot(rows, queries, html)
    common.save("scaling", {"batch_size": args.batch_size, "concurrency": args.concurrency, "rows": rows,
                            "queries": queries, "plot": str(html), "png": png}, quiet=True)
    print(f"\n{'job type':<18} {'items':>10} {'seconds':>8} {'us/item':>8} {'floor us':>8} {'ratio':>6} "
          f"{'peak RSS':>9} {'growth':>7}")
    for r in rows:
        print(f"{r['job_type']:<18} {r['items']:>10,} {r['seconds']:>8.2f} {r['us_per_item']:>8} "
              f"{r['floor_us_per_item']:>8} {r['ratio']:>6} {r['peak_rss_mb']:>6} MB {r['rss_growth_mb']:>4} MB")
    if queries:
        print(f"\nquery figures from results/ ({len(queries)}; run bench_queries.py / bench_analyst.py to refresh):")
        for q in queries:
            print(f"  {q['source']:<34} {q['query']:<42} {q['items']:>11,} items {q['ms']:>8} ms")
    else:
        print("\nno query figures yet: run bench_queries.py (and bench_analyst.py) first")
    print(f"\nplot: {html}\n{png}")


if __name__ == "__main__":
    main()

"""Benchmark 1 (engine overhead against the pure-Python floor) and 2 (waiting handlers).

    python benchmarks/bench_engine.py [--items N] [--wait-items N] [--concurrency C]
"""
from __future__ import annotations

import argparse
import json
import time

import common
from common import noop_handler, payload


def floor(n: int) -> float:
    """Seconds for the plain loop: json-decode each payload and call the same handler."""
    texts = [json.dumps(payload(i)) for i in range(1, n + 1)]
    t = time.perf_counter()
    for text in texts:
        noop_handler(json.loads(text))
    return time.perf_counter() - t


def engine_run(job_type: str, n: int, batch_size: int, concurrency: int, **params) -> tuple[float, str]:
    ws = common.workspace_with_job(job_type, n, batch_size, concurrency, **params)
    ws.create("bench", "bench", "2026-11-24")
    t = time.perf_counter()
    execution = ws.process("bench", "bench", "2026-11-24")
    return time.perf_counter() - t, execution.status.value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--wait-items", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=10.0)
    args = ap.parse_args()

    engine_s, status = engine_run("bench.noop", args.items, args.batch_size, 2)
    floor_s = floor(args.items)
    common.save("engine_overhead", {
        "items": args.items, "status": status, "engine_s": round(engine_s, 3), "floor_s": round(floor_s, 3),
        "ratio": round(engine_s / floor_s, 2), "items_per_s": round(args.items / engine_s),
        "targets": {"ratio_max": 1.5, "items_per_s_min": 250_000}, "peak_rss_mb": round(common.peak_rss_mb()),
    })

    wait_s, status = engine_run("bench.wait", args.wait_items, 100, args.concurrency, latency_ms=args.latency_ms)
    ideal = args.concurrency / (args.latency_ms / 1000.0)
    common.save("waiting_handlers", {
        "items": args.wait_items, "status": status, "concurrency": args.concurrency, "latency_ms": args.latency_ms,
        "seconds": round(wait_s, 3), "items_per_s": round(args.wait_items / wait_s),
        "ideal_items_per_s": round(ideal), "share_of_ideal": round(args.wait_items / wait_s / ideal, 3),
        "targets": {"share_of_ideal_min": 0.8}, "peak_rss_mb": round(common.peak_rss_mb()),
    })


if __name__ == "__main__":
    main()

"""Benchmark 1 (engine overhead against the pure-Python floor) and 2 (waiting handlers), on the
local pool, the asyncio path and the Dask backend side by side. Every run is a fresh process, so
its peak RSS is its own; the floor is measured in the same process right after the run.

    python benchmarks/bench_engine.py            # 1M items; waiting handlers at 20k and 100k
    python benchmarks/bench_engine.py --quick    # 100k items; waiting handlers at 5k and 20k (< 2 min)
    python benchmarks/bench_engine.py --no-dask --dask-address tcp://host:8786 ...

Benchmark 1: one job of N work items with ~200-byte JSON payloads and a no-op handler, from
Process to COMPLETED (listing, storing, every status write), against the floor: decode each
payload and call the same handler in a plain loop. The ratio is against the floor with the
decoder the engine uses (``allegro_ops.batches.loads`` when it exists, else ``json.loads``); the
floors with ``json`` and (when installed) ``orjson`` are reported beside it.

Benchmark 2: a handler that waits ``--latency-ms`` per item with ``--wait-concurrency`` in
flight, at each N of ``--wait-items`` (memory must stay flat as N grows).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

import common

# (label, job type, executor) of benchmark 1 and of benchmark 2
OVERHEAD_RUNS = [("local pool, Arrow listing", "bench.noop", "local"),
                 ("local pool, dict listing", "bench.noop_dicts", "local"),
                 ("dask, Arrow listing", "bench.noop", "dask")]
WAITING_RUNS = [("threads", "bench.wait", "local"), ("asyncio", "bench.await", "local"), ("dask", "bench.wait", "dask")]


def _spec(job_type: str, executor: str, items: int, batch_size: int, concurrency: int, args, **extra: Any) -> dict:
    return {"job_type": job_type, "items": items, "batch_size": batch_size, "concurrency": concurrency,
            "dask": executor == "dask", "dask_address": args.dask_address, **extra}


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One run in its own process; a run that crashes is reported as such and the others go on."""
    try:
        return common.in_fresh_process(spec)
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1]
        return {**spec, "available": False, "why": f"the run failed: {last}"}


def engine_overhead(args) -> list[dict[str, Any]]:
    """Benchmark 1 for each backend; every figure of a run comes from its own process."""
    runs = []
    for label, job_type, executor in OVERHEAD_RUNS:
        if executor == "dask" and args.no_dask:
            continue
        print(f"benchmark 1: {label}, {args.items:,} items ...", flush=True)
        run = _measure(_spec(job_type, executor, args.items, args.batch_size, args.concurrency, args, floor=True))
        runs.append({"backend": label, "executor": executor, **run})
        print("  " + _line1(runs[-1]), flush=True)
    return runs


def waiting_handlers(args) -> list[dict[str, Any]]:
    """Benchmark 2 for each backend at each N."""
    runs = []
    for n in args.wait_items:
        for label, job_type, executor in WAITING_RUNS:
            if executor == "dask" and args.no_dask:
                continue
            batch = args.dask_wait_batch_size if executor == "dask" else args.wait_batch_size
            backend = f"{label} (batch {batch:,})"
            print(f"benchmark 2: {backend}, {n:,} items ...", flush=True)
            run = _measure(_spec(job_type, executor, n, batch, args.wait_concurrency, args,
                                 params={"latency_ms": args.latency_ms}))
            if run.get("available"):
                run["share_of_ideal"] = round(run["items_per_s"] / ideal_rate(args), 3)
            runs.append({"backend": backend, "executor": executor, **run})
            print("  " + _line2(runs[-1]), flush=True)
    return runs


def ideal_rate(args) -> float:
    """Items per second with every slot always waiting: concurrency / latency."""
    return args.wait_concurrency / (args.latency_ms / 1000.0)


def _line1(r: dict[str, Any]) -> str:
    if not r.get("available"):
        return f"{r['backend']:<28} not available: {r['why']}"
    floors = ", ".join(f"{k} {v:.3f}s" for k, v in r["floor_s"].items())
    return (f"{r['backend']:<28} {r['status']:<9} {r['seconds']:8.2f}s {r['items_per_s']:>9,} items/s  "
            f"ratio {r['ratio']:6.2f} x floor (floors: {floors})  peak RSS {r['peak_rss_mb']} MB")


def _line2(r: dict[str, Any]) -> str:
    if not r.get("available"):
        return f"{r['backend']:<20} {r['items']:>9,} items  not available: {r['why']}"
    return (f"{r['backend']:<20} {r['items']:>9,} items {r['status']:<9} {r['seconds']:7.2f}s "
            f"{r['items_per_s']:>7,} items/s = {r['share_of_ideal']:.1%} of ideal  peak RSS {r['peak_rss_mb']} MB"
            + (f" (workers {r['workers_peak_rss_mb']} MB)" if "workers_peak_rss_mb" in r else ""))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k items; waiting handlers at 5k and 20k")
    ap.add_argument("--items", type=int, help="benchmark 1's N (default 1,000,000; --quick 100,000)")
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=2, help="benchmark 1's concurrency")
    ap.add_argument("--wait-items", help="benchmark 2's N, comma-separated (default 20000,100000,300000; --quick 5000,20000)")
    ap.add_argument("--wait-batch-size", type=int, default=100)
    ap.add_argument("--dask-wait-batch-size", type=int, default=5000,
                    help="benchmark 2's batch on dask: a Dask task costs ~3-4 ms here, so a piece needs >= ~0.3 s "
                         "of work to keep 64 slots busy (pieces are batch / concurrency items)")
    ap.add_argument("--wait-concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=10.0)
    ap.add_argument("--only", choices=("1", "2"), help="run one benchmark only")
    ap.add_argument("--no-dask", action="store_true", help="skip the dask backend")
    ap.add_argument("--dask-address", help="a running Dask scheduler (default: a LocalCluster per run, "
                                           f"{common.DASK_WORKERS} worker processes, started outside the timing)")
    args = ap.parse_args(argv)
    if not args.no_dask and importlib.util.find_spec("distributed") is None:
        print("dask backend skipped: distributed is not installed (pip install 'allegro-ops[dask]')")
        args.no_dask = True
    args.items = args.items or (100_000 if args.quick else 1_000_000)
    wait = args.wait_items or ("5000,20000" if args.quick else "20000,100000,300000")
    args.wait_items = [int(n) for n in wait.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join(["python benchmarks/bench_engine.py", *(sys.argv[1:] if argv is None else argv)])
    if args.only != "2":
        runs = engine_overhead(args)
        common.save("engine_overhead", {
            "items": args.items, "batch_size": args.batch_size, "concurrency": args.concurrency, "runs": runs,
            "targets": {"ratio_max": 1.5, "items_per_s_min": 250_000},
            "command": command,
        }, quiet=True)
    if args.only != "1":
        wait_runs = waiting_handlers(args)
        common.save("waiting_handlers", {
            "items": args.wait_items, "batch_size": args.wait_batch_size, "concurrency": args.wait_concurrency,
            "latency_ms": args.latency_ms, "ideal_items_per_s": round(ideal_rate(args)), "runs": wait_runs,
            "targets": {"share_of_ideal_min": 0.8, "memory": "flat as N grows"}, "command": command,
        }, quiet=True)
    print(f"\nresults in {common.RESULTS}")
    if args.only != "2":
        print(f"\nbenchmark 1: {args.items:,} items, batch {args.batch_size:,}, concurrency {args.concurrency}; "
              "target <= 1.5 x floor and >= 250,000 items/s")
        for r in runs:
            print("  " + _line1(r))
    if args.only != "1":
        print(f"\nbenchmark 2: {args.latency_ms:g} ms per item, {args.wait_concurrency} in flight, batch "
              f"{args.wait_batch_size}; ideal {ideal_rate(args):,.0f} items/s, target >= 80 %, memory flat")
        for r in wait_runs:
            print("  " + _line2(r))


if __name__ == "__main__":
    main()

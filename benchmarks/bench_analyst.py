"""Benchmark 6: the analysts' queries (allegro_ops.query) on a large synthetic history.

    python benchmarks/bench_analyst.py [--items 1000000] [--dates 10] [--error-every 20]

Work items are spread over ``--dates`` run dates and four jobs; every ``--error-every``-th item
of the last job is errored (codes cycle). Each timing includes opening and closing the database,
as an analyst's call does; the median of ``--repeat`` calls is reported.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

import common
import allegro_ops.query as q
from allegro_ops import Workspace
from allegro_ops.config import snapshot_json
from allegro_ops.store import synthetic

JOBS = ["usage-rating", "bill-run", "invoice-delivery", "payment-collection"]


def build(items: int, days: int, error_every: int) -> tuple[Workspace, list[dt.date], int]:
    home = Path(tempfile.mkdtemp(prefix="allegro-bench-analyst-"))
    cfg = {"client": "bench", "name": "daily", "mode": "automatic",
           "calendar": {"cron": "0 2 * * *", "timezone": "UTC"},
           "jobs": [{"name": j, "type": "demo.noop", "batch_size": 1000} for j in JOBS]}
    (home / "c.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, actor="bench")
    ws.apply_config(home / "c.yaml")
    config = ws.config("bench", "daily")
    dates = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(days)]
    jobs = [(j.name, j.type, json.dumps(j.to_dict(), sort_keys=True)) for j in config.jobs]
    t = time.perf_counter()
    written = ws.store.write(lambda con: synthetic.seed_executions(
        con, client="bench", schedule="daily", config_version=config.version, snapshot_json=snapshot_json(config),
        jobs=jobs, dates=dates, items_per_job=items // (days * len(JOBS)), batch_size=1000,
        error_every=error_every, now=dt.datetime.now(dt.timezone.utc)))
    print(f"seeded {written} work items over {days} dates in {time.perf_counter() - t:.1f}s")
    return ws, dates, written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dates", type=int, default=10)
    ap.add_argument("--error-every", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ws, dates, written = build(args.items, args.dates, args.error_every)
    week = {"date_from": dates[0], "date_to": dates[min(6, len(dates) - 1)]}
    out = Path(tempfile.mkdtemp(prefix="allegro-bench-export-"))
    exports = iter(range(1_000_000))
    cases = {
        "errors_one_code_week_limit_1000": lambda: q.errors(ws, error_code="HTTP_503", limit=1000, **week),
        "errors_week_with_2_payload_fields": lambda: q.errors(ws, payload_fields=["plan.id", "currency"], **week),
        "errors_one_account_with_attempts": lambda: q.errors(ws, account_id="ACC-00000500", with_attempts=True),
        "error_counts_date_code_job": lambda: q.error_counts(ws),
        "error_codes_first_last_seen": lambda: q.error_codes(ws),
        "failing_accounts_min_2_dates": lambda: q.failing_accounts(ws, min_dates=2),
        "payload_breakdown_auto_fields": lambda: q.payload_breakdown(ws, "HTTP_503"),
        "executions": lambda: q.executions(ws),
        "job_history": lambda: q.job_history(ws),
        "sql_count_by_status_all_items": lambda: q.sql(ws, "SELECT status, count(*) FROM v_work_items GROUP BY 1"),
        "export_errors_parquet_partitioned": lambda: q.export_errors(
            ws, out / f"e{next(exports)}", partition_by_date=True),
    }
    results = {}
    for name, fn in cases.items():
        fn()  # warm the file cache
        samples = common.timed(fn, args.repeat)
        results[name] = round(statistics.median(samples), 1)
        print(f"{name:<40} {results[name]:>9.1f} ms")
    errored = int(q.sql(ws, "SELECT count(*) AS n FROM v_errors")["n"][0])
    common.save(f"analyst_queries_{written}", {"work_items": written, "dates": len(dates), "errored": errored,
                                               "median_ms": results})


if __name__ == "__main__":
    main()

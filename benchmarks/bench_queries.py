"""Benchmark 3: operator queries on a large history (default 10,000,000 work items).

    python benchmarks/bench_queries.py [--items N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import yaml

import common
from allegro_ops import Workspace
from allegro_ops.config import snapshot_json
from allegro_ops.store import synthetic

JOBS = ["usage-rating", "bill-run", "invoice-delivery", "payment-collection"]


def build(items: int) -> tuple[Workspace, list[dt.date], int]:
    home = Path(tempfile.mkdtemp(prefix="allegro-bench-q-"))
    cfg = {"client": "bench", "name": "daily", "mode": "automatic",
           "calendar": {"cron": "0 2 * * *", "timezone": "UTC"},
           "jobs": [{"name": j, "type": "demo.noop", "batch_size": 1000} for j in JOBS]}
    (home / "c.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, actor="bench")
    ws.apply_config(home / "c.yaml")
    config = ws.config("bench", "daily")
    per_job = 250_000
    days = max(1, items // (per_job * len(JOBS)))
    dates = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(days)]
    jobs = [(j.name, j.type, json.dumps(j.to_dict(), sort_keys=True)) for j in config.jobs]
    now = dt.datetime.now(dt.timezone.utc)
    t = time.perf_counter()
    written = ws.store.write(lambda con: synthetic.seed_executions(
        con, client="bench", schedule="daily", config_version=config.version, snapshot_json=snapshot_json(config),
        jobs=jobs, dates=dates, items_per_job=per_job, batch_size=1000, error_every=250, now=now))
    print(f"seeded {written} work items in {time.perf_counter() - t:.1f}s")
    return ws, dates, written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    ws, dates, written = build(args.items)
    day, job = dates[len(dates) // 2], JOBS[-1]
    stats_ms = common.timed(lambda: ws.job_stats("bench", "daily", day, job), args.repeat)
    first = ws.job_errors("bench", "daily", day, job, code="HTTP_503", limit=50)
    page1_ms = common.timed(lambda: ws.job_errors("bench", "daily", day, job, code="HTTP_503", limit=50), args.repeat)
    deep_after = ws.job_errors("bench", "daily", day, job, code="HTTP_503", limit=50, offset=150)[-1].item_no
    deep_ms = common.timed(lambda: ws.job_errors("bench", "daily", day, job, code="HTTP_503", limit=50,
                                                 after=deep_after), args.repeat)
    account = first[0].account_id
    history_ms = common.timed(lambda: ws.account_history("bench", account), args.repeat)
    common.save("operator_queries", {
        "work_items": written, "dates": len(dates),
        "job_stats_p95_ms": round(common.p95(stats_ms), 1),
        "errored_page_first_p95_ms": round(common.p95(page1_ms), 1),
        "errored_page_deep_p95_ms": round(common.p95(deep_ms), 1),
        "account_history_p95_ms": round(common.p95(history_ms), 1),
        "targets": {"job_stats_p95_ms": 100, "errored_page_p95_ms": 50, "account_history_p95_ms": 100},
    })


if __name__ == "__main__":
    main()

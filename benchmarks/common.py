"""Shared pieces of the benchmarks: job types with ~200-byte payloads, workspaces, timing, results."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from allegro_ops import ItemInput, JobContext, JobType, Workspace, register

RESULTS = Path(__file__).resolve().parent / "results"


def payload(n: int) -> dict[str, Any]:
    """A payload of about 200 bytes, like a billing API's input."""
    return {
        "account_id": f"ACC-{n:08d}",
        "run_date": "2026-11-24",
        "plan": {"id": "standard-2026", "version": 3},
        "currency": "USD",
        "amount": {"value": n % 997 + 0.25, "tax": 0.08},
        "channel": "email",
        "tags": ["monthly", "auto-pay"],
    }


def noop_handler(item_payload: dict[str, Any]) -> None:
    """The handler both the engine and the floor call."""
    return None


class BenchNoop(JobType):
    name = "bench.noop"

    def list_work_items(self, ctx: JobContext):
        n = int(ctx.params["count"])
        return [(f"ACC-{i:08d}", payload(i)) for i in range(1, n + 1)]

    def process_item(self, item: ItemInput, state, ctx: JobContext) -> None:
        noop_handler(item.payload)


class BenchWait(BenchNoop):
    name = "bench.wait"

    def process_item(self, item: ItemInput, state, ctx: JobContext) -> None:
        time.sleep(float(ctx.params.get("latency_ms", 10)) / 1000.0)


register(BenchNoop)
register(BenchWait)


def workspace_with_job(job_type: str, count: int, batch_size: int, concurrency: int, **params: Any) -> Workspace:
    home = Path(tempfile.mkdtemp(prefix="allegro-bench-"))
    cfg = {
        "client": "bench",
        "name": "bench",
        "mode": "manual",
        "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
        "jobs": [{"name": "job", "type": job_type, "batch_size": batch_size, "concurrency": concurrency,
                  "params": {"count": count, **params}}],
    }
    (home / "bench.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, actor="bench")
    ws.apply_config(home / "bench.yaml")
    return ws


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def save(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **figures}
    path.write_text(json.dumps(doc, indent=2, default=str))
    print(json.dumps(doc, indent=2, default=str))
    return path

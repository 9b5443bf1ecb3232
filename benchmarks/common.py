"""Shared pieces of the benchmarks: the bench job types (~200-byte payloads), workspaces, the
pure-Python floor, one engine run in a fresh process (so its peak RSS is its own), results.

Job types (``params.count`` work items each):

- ``bench.noop``: lists its work items the way a billing platform lists accounts, as one Arrow
  table built by an in-memory DuckDB query (no per-item Python); the handler does nothing.
- ``bench.noop_dicts``: the same items listed as a million Python (account_id, dict) pairs.
- ``bench.wait``: the same items streamed (Arrow tables of 30,720 items from a DuckDB reader, so
  that the listing is never in memory whole); the handler sleeps ``latency_ms`` (an internal API call).
- ``bench.await``: like bench.wait with ``async def process_item`` and ``await asyncio.sleep``.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from allegro_ops import ItemInput, JobContext, JobType, Workspace, register

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUN_DATE = "2026-11-24"
DASK_WORKERS = 2  # the LocalCluster shape DaskExecutor starts by itself: 2 processes, concurrency // 2 threads each

# The payloads of payload(n) as JSON text, byte-identical to json.dumps(payload(n)), built in C.
_ITEMS_SQL = """
SELECT 'ACC-' || lpad(CAST(i AS VARCHAR), 8, '0') AS account_id,
       '{"account_id": "' || account_id || '", "run_date": "2026-11-24", '
       '"plan": {"id": "standard-2026", "version": 3}, "currency": "USD", '
       '"amount": {"value": ' || CAST(i % 997 AS VARCHAR) || '.25, "tax": 0.08}, '
       '"channel": "email", "tags": ["monthly", "auto-pay"]}' AS payload
FROM range(1, $count + 1) t(i)
"""


def payload(n: int) -> dict[str, Any]:
    """A payload of about 200 bytes, like a billing API's input."""
    return {
        "account_id": f"ACC-{n:08d}",
        "run_date": RUN_DATE,
        "plan": {"id": "standard-2026", "version": 3},
        "currency": "USD",
        "amount": {"value": n % 997 + 0.25, "tax": 0.08},
        "channel": "email",
        "tags": ["monthly", "auto-pay"],
    }


def work_items_table(count: int) -> pa.Table:
    """``count`` work items (account_id, payload as JSON text) as one Arrow table, built vectorised."""
    con = duckdb.connect()
    try:
        table = con.sql(_ITEMS_SQL, params={"count": count}).to_arrow_table()
    finally:
        con.close()
    return table.cast(pa.schema([("account_id", pa.string()), ("payload", pa.string())]))


def work_items_stream(count: int, rows: int = 30_720) -> Iterator[pa.Table]:
    """The items of work_items_table as a stream of Arrow tables of ``rows`` items, as a job type
    lists millions of accounts without holding them all: the engine stores the parts as they come."""
    con = duckdb.connect()
    try:
        for batch in con.sql(_ITEMS_SQL, params={"count": count}).to_arrow_reader(rows):
            yield pa.Table.from_batches([batch]).cast(pa.schema([("account_id", pa.string()), ("payload", pa.string())]))
    finally:
        con.close()


def noop_handler(item_payload: dict[str, Any]) -> None:
    """The handler both the engine and the floor call."""
    return None


class BenchNoop(JobType):
    name = "bench.noop"

    def list_work_items(self, ctx: JobContext) -> pa.Table:
        return work_items_table(int(ctx.params["count"]))

    def process_item(self, item: ItemInput, state, ctx: JobContext) -> None:
        noop_handler(item.payload)


class BenchNoopDicts(BenchNoop):
    name = "bench.noop_dicts"

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, dict[str, Any]]]:
        n = int(ctx.params["count"])
        return [(f"ACC-{i:08d}", payload(i)) for i in range(1, n + 1)]


class BenchWait(BenchNoop):
    name = "bench.wait"

    def list_work_items(self, ctx: JobContext) -> Iterator[pa.Table]:
        return work_items_stream(int(ctx.params["count"]))

    def process_item(self, item: ItemInput, state, ctx: JobContext) -> None:
        time.sleep(float(ctx.params.get("latency_ms", 10)) / 1000.0)


class BenchAwait(BenchWait):
    name = "bench.await"

    async def process_item(self, item: ItemInput, state, ctx: JobContext) -> None:  # type: ignore[override]
        await asyncio.sleep(float(ctx.params.get("latency_ms", 10)) / 1000.0)


for _cls in (BenchNoop, BenchNoopDicts, BenchWait, BenchAwait):
    register(_cls)


def payload_texts(job_type: str, count: int) -> list[str]:
    """The JSON texts the engine decodes for this job type's items (what the floor decodes)."""
    if job_type == "bench.noop_dicts":
        return [json.dumps(payload(i)) for i in range(1, count + 1)]
    return work_items_table(count).column("payload").to_pylist()


def floor_seconds(texts: list[str], loads: Callable[[str], Any], budget_s: float = 5.0) -> float:
    """The pure-Python floor: decode each payload and call the same handler in a plain loop.
    Best of up to 3 loops (fewer when one loop takes longer than ``budget_s`` / 3)."""
    best, spent = float("inf"), 0.0
    for _ in range(3):
        t = time.perf_counter()
        for text in texts:
            noop_handler(loads(text))
        took = time.perf_counter() - t
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return best


def decoders() -> tuple[dict[str, Callable[[str], Any]], str, Callable[[str], Any]]:
    """The JSON decoders for the floor (the standard library's, and orjson's when installed), and
    the name and function of the one the engine uses (``allegro_ops.batches.loads`` when that
    exists, else json.loads): the ratio target is against the floor with the engine's decoder."""
    from allegro_ops import batches

    found: dict[str, Callable[[str], Any]] = {"json": json.loads}
    if importlib.util.find_spec("orjson") is not None:
        import orjson

        found["orjson"] = orjson.loads
    engine = getattr(batches, "loads", json.loads)
    name = next((k for k, f in found.items() if f is engine), None)
    return found, name or f"{getattr(engine, '__module__', '?')}.{getattr(engine, '__qualname__', engine)}", engine


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


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p95(samples: list[float]) -> float:
    """The nearest-rank 95th percentile: one of the samples, never above the largest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def machine() -> dict[str, Any]:
    """What the figures ran on, and how busy it was when they started."""
    import pyarrow

    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                            "cpus": os.cpu_count(), "platform": platform.platform(),
                            "duckdb": duckdb.__version__, "pyarrow": pyarrow.__version__,
                            "load_avg_1m": round(os.getloadavg()[0], 2)}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gb"] = round(int(mem) / 2**20, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        dirty = subprocess.run(["git", "-C", str(HERE), "diff", "--quiet", "HEAD"], capture_output=True).returncode
        info["commit"] = commit.stdout.strip() + ("+uncommitted changes" if dirty else "")
    return info


def save(name: str, figures: dict[str, Any], quiet: bool = False) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **figures}
    path.write_text(json.dumps(doc, indent=2, default=str))
    if not quiet:
        print(json.dumps(doc, indent=2, default=str))
    return path


# --- one engine run in a fresh process -------------------------------------------------------

def async_unavailable() -> str | None:
    """Why async handlers cannot run yet (None: the asyncio path exists)."""
    if importlib.util.find_spec("allegro_ops.aio") is None:
        return "allegro_ops.aio does not exist yet"
    return None


def run_once(spec: dict[str, Any]) -> dict[str, Any]:
    """Process one job (``spec``: job_type, items, batch_size, concurrency, params, floor,
    dask, dask_address) and measure it: wall time from Process to settled, peak RSS; with
    ``floor`` also the pure-Python floor of the same payloads, after the run, in this process."""
    job_type, n = spec["job_type"], int(spec["items"])
    params = dict(spec.get("params") or {})
    out: dict[str, Any] = {"job_type": job_type, "items": n, "batch_size": spec["batch_size"],
                           "concurrency": spec["concurrency"], "params": params}
    if job_type == "bench.await" and (why := async_unavailable()):
        return {**out, "available": False, "why": why}
    cluster = _dask_params(spec, params, out) if spec.get("dask") else None
    ws = workspace_with_job(job_type, n, spec["batch_size"], spec["concurrency"], **params)
    try:
        ws.create("bench", "bench", RUN_DATE)
        out["rss_before_mb"] = round(current_rss_mb())
        t = time.perf_counter()
        execution = ws.process("bench", "bench", RUN_DATE)
        seconds = time.perf_counter() - t
        out["peak_rss_mb"] = round(peak_rss_mb())
        job = execution.jobs[0]
        stats = ws.job_stats("bench", "bench", RUN_DATE, "job")
    finally:
        shutil.rmtree(ws.home, ignore_errors=True)
    out.update(available=True, status=execution.status.value, processed=job.processed, errors=job.error,
               errors_by_code={e.error_code: e.count for e in stats.errors_by_code},
               seconds=round(seconds, 3), items_per_s=round(n / seconds), us_per_item=round(seconds / n * 1e6, 2))
    if job_type == "bench.await" and "BAD_RESULT" in out["errors_by_code"]:
        out.update(available=False, why="the engine does not await async handlers yet (items ended BAD_RESULT)")
    if cluster is not None:
        out["workers_peak_rss_mb"] = _workers_peak_rss(cluster.scheduler_address)
        cluster.close()
    if spec.get("floor"):
        out.update(_floors(job_type, n, seconds))
    return out


def _dask_params(spec: dict[str, Any], params: dict[str, Any], out: dict[str, Any]) -> Any:
    """Send the job to Dask: to ``dask_address``, else to a LocalCluster started here, outside the
    timing, shaped as DaskExecutor would start it (returned, for the caller to close)."""
    params["executor"] = "dask"
    cluster = None
    if not spec.get("dask_address"):
        from distributed import LocalCluster

        t = time.perf_counter()
        cluster = LocalCluster(n_workers=DASK_WORKERS, threads_per_worker=max(1, spec["concurrency"] // 2),
                               processes=True, dashboard_address=None)
        out["cluster_start_s"] = round(time.perf_counter() - t, 2)
    params["dask_address"] = spec.get("dask_address") or cluster.scheduler_address
    return cluster


def _floors(job_type: str, n: int, seconds: float) -> dict[str, Any]:
    """The floor of this run's payloads with each decoder, and the run's ratio to the engine's."""
    texts = payload_texts(job_type, n)
    found, name, engine_loads = decoders()
    floors = {k: round(floor_seconds(texts, loads), 3) for k, loads in found.items()}
    floors["engine"] = floors[name] if name in floors else round(floor_seconds(texts, engine_loads), 3)
    return {"floor_s": floors, "engine_decoder": name, "ratio": round(seconds / floors["engine"], 2)}


def _workers_peak_rss(address: str) -> list[int]:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return sorted(round(v) for v in peaks.values())


_CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); import common; "
          "print(json.dumps(common.run_once(json.loads(sys.argv[2]))))")


def in_fresh_process(spec: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """run_once(spec) in a new Python process: its peak RSS belongs to this run alone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    env.pop("ALLEGRO_OPS_DASK_ADDRESS", None)  # the spec says where a dask run goes
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(HERE), json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])

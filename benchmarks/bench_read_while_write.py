"""Benchmark 4: while one process runs a large job, a second process refreshes the status every
second (as a dashboard tab does); every refresh must answer quickly and without a lock error.

    python benchmarks/bench_read_while_write.py [--items N]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common

READER = """
import json, sys, time
from allegro_ops import Workspace
ws = Workspace(sys.argv[1])
samples, errors = [], []
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    t = time.perf_counter()
    try:
        status = ws.execution("bench", "bench", "2026-11-24").status.value
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        status = None
    samples.append((time.perf_counter() - t) * 1000.0)
    if status in ("COMPLETED", "ERRORED"):
        break
    time.sleep(1.0)
print(json.dumps({"samples": samples, "errors": errors}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    args = ap.parse_args()
    ws = common.workspace_with_job("bench.noop", args.items, 10_000, 2)
    ws.create("bench", "bench", "2026-11-24")
    code = "import sys; sys.path.insert(0, %r); import common; from allegro_ops import Workspace; " \
           "Workspace(sys.argv[1]).process('bench', 'bench', '2026-11-24')" % str(Path(__file__).parent)
    t = time.perf_counter()
    writer = subprocess.Popen([sys.executable, "-c", code, str(ws.home)])
    time.sleep(0.5)
    reader = subprocess.run([sys.executable, "-c", READER, str(ws.home), "3600"], capture_output=True, text=True,
                            check=True)
    writer.wait()
    run_s = time.perf_counter() - t
    result = json.loads(reader.stdout)
    samples = result["samples"]
    common.save("read_while_write", {
        "items": args.items, "run_s": round(run_s, 2), "refreshes": len(samples),
        "refresh_p95_ms": round(common.p95(samples), 1), "refresh_max_ms": round(max(samples), 1),
        "lock_errors": len(result["errors"]), "errors": result["errors"][:5],
        "targets": {"refresh_p95_ms": 250, "lock_errors": 0},
    })


if __name__ == "__main__":
    main()

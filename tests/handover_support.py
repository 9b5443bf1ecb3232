"""The job type and workspace of the hand-over tests (tests/test_engine_handover.py), importable by a
writer subprocess too: ``python -m handover_support HOME`` processes the execution.

``test.rowgroups`` lists ``params.count`` work items as one Arrow table of JSON text (built by
pyarrow, no Python step per item) and waits ``params.pause_ms`` every ``params.pause_every`` items,
so that a run of a few row groups lasts long enough for another process to look in.
"""
from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from allegro_ops import ItemInput, JobContext, JobType, Workspace, register

CLIENT, SCHEDULE, DAY = "lab", "rowgroups", dt.date(2026, 11, 24)


class RowGroups(JobType):
    name = "test.rowgroups"

    def list_work_items(self, ctx: JobContext) -> pa.Table:
        numbers = pa.array(range(1, int(ctx.params["count"]) + 1), pa.int64()).cast(pa.string())
        payloads = pc.binary_join_element_wise('{"n": ', numbers, "}", "")
        return pa.table({"account_id": pc.binary_join_element_wise("A", numbers, ""), "payload": payloads})

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        every = int(ctx.params.get("pause_every", 0))
        if every and item.payload["n"] % every == 0:
            time.sleep(float(ctx.params["pause_ms"]) / 1000.0)


register(RowGroups)


def workspace(home: Path, count: int, *, batch_size: int = 1000, concurrency: int = 2, pause_ms: float = 0,
              pause_every: int = 0, clock=None) -> Workspace:
    """A workspace with one schedule of one test.rowgroups job, its execution created."""
    cfg = {"client": CLIENT, "name": SCHEDULE, "mode": "manual", "calendar": {"cron": "0 0 * * *", "timezone": "UTC"},
           "jobs": [{"name": "job", "type": "test.rowgroups", "batch_size": batch_size, "concurrency": concurrency,
                     "params": {"count": count, "pause_ms": pause_ms, "pause_every": pause_every}}]}
    (home / "rowgroups.yaml").write_text(yaml.safe_dump(cfg))
    ws = Workspace(home, clock=clock, actor="tester") if clock else Workspace(home, actor="tester")
    ws.apply_config(home / "rowgroups.yaml")
    ws.create(CLIENT, SCHEDULE, DAY)
    return ws


if __name__ == "__main__":
    print(Workspace(Path(sys.argv[1]), actor="writer").process(CLIENT, SCHEDULE, DAY).status.value)

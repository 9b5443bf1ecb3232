"""A demo workspace with a history worth analysing, shared by the analyst tests.

acme/daily-billing (80 accounts, seeded defects: 2 RATE_PLAN_NOT_FOUND, 1 TAX_RULE_MISSING,
2 INVALID_EMAIL, 1 CARD_EXPIRED):
  2026-11-20  bill-run ERRORED (2 RATE_PLAN_NOT_FOUND + 1 TAX_RULE_MISSING), reprocessed before
              any fix, so its three errored items have two failed attempts each
  2026-11-21  bill-run failed the same way; after ``demo resolve`` of both codes it was
              reprocessed: bill-run COMPLETED, invoice-delivery ERRORED (2 INVALID_EMAIL)
  2026-11-22  bill-run COMPLETED, invoice-delivery ERRORED (2 INVALID_EMAIL)
globex/daily-billing 2026-11-20: processed, Reset (its errors archived), processed again.
"""
from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

from allegro_ops import Workspace
from allegro_ops.demo import init_demo, resolve

D1, D2, D3 = dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)
SCHEDULE = "daily-billing"


class TickingClock:
    """A fixed clock that moves 1 ms each time it is read, so that runs have a duration."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            self.now += dt.timedelta(milliseconds=1)
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now += dt.timedelta(**delta)


def build_history(home: Path) -> Workspace:
    clock = TickingClock(dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone.utc))
    ws = Workspace(home, clock=clock, actor="analyst-test")
    init_demo(ws, accounts=80, seed=7, batch_size=40)
    for day in (D1, D2):
        clock.advance(minutes=5)
        ws.create("acme", SCHEDULE, day)
        ws.process("acme", SCHEDULE, day)
    clock.advance(minutes=5)
    ws.reprocess("acme", SCHEDULE, D1)  # nothing fixed yet: the same items fail again
    resolve(ws, "acme", "RATE_PLAN_NOT_FOUND")
    resolve(ws, "acme", "TAX_RULE_MISSING")
    clock.advance(minutes=5)
    ws.reprocess("acme", SCHEDULE, D2)
    clock.advance(minutes=5)
    ws.create("acme", SCHEDULE, D3)
    ws.process("acme", SCHEDULE, D3)
    ws.create("globex", SCHEDULE, D1)
    ws.process("globex", SCHEDULE, D1)
    ws.reset("globex", SCHEDULE, D1)
    ws.process("globex", SCHEDULE, D1)
    return ws


_template: Path | None = None


def history_copy(tmp_path_factory) -> Path:
    """A fresh copy of the history workspace; it is built once per test session."""
    global _template
    if _template is None:
        src = tmp_path_factory.mktemp("analyst-history")
        build_history(src)
        _template = src
    dst = tmp_path_factory.mktemp("analyst-ws")
    shutil.copytree(_template, dst, dirs_exist_ok=True)
    return dst

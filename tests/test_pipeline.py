"""The run's read-ahead and result-writing threads (allegro_ops/pipeline.py): order, bounds, errors."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pyarrow as pa
import pytest
import yaml

from allegro_ops import ExecutionStatus, ItemInput, JobContext, JobType, Workspace, register

from allegro_ops.pipeline import SWITCH_INTERVAL_S, Prefetched, ResultWriter, quick_switches


def _table(first: int, n: int) -> pa.Table:
    return pa.table({"item_no": pa.array(range(first, first + n), pa.int32())})


def _until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_prefetched_gives_every_item_in_order_and_reads_at_most_depth_ahead():
    produced: list[int] = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    with Prefetched(items(), depth=3) as ahead:
        it = iter(ahead)
        assert next(it) == 0
        assert _until(lambda: len(produced) >= 4)
        time.sleep(0.05)
        # one taken, three waiting, and the one the filler holds until there is room
        assert len(produced) <= 1 + 3 + 1
        assert [0, *it] == list(range(20))


def test_prefetched_raises_the_iterators_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise ValueError("store read failed")

    got = []
    with pytest.raises(ValueError, match="store read failed"):
        with Prefetched(items(), depth=5) as ahead:
            for item in ahead:
                got.append(item)
    assert got == [1, 2]


def test_closing_a_prefetcher_stops_its_thread_and_closes_the_iterator():
    closed = threading.Event()

    def items():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    ahead = Prefetched(items(), depth=2, name="test-prefetch")
    assert next(iter(ahead)) == 0
    ahead.close()
    assert closed.is_set()
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())


def test_writer_writes_every_table_in_order_after_before_first():
    events: list[object] = []
    writer = ResultWriter(lambda t: events.append(t.column("item_no")[0].as_py()),
                          before_first=lambda: events.append("stored"))
    for first in (1, 11, 21):
        writer.put(_table(first, 10))
    writer.close()
    assert events == ["stored", 1, 11, 21]


def test_put_waits_while_limit_rows_are_unwritten():
    release = threading.Event()
    written: list[int] = []

    def write(t):
        release.wait(5)
        written.append(t.num_rows)

    writer = ResultWriter(write, limit_rows=20)
    writer.put(_table(1, 10))  # being written (blocked)
    writer.put(_table(11, 10))  # 20 unwritten: the limit
    third = threading.Thread(target=writer.put, args=(_table(21, 10),))
    third.start()
    time.sleep(0.1)
    assert third.is_alive()  # waits for room
    release.set()
    third.join(5)
    assert not third.is_alive()
    writer.close()
    assert written == [10, 10, 10]


def test_a_failed_write_is_raised_to_the_run_and_nothing_after_it_is_written():
    written: list[int] = []

    def write(t):
        if t.column("item_no")[0].as_py() == 11:
            raise RuntimeError("lease lost")
        written.append(t.num_rows)

    writer = ResultWriter(write)
    writer.put(_table(1, 10))
    writer.put(_table(11, 10))
    assert _until(lambda: _raises(writer.check))
    with pytest.raises(RuntimeError, match="lease lost"):
        writer.put(_table(21, 10))
    with pytest.raises(RuntimeError, match="lease lost"):
        writer.close()
    assert written == [10]


def test_a_failed_listing_store_is_raised_and_nothing_is_written():
    written: list[pa.Table] = []

    def stored():
        raise OSError("disk full")

    writer = ResultWriter(written.append, before_first=stored)
    writer.put(_table(1, 10))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert written == []


def test_abandon_drops_what_is_not_yet_written():
    started, release = threading.Event(), threading.Event()
    written: list[int] = []

    def write(t):
        started.set()
        release.wait(5)
        written.append(t.column("item_no")[0].as_py())

    writer = ResultWriter(write)
    writer.put(_table(1, 10))
    writer.put(_table(11, 10))
    assert started.wait(5)  # the first is being written
    abandoning = threading.Thread(target=writer.close, kwargs={"abandon": True})
    abandoning.start()
    time.sleep(0.1)
    release.set()
    abandoning.join(5)
    assert written == [1]  # the write under way ended; the second never began
    assert not any(t.name == "allegro-write-results" and t.is_alive() for t in threading.enumerate())


def _raises(fn) -> bool:
    try:
        fn()
    except Exception:  # noqa: BLE001
        return True
    return False


def test_switches_are_quick_while_runs_go_on_and_put_back_after_the_last():
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.004)
        with quick_switches():
            assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S, rel=0.05)
            with quick_switches():  # a second run in the same process
                pass
            assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S, rel=0.05)
        assert sys.getswitchinterval() == pytest.approx(0.004, rel=0.05)
        sys.setswitchinterval(0.0001)  # finer already: kept
        with quick_switches():
            assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.05)
    finally:
        sys.setswitchinterval(before)


@register
class RecordsSwitchInterval(JobType):
    """Each work item notes the interpreter's switch interval while its handler runs."""

    name = "test.switch_interval"
    seen: list[float] = []

    def list_work_items(self, ctx: JobContext) -> list[tuple[str, Any]]:
        return [(f"A-{i}", {"i": i}) for i in range(3)]

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        RecordsSwitchInterval.seen.append(sys.getswitchinterval())


def test_a_run_switches_quickly_and_puts_the_interval_back(home, clock):
    ws = Workspace(home, clock=clock, actor="tester", role="operator")
    doc = {"client": "acme", "name": "switches", "mode": "manual", "calendar": {"cron": "0 2 * * *"},
           "jobs": [{"name": "calls", "type": "test.switch_interval", "batch_size": 2, "concurrency": 2}]}
    (home / "switches.yaml").write_text(yaml.safe_dump(doc))
    ws.apply_config(home / "switches.yaml")
    ws.create("acme", "switches", "2026-11-24")
    before = sys.getswitchinterval()
    RecordsSwitchInterval.seen.clear()
    assert ws.process("acme", "switches", "2026-11-24").status is ExecutionStatus.COMPLETED
    assert RecordsSwitchInterval.seen == [pytest.approx(min(before, SWITCH_INTERVAL_S), rel=0.05)] * 3
    assert sys.getswitchinterval() == before

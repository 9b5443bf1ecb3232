"""The account index (store/accounts.py, migration 7): every listed work item indexed once, in runs
sorted by key that zone maps narrow to a row group or two, and account_history read through it
gives what a scan of every listed item gives."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow as pa

from allegro_ops.store import Store, accounts, synthetic
from allegro_ops.store.db import ROW_GROUP_ROWS
from allegro_ops.store import work_items as wi_sql

NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.timezone.utc)
DAY = dt.date(2026, 11, 24)


def listing(ids: list[str]) -> pa.Table:
    return pa.table({"account_id": ids, "payload": [f'{{"account_id": "{a}"}}' for a in ids]})


def add_job(con, job_id: int, ids: list[str], *, client: str = "acme", day: dt.date = DAY, listed: bool = True,
            index: bool = True) -> None:
    """An execution (of a schedule of its own) with one job holding these work items, indexed as the engine does."""
    con.execute("INSERT INTO executions (execution_id, client, schedule, run_date, generation, config_version, "
                "snapshot_json, status, created_at) VALUES (?, ?, ?, ?, 1, 1, '{}', 'COMPLETED', ?)",
                [job_id, client, f"schedule-{job_id}", day, NOW])
    con.execute("INSERT INTO jobs (job_id, execution_id, generation, sequence, name, type, config_json, status, "
                "items_listed, total) VALUES (?, ?, 1, 1, 'bill-run', 'demo.noop', '{}', 'COMPLETED', ?, ?)",
                [job_id, job_id, listed, len(ids)])
    wi_sql.insert_items(con, job_id, listing(ids), 1000, NOW)
    con.execute("INSERT INTO attempts SELECT job_id, item_no, 1, batch_id, 'PROCESSED', NULL, NULL, ?, ?, 't' "
                "FROM listed_items WHERE job_id = ?", [NOW, NOW, job_id])
    if index:
        accounts.index_listing(con, job_id)


def rows(store: Store, sql: str, params=None) -> list[tuple]:
    return store.read(lambda con: con.execute(sql, params or []).fetchall())


def index_of(store: Store) -> Counter:
    return Counter(rows(store, "SELECT account_key, job_id, item_no FROM account_items UNION ALL "
                               "SELECT account_key, job_id, item_no FROM account_items_recent"))


def listed_of(store: Store, where: str = "true") -> Counter:
    return Counter(rows(store, f"SELECT account_key, job_id, item_no FROM listed_items WHERE {where}"))


def scanned_history(store: Store, client: str, account_id: str) -> list[tuple]:
    """What account_history must give, from a scan of every listed item by its id (no index)."""
    return rows(store, (
        "SELECT e.schedule, e.run_date, j.generation, e.generation, j.name, a.attempt, a.batch_id, a.status, "
        "a.error_code, a.reason, a.finished_at, coalesce(s.payload, w.payload) FROM listed_items w "
        "JOIN jobs j ON j.job_id = w.job_id JOIN executions e ON e.execution_id = j.execution_id "
        "JOIN attempts a ON a.job_id = w.job_id AND a.item_no = w.item_no "
        "LEFT JOIN item_states s ON s.job_id = w.job_id AND s.item_no = w.item_no "
        "WHERE e.client = ? AND w.account_id = ? "
        "ORDER BY e.run_date DESC, e.schedule, j.generation DESC, j.sequence, w.item_no, a.attempt DESC"),
        [client, account_id])


def history(store: Store, client: str, account_id: str, limit: int = 500) -> list[tuple]:
    return store.read(lambda con: accounts.account_history(con, client, account_id, limit))


def run_orders(store: Store) -> list[tuple[int, str]]:
    """(job, ASC or DESC) in the order of account_items: how each job's rows are sorted by key there
    (a job's rows lie in one run, so they are sorted as their run is)."""
    return rows(store, (
        "SELECT job_id, CASE WHEN bool_and(d >= 0) THEN 'ASC' WHEN bool_and(d <= 0) THEN 'DESC' ELSE 'unsorted' END "
        "FROM (SELECT job_id, rowid AS r, CAST(account_key AS BIGINT) - lag(account_key) OVER (PARTITION BY job_id ORDER BY rowid) AS d "
        "FROM account_items) GROUP BY job_id ORDER BY min(r)"))


def row_groups_holding(store: Store, table: str, key: int) -> tuple[int, int]:
    """(row groups whose zone map of account_key admits ``key``, row groups) of a table."""
    zones = rows(store, "SELECT stats FROM pragma_storage_info(?) WHERE column_name = 'account_key' "
                        "AND segment_type = 'UINTEGER'", [table])
    return sum(1 for (s,) in zones if s["min"] <= key <= s["max"]), len(zones)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(1, n + 1)]


def test_big_listings_are_sorted_runs_and_small_ones_wait_then_make_one_run(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(accounts, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(accounts, "RECENT_ROWS", 250)
    store = Store(tmp_path / "db.duckdb")
    store.write(lambda con: [add_job(con, 1, ids("A", 300)), add_job(con, 2, ids("B", 99)),
                             add_job(con, 3, ids("C", 120))])
    assert index_of(store) == listed_of(store)
    assert rows(store, "SELECT DISTINCT job_id FROM account_items ORDER BY 1") == [(1,), (3,)]
    assert rows(store, "SELECT DISTINCT job_id FROM account_items_recent") == [(2,)]
    assert run_orders(store) == [(1, "ASC"), (3, "DESC")]  # two runs; the second starts where the first ended
    store.write(lambda con: [add_job(con, 4, ids("D", 80)), add_job(con, 5, ids("E", 90))])  # 99 + 80 + 90 >= 250
    assert index_of(store) == listed_of(store)
    assert rows(store, "SELECT count(*) FROM account_items_recent") == [(0,)]
    orders = run_orders(store)  # one more run, of the three jobs together
    assert orders[:2] == [(1, "ASC"), (3, "DESC")] and sorted(orders[2:]) == [(2, "ASC"), (4, "ASC"), (5, "ASC")]
    assert rows(store, "SELECT DISTINCT job_id FROM account_items WHERE rowid >= 420 ORDER BY 1") == [(2,), (4,), (5,)]
    assert history(store, "acme", "D-000007") == scanned_history(store, "acme", "D-000007") != []


def test_a_lookup_reads_a_row_group_or_two_per_run_not_every_row_group(tmp_path: Path):
    store = Store(tmp_path / "db.duckdb")
    per_job = ROW_GROUP_ROWS + ROW_GROUP_ROWS // 3  # two row groups a listing: one full, one partly filled
    store.write(lambda con: [add_job(con, job, ids("ACC", per_job), day=DAY - dt.timedelta(days=job))
                             for job in (1, 2, 3)])
    assert index_of(store) == listed_of(store)
    assert run_orders(store) == [(1, "ASC"), (2, "DESC"), (3, "ASC")]
    for account in ("ACC-000001", "ACC-020000", "ACC-040000"):
        key = rows(store, "SELECT account_key(?)", [account])[0][0]
        # Runs of 40,960 rows: the second fills the first's partly filled row group, but in the opposite
        # order, so that row group holds high keys only: a key is in a row group per run at most, where a
        # row group of keys from end to end would add one for every key.
        holding, total = row_groups_holding(store, "account_items", key)
        assert holding <= 3 and total >= 4
        holding, total = row_groups_holding(store, "listed_items", key)
        assert holding == total >= 4  # without the index: every row group
        got = history(store, "acme", account)
        assert got == scanned_history(store, "acme", account) and [r[1] for r in got] == [
            DAY - dt.timedelta(days=d) for d in (1, 2, 3)]


def test_history_through_the_index_is_what_a_scan_gives_clients_attempts_and_corrections(tmp_path: Path):
    store = Store(tmp_path / "db.duckdb")
    accts = ids("ACC", 40)

    def build(con):
        for job in range(1, 7):
            add_job(con, job, accts if job % 2 else accts[::-1], client="acme" if job < 6 else "globex",
                    day=DAY - dt.timedelta(days=job % 3))
        # a second attempt (ERROR) of ACC-000005 in job 3, corrected payload in item_states
        con.execute("INSERT INTO attempts SELECT job_id, item_no, 2, batch_id, 'ERROR', 'HTTP_503', 'down', ?, ?, "
                    "'t' FROM listed_items WHERE job_id = 3 AND account_id = 'ACC-000005'", [NOW, NOW])
        con.execute("INSERT INTO item_states SELECT job_id, item_no, account_id, batch_id, '{\"fixed\": 1}', "
                    "'ERROR', 'HTTP_503', 'down', 2, ? FROM listed_items WHERE job_id = 3 AND account_id = 'ACC-000005'",
                    [NOW])

    store.write(build)
    got = history(store, "acme", "ACC-000005")
    assert got == scanned_history(store, "acme", "ACC-000005")
    assert len(got) == 6 and {r[-1] for r in got} == {'{"account_id": "ACC-000005"}', '{"fixed": 1}'}
    assert history(store, "globex", "ACC-000005") == scanned_history(store, "globex", "ACC-000005") != []
    assert history(store, "acme", "ACC-000005", limit=2) == got[:2]
    assert history(store, "acme", "no-such-account") == [] and history(store, "initech", "ACC-000005") == []


def test_ids_that_share_a_key_are_told_apart_and_do_not_take_the_places_of_the_limit(tmp_path: Path):
    store = Store(tmp_path / "db.duckdb")
    # Two ids with one 32-bit key (a birthday search among 300,000 ids finds one almost surely).
    a, b = rows(store, "SELECT min(id), max(id) FROM (SELECT 'X' || i AS id FROM range(300000) r(i)) "
                       "GROUP BY account_key(id) HAVING count(*) > 1 ORDER BY 1 LIMIT 1")[0]
    assert rows(store, "SELECT account_key(?) = account_key(?)", [a, b]) == [(True,)]
    # b on the newer dates: an index lookup for a finds b's items first
    store.write(lambda con: [add_job(con, job, [a] if job == 1 else [b, "other"], day=DAY + dt.timedelta(days=job))
                             for job in (1, 2, 3, 4)])
    assert [r[1] for r in history(store, "acme", a)] == [DAY + dt.timedelta(days=1)]
    assert history(store, "acme", a, limit=1) == scanned_history(store, "acme", a)
    assert history(store, "acme", b) == scanned_history(store, "acme", b) and len(history(store, "acme", b)) == 3


def test_migration_indexes_the_listed_jobs_of_an_existing_workspace_in_narrow_runs(tmp_path: Path):
    store = Store(tmp_path / "db.duckdb")
    big = ROW_GROUP_ROWS + 1000
    store.write(lambda con: [add_job(con, 1, ids("ACC", big), index=False),
                             add_job(con, 2, ids("ACC", big), index=False),
                             add_job(con, 3, ids("ACC", 70), index=False),
                             add_job(con, 4, ids("ACC", 30), index=False, listed=False)])  # an interrupted listing
    expected = scanned_history(store, "acme", "ACC-000042")
    # The workspace as it was before migration 7.
    store.write(lambda con: [con.execute("DROP TABLE account_items"), con.execute("DROP TABLE account_items_recent"),
                             con.execute("DELETE FROM schema_migrations WHERE version = 7")])
    again = Store(store.path)
    assert index_of(again) == listed_of(again, "job_id <> 4") and len(expected) == 3
    assert history(again, "acme", "ACC-000042") == expected
    # One statement writes the runs: the small jobs (70 items, ascending), job 1 (descending), job 2
    # (ascending), in row groups of 30,720, 30,720 and 4,070. The first holds all of the small jobs' range;
    # where jobs 1 and 2 meet, the second holds low keys only, so a key is in two row groups, not three.
    for account in ("ACC-000042", "ACC-000001", "ACC-031000"):
        key = rows(again, "SELECT account_key(?)", [account])[0][0]
        assert row_groups_holding(again, "account_items", key) == (2, 3)
    # what comes next is indexed as it is listed
    again.write(lambda con: add_job(con, 5, ids("ACC", 50)))
    assert index_of(again) == listed_of(again, "job_id <> 4")


def test_synthetic_executions_are_indexed_as_they_are_seeded(tmp_path: Path, monkeypatch):
    store = Store(tmp_path / "db.duckdb")
    written = store.write(lambda con: synthetic.seed_executions(
        con, client="bench", schedule="daily", config_version=1, snapshot_json="{}",
        jobs=[("usage-rating", "demo.noop", "{}"), ("bill-run", "demo.noop", "{}")],
        dates=[DAY, DAY + dt.timedelta(days=1)], items_per_job=300, batch_size=100, error_every=7, now=NOW))
    assert written == 1200 and index_of(store) == listed_of(store)
    errored = rows(store, "SELECT account_id FROM listed_items WHERE status = 'ERROR' ORDER BY job_id, item_no")[0][0]
    got = history(store, "bench", errored)
    assert got == scanned_history(store, "bench", errored) and len(got) == 4
    assert {r[7] for r in got} == {"PROCESSED", "ERROR"}
    monkeypatch.setattr(accounts, "_ONE_SCAN_EACH", 2)  # beyond it: one scan of the jobs' item numbers
    assert history(store, "bench", errored) == got
    # each job lists the accounts in another order, as real listings do: an account's item number moves
    numbers = rows(store, "SELECT item_no FROM listed_items WHERE account_id = ?", [errored])
    assert len(numbers) == 4 and len(set(numbers)) == 4


def test_rows_whose_row_ids_moved_are_read_by_job_and_number_instead(tmp_path: Path):
    """DuckDB moves row ids when a checkpoint merges row groups after deletes (seen with its default
    row group size), which could happen between the two reads of _rows_of: ids that point at other
    rows (here: each id's neighbour, as after such a move) are noticed, and the rows read by job and
    item number instead."""
    store = Store(tmp_path / "db.duckdb")
    store.write(lambda con: add_job(con, 1, ids("ACC", 3000)))
    store.write(lambda con: add_job(con, 2, ids("ACC", 3000)))
    items = [(1, 7), (2, 1500), (2, 2999)]
    where, params = accounts._in_items(items)
    expected = [r for r in rows(store, f"SELECT job_id, item_no, account_id, payload FROM listed_items {where}", params)
                if (r[0], r[1]) in items]
    found = [i for i, j, n in rows(store, f"SELECT rowid, job_id, item_no FROM listed_items {where}", params)
             if (j, n) in items]
    for moved in ([i + 1 for i in found], [*found[:2], 10**9]):  # ids of other rows; one past the last row
        got = store.read(lambda con: accounts._rows_by_id(con, "listed_items", items, moved))
        assert sorted(got) == sorted(expected) and len(got) == 3
    got = store.read(lambda con: accounts._rows_by_id(con, "listed_items", items, found))
    assert sorted(got) == sorted(expected)  # ids in place: read by id


def test_synthetic_executions_of_empty_jobs(tmp_path: Path):
    store = Store(tmp_path / "db.duckdb")
    written = store.write(lambda con: synthetic.seed_executions(
        con, client="bench", schedule="daily", config_version=1, snapshot_json="{}",
        jobs=[("usage-rating", "demo.noop", "{}")], dates=[DAY], items_per_job=0, batch_size=100, error_every=0,
        now=NOW))
    assert written == 0 and rows(store, "SELECT status, total FROM jobs") == [("COMPLETED", 0)]

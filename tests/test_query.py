"""The analysts' query API, views, raw SQL helper and export (allegro_ops.query, allegro-ops export)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

import allegro_ops.query as q
from allegro_ops import BadInput, NotFound, Workspace
from allegro_ops.cli import main
from allegro_ops.demo import PLANS
from allegro_ops.store import migrations
from analyst_history import D1, D2, D3, SCHEDULE, history_copy

KEY = ["client", "run_date", "job", "account_id"]
DOCUMENTED_COLUMNS = {
    "v_work_items": ["client", "schedule", "run_date", "generation", "job", "job_sequence", "job_type", "job_id",
                     "item_no", "account_id", "batch_id", "status", "error_code", "reason", "attempts", "payload",
                     "updated_at"],
    "v_attempts": ["client", "schedule", "run_date", "generation", "archived", "job", "job_sequence", "job_id",
                   "item_no", "account_id", "attempt", "batch_id", "status", "error_code", "reason", "started_at",
                   "finished_at", "duration_s", "run_token"],
    "v_jobs": ["client", "schedule", "run_date", "generation", "execution_status", "job", "job_sequence", "job_type",
               "job_id", "status", "total", "processed", "error", "pending", "started_at", "finished_at",
               "duration_s"],
    "v_executions": ["client", "schedule", "run_date", "status", "config_version", "generation", "created_at",
                     "started_at", "finished_at", "duration_s", "jobs", "errored_jobs", "total", "processed", "error",
                     "pending"],
}
DOCUMENTED_COLUMNS["v_errors"] = DOCUMENTED_COLUMNS["v_work_items"]
INJECTIONS = ["' OR '1'='1", "acme'; DROP TABLE work_items; --", 'x") OR 1=1 --', "%"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(history_copy(tmp_path_factory), actor="analyst-test")


@pytest.fixture(scope="module")
def everything(ws) -> pd.DataFrame:
    return q.errors(ws)


def keys(df: pd.DataFrame) -> set[tuple]:
    return {(r.client, pd.Timestamp(r.run_date).date(), r.job, r.account_id) for r in df[KEY].itertuples()}


def table_counts(source) -> dict[str, int]:
    tables = ["executions", "jobs", "listed_items", "item_states", "attempts", "audit", "demo_accounts"]
    query = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in tables)
    return dict(q.sql(source, query).itertuples(index=False))


# ----------------------------------------------------------------------------- errored work items
def test_errors_are_the_errored_items_the_service_reports_for_every_job(ws, everything):
    expected = set()
    for client, day in [("acme", D1), ("acme", D2), ("acme", D3), ("globex", D1)]:
        for job in ws.execution(client, SCHEDULE, day).jobs:
            if job.error:
                expected |= {(client, day, job.name, i.account_id)
                             for i in ws.job_errors(client, SCHEDULE, day, job.name, limit=1000)}
    assert keys(everything) == expected
    assert len(everything) == len(expected) == 10
    assert set(everything["status"]) == {"ERROR"}


def test_errors_leave_out_archived_generations(ws, everything):
    globex = everything[everything["client"] == "globex"]
    assert len(globex) == 3 and set(globex["generation"]) == {2}
    archived = q.sql(ws, "SELECT count(*) AS n FROM v_attempts WHERE client = 'globex' AND archived "
                         "AND status = 'ERROR'")
    assert archived["n"][0] == 3


@pytest.mark.parametrize("column, value", [
    ("client", "globex"),
    ("client", ["globex"]),
    ("job", "invoice-delivery"),
    ("error_code", "INVALID_EMAIL"),
    ("error_code", ["INVALID_EMAIL", "TAX_RULE_MISSING"]),
    ("account_id", "ACME-000044"),
])
def test_each_filter_narrows_to_the_matching_items(ws, everything, column, value):
    values = [value] if isinstance(value, str) else value
    got = q.errors(ws, **{column: value})
    expected = everything[everything[column].isin(values)]
    assert 0 < len(got) < len(everything)
    assert keys(got) == keys(expected)


def test_schedule_filter_narrows_to_that_schedule(ws, everything):
    assert keys(q.errors(ws, schedule=SCHEDULE)) == keys(everything)
    assert q.errors(ws, schedule="month-end").empty


def test_date_range_includes_both_ends(ws, everything):
    got = q.errors(ws, date_from=D2, date_to="2026-11-22")
    assert set(pd.to_datetime(got["run_date"]).dt.date) == {D2, D3}
    assert len(q.errors(ws, date_from="2026-11-21", date_to="2026-11-21")) == 2
    assert len(q.errors(ws, date_to=D1)) == 6


@pytest.mark.parametrize("kwargs", [
    {"date_from": "2026-11-31"}, {"date_to": "yesterday"}, {"date_from": D3, "date_to": D1}, {"client": 5},
    {"client": []}, {"limit": 0}, {"per_code": -1},
])
def test_bad_filters_raise_bad_input(ws, kwargs):
    with pytest.raises(BadInput):
        q.errors(ws, **kwargs)


def test_payload_fields_become_columns(ws):
    got = q.errors(ws, error_code="RATE_PLAN_NOT_FOUND", payload_fields=["plan.id", "tax_region", "account_id"])
    payloads = [json.loads(p) for p in got["payload"]]
    assert list(got["plan.id"]) == [p["plan"]["id"] for p in payloads]
    assert list(got["tax_region"]) == [p["tax_region"] for p in payloads]
    assert list(got["payload.account_id"]) == list(got["account_id"])  # a clash with a column is prefixed
    assert not set(got["plan.id"]) & set(PLANS)


def test_missing_payload_field_is_null(ws):
    got = q.errors(ws, payload_fields=["no_such.field"])
    assert len(got) == 10 and got["no_such.field"].isna().all()


@pytest.mark.parametrize("field", ["plan.id') FROM jobs; --", "$.plan", "plan..id", "", "plan id", "a" * 70])
def test_payload_fields_outside_the_strict_pattern_are_refused(ws, field):
    with pytest.raises(BadInput):
        q.errors(ws, payload_fields=[field])


def test_with_attempts_adds_each_items_attempts_oldest_first(ws):
    got = q.errors(ws, client="acme", date_to=D1, with_attempts=True)
    assert len(got) == 3
    for history in got["attempt_history"]:
        assert [a["attempt"] for a in history] == [1, 2]
        assert {a["status"] for a in history} == {"ERROR"}


def test_attempts_give_one_row_per_attempt(ws):
    errored = q.attempts(ws, client="acme", date_to=D1)
    assert len(errored) == 6 and set(errored["attempt"]) == {1, 2}
    account = q.attempts(ws, account_id="ACME-000026", errored_only=False)
    d2 = account[(account["run_date"] == pd.Timestamp(D2)) & (account["job"] == "bill-run")]
    assert list(d2["status"]) == ["ERROR", "PROCESSED"]  # failed, then succeeded after the fix


def test_per_code_keeps_the_newest_examples_of_each_code(ws):
    got = q.errors(ws, per_code=1)
    assert sorted(got["error_code"]) == ["INVALID_EMAIL", "RATE_PLAN_NOT_FOUND", "TAX_RULE_MISSING"]
    assert got.set_index("error_code").loc["INVALID_EMAIL", "run_date"] == pd.Timestamp(D3)


# ----------------------------------------------------------------------------- trends
def test_error_counts_per_date_code_and_job(ws, everything):
    counts = q.error_counts(ws)
    assert list(counts.columns) == ["run_date", "error_code", "job", "errors", "accounts"]
    assert counts["errors"].sum() == len(everything)
    row = counts[(counts["run_date"] == pd.Timestamp(D1)) & (counts["error_code"] == "RATE_PLAN_NOT_FOUND")]
    assert row["errors"].tolist() == [4] and row["job"].tolist() == ["bill-run"]
    assert q.error_counts(ws, by=["client"], client="acme")["errors"].tolist() == [7]


@pytest.mark.parametrize("by", [["payload"], ["run_date; DROP TABLE jobs"], [], ["job", "job"]])
def test_error_counts_refuse_other_group_columns(ws, by):
    with pytest.raises(BadInput):
        q.error_counts(ws, by=by)


def test_error_codes_show_first_and_last_seen_and_what_is_open(ws):
    codes = q.error_codes(ws).set_index("error_code")
    plan = codes.loc["RATE_PLAN_NOT_FOUND"]
    assert (plan["errors"], plan["dates"]) == (4, 1)
    assert (plan["first_seen"], plan["last_seen"]) == (pd.Timestamp(D1), pd.Timestamp(D2))
    email = codes.loc["INVALID_EMAIL"]
    assert (email["errors"], email["accounts"], email["first_seen"]) == (4, 2, pd.Timestamp(D2))
    assert codes.index[0] in {"RATE_PLAN_NOT_FOUND", "INVALID_EMAIL"}  # most errors first


def test_error_codes_keep_a_resolved_code_with_no_open_errors(ws):
    codes = q.error_codes(ws, client="acme", date_from=D2, date_to=D2).set_index("error_code")
    assert codes.loc["RATE_PLAN_NOT_FOUND", "errors"] == 0
    assert codes.loc["RATE_PLAN_NOT_FOUND", "failed_attempts"] == 2
    assert codes.loc["INVALID_EMAIL", "errors"] == 2


def test_error_codes_for_one_account_count_only_its_attempts(ws):
    codes = q.error_codes(ws, account_id="ACME-000026").set_index("error_code")
    assert list(codes.index) == ["RATE_PLAN_NOT_FOUND"]
    assert (codes["errors"].iloc[0], codes["failed_attempts"].iloc[0]) == (1, 3)  # D1 twice, D2 once
    assert codes["last_seen"].iloc[0] == pd.Timestamp(D2)


def test_failing_accounts_on_several_dates(ws):
    repeat = q.failing_accounts(ws, min_dates=2)
    assert repeat["account_id"].tolist() == ["ACME-000044", "ACME-000069"]
    assert set(repeat["dates"]) == {2} and set(repeat["error_codes"]) == {"INVALID_EMAIL"}
    assert len(q.failing_accounts(ws)) == 8


def test_payload_breakdown_points_at_the_defective_values(ws):
    plans = q.payload_breakdown(ws, "RATE_PLAN_NOT_FOUND", client="acme", date_to=D1)
    assert plans["field"].iloc[0] == "plan.id"
    failing = plans[(plans["field"] == "plan.id") & (plans["errored"] > 0)]
    assert len(failing) >= 1 and set(failing["error_rate"]) == {1.0}
    assert not set(failing["value"]) & set(PLANS)
    assert "account_id" not in set(plans["field"])  # identifier-like fields are left out by default
    regions = q.payload_breakdown(ws, "TAX_RULE_MISSING", fields=["tax_region", "account_id"], client="globex")
    top = regions[regions["field"] == "tax_region"].iloc[0]
    assert (top["errored"], top["error_rate"], top["share_of_errors"]) == (1, 1.0, 1.0)
    assert "account_id" in set(regions["field"])


def test_payload_breakdown_samples_the_passing_items_of_a_large_population(ws):
    args = dict(fields=["plan.id"], client="acme", date_to=D1)
    exact = q.payload_breakdown(ws, "RATE_PLAN_NOT_FOUND", **args)
    sampled = q.payload_breakdown(ws, "RATE_PLAN_NOT_FOUND", max_items=40, **args)  # 80 items: half are read

    def failing(df):
        return dict(zip(df.loc[df["errored"] > 0, "value"], df.loc[df["errored"] > 0, "errored"]))

    assert set(exact["sample_rate"]) == {1.0} and set(sampled["sample_rate"]) == {0.5}
    assert exact["items"].sum() == 80 and 40 <= sampled["items"].sum() <= 120
    assert failing(sampled) == failing(exact) and len(failing(exact)) == 2  # every failed item counts
    assert sampled.equals(q.payload_breakdown(ws, "RATE_PLAN_NOT_FOUND", max_items=40, **args))


# ----------------------------------------------------------------------------- executions
def test_executions_carry_status_duration_and_job_totals(ws):
    runs = q.executions(ws, client="acme").set_index("run_date")
    assert list(runs.index) == [pd.Timestamp(d) for d in (D1, D2, D3)]
    d2 = runs.loc[pd.Timestamp(D2)]
    service = ws.execution("acme", SCHEDULE, D2)
    assert d2["status"] == service.status.value == "ERRORED"
    assert (d2["jobs"], d2["total"], d2["error"]) == (4, sum(j.total for j in service.jobs), 2)
    assert d2["duration_s"] > 0


def test_job_history_counts_runs_attempts_and_rate(ws):
    jobs = q.job_history(ws, client="acme", job="bill-run").set_index("run_date")
    d1 = jobs.loc[pd.Timestamp(D1)]
    assert (d1["runs"], d1["attempts"], d1["status"]) == (2, 83, "ERRORED")
    assert d1["items_per_s"] > 0 and d1["busy_s"] < d1["duration_s"]  # the wait before the retry is not busy


# ----------------------------------------------------------------------------- views and raw SQL
@pytest.mark.parametrize("view", sorted(DOCUMENTED_COLUMNS))
def test_views_have_the_documented_columns(ws, view):
    assert q.sql(ws, f"DESCRIBE {view}")["column_name"].tolist() == DOCUMENTED_COLUMNS[view]


def test_views_appear_on_a_database_created_before_them(tmp_path, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    Workspace(tmp_path, actor="t").store.write(lambda con: None)  # a write makes the file (a read would not)
    con = duckdb.connect(str(tmp_path / "allegro_ops.duckdb"))
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'v_errors'").fetchall() == [(0,)]
    con.close()
    monkeypatch.undo()
    assert list(q.errors(tmp_path).columns) == DOCUMENTED_COLUMNS["v_errors"]


def test_sql_helper_binds_parameters(ws):
    by_position = q.sql(ws, "SELECT account_id FROM v_errors WHERE client = ? AND run_date = ? ORDER BY 1",
                        ["globex", D1])
    assert by_position["account_id"].tolist() == ["GLOBEX-000006", "GLOBEX-000034", "GLOBEX-000061"]
    by_name = q.sql(ws, "SELECT count(*) AS n FROM v_errors WHERE error_code = $code", {"code": "INVALID_EMAIL"})
    assert by_name["n"][0] == 4


@pytest.mark.parametrize("statement", [
    "DELETE FROM work_items", "DROP VIEW v_errors", "UPDATE jobs SET status = 'COMPLETED'",
    "INSERT INTO audit SELECT * FROM audit", "CREATE TABLE t AS SELECT 1", "COPY jobs TO 'x.csv'",
    "SELECT 1; DELETE FROM work_items", "ATTACH ':memory:' AS m", "SET threads = 1", "CHECKPOINT",
    "ALTER TABLE jobs ADD COLUMN x INT", "PRAGMA threads = 1",
])
def test_sql_helper_refuses_statements_that_write(ws, statement):
    before = table_counts(ws)
    with pytest.raises(BadInput):
        q.sql(ws, statement)
    assert table_counts(ws) == before
    assert len(q.sql(ws, "SELECT * FROM v_errors")) == 10


def test_sql_helper_keeps_nothing_a_select_changes(ws):
    before = table_counts(ws)
    deleted = q.sql(ws, "WITH d AS (DELETE FROM listed_items RETURNING *) SELECT count(*) AS n FROM d")
    assert deleted["n"][0] == before["listed_items"]  # it ran, inside a transaction that was rolled back
    assert table_counts(ws) == before


def test_sql_helper_reports_bad_sql_as_bad_input(ws):
    with pytest.raises(BadInput, match="bad SQL"):
        q.sql(ws, "SELECT nope FROM v_errors")


def test_session_runs_several_queries_on_one_snapshot_and_closes(ws):
    with q.session(ws) as s:
        n = s.sql("SELECT count(*) AS n FROM v_errors")["n"][0]
        codes = q.error_codes(s, client="acme")
        assert q.sql(s, "SELECT count(*) AS n FROM v_executions")["n"][0] == 4
    assert n == 10 and len(codes) == 3
    ws.audit(limit=1)  # the connection is closed: the workspace opens again


def test_missing_workspace_is_not_found_and_not_created(tmp_path, capsys):
    with pytest.raises(NotFound):
        q.errors(tmp_path / "nowhere")
    with pytest.raises(NotFound):
        q.error_codes(Workspace(tmp_path / "empty"))
    assert main(["--home", str(tmp_path / "empty"), "export", "errors", "--from", "2026-11-20", "--to",
                 "2026-11-20", str(tmp_path / "e.csv")]) == 2
    assert "unknown workspace" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- injection
@pytest.mark.parametrize("column", ["client", "schedule", "job", "error_code", "account_id"])
@pytest.mark.parametrize("text", INJECTIONS)
def test_sql_fragments_in_filters_match_nothing_and_change_nothing(ws, tmp_path, column, text):
    before = table_counts(ws)
    assert q.errors(ws, **{column: text}).empty
    assert q.export_errors(ws, tmp_path / "out.parquet", **{column: text}).rows == 0
    with q.session(ws) as s:  # the rest in one connection; it sees any change made in it
        assert q.error_counts(s, **{column: text}).empty
        assert q.error_codes(s, **{column: text}).empty
        assert q.failing_accounts(s, **{column: text}).empty
        assert q.attempts(s, errored_only=False, **{column: text}).empty
        if column in ("client", "schedule"):
            assert q.executions(s, **{column: text}).empty
        if column in ("client", "schedule", "job"):
            assert q.job_history(s, **{column: text}).empty
        if column != "error_code":
            assert q.payload_breakdown(s, "INVALID_EMAIL", **{column: text}).empty
        assert q.payload_breakdown(s, text).empty
        assert table_counts(s) == before
    assert table_counts(ws) == before


# ----------------------------------------------------------------------------- export
EXPORTED = {"client", "schedule", "run_date", "job", "account_id", "batch_id", "error_code", "reason", "attempts",
            "payload"}


def test_export_parquet_round_trip(ws, everything, tmp_path):
    result = q.export_errors(ws, tmp_path / "errors.parquet", date_from=D1, date_to=D3)
    assert (result.rows, result.format, result.partitioned_by) == (10, "parquet", None)
    back = pd.read_parquet(result.path)
    assert EXPORTED <= set(back.columns) and len(back) == 10
    assert keys(back) == keys(everything)
    assert all(json.loads(p)["account_id"] == a for p, a in zip(back["payload"], back["account_id"]))
    assert pq.ParquetFile(result.path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_export_csv_partitioned_by_date(ws, tmp_path):
    result = q.export_errors(ws, tmp_path / "errors", date_from=D1, date_to=D3, client="acme", format="csv",
                             partition_by_date=True)
    out = Path(result.path)
    assert sorted(p.name for p in out.iterdir()) == [f"run_date={d}" for d in (D1, D2, D3)]
    assert [p.suffix for p in out.glob("*/*")] == [".csv"] * 3
    back = pd.concat(pd.read_csv(f) for f in sorted(out.glob("*/*.csv")))
    assert len(back) == result.rows == 7 and EXPORTED - {"run_date"} <= set(back.columns)


def test_export_parquet_partitions_read_back_as_one_dataset(ws, tmp_path):
    result = q.export_errors(ws, tmp_path / "errors", partition_by_date=True)
    back = pq.read_table(result.path).to_pandas()  # hive partitioning restores run_date
    assert len(back) == 10 and sorted(back["run_date"].astype(str).unique()) == [str(d) for d in (D1, D2, D3)]


def test_export_refuses_an_existing_output_unless_overwrite(ws, tmp_path):
    target = tmp_path / "errors.parquet"
    target.write_text("keep me")
    with pytest.raises(BadInput, match="exists"):
        q.export_errors(ws, target)
    assert target.read_text() == "keep me"
    assert q.export_errors(ws, target, overwrite=True, client="globex").rows == 3
    assert len(pd.read_parquet(target)) == 3


def test_export_overwrite_never_replaces_a_folder_with_other_files(ws, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(BadInput, match="refusing"):
        q.export_errors(ws, tmp_path / "notes", partition_by_date=True, overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    first = q.export_errors(ws, tmp_path / "parts", partition_by_date=True)
    again = q.export_errors(ws, tmp_path / "parts", partition_by_date=True, overwrite=True, client="globex")
    assert first.rows == 10 and again.rows == 3
    assert [p.name for p in Path(again.path).iterdir()] == [f"run_date={D1}"]


def test_export_path_with_a_quote_is_written_where_asked(ws, tmp_path):
    result = q.export_errors(ws, tmp_path / "it's here'); --.csv", format="csv")
    assert Path(result.path).name == "it's here'); --.csv" and len(pd.read_csv(result.path)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["it's here'); --.csv"]


def test_cli_export_prints_one_json_document(ws, tmp_path, capsys):
    out = tmp_path / "e.parquet"
    code = main(["--home", str(ws.home), "export", "errors", "--from", "2026-11-20", "--to", "2026-11-21",
                 "--client", "acme", "--json", str(out)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc == {"path": str(out), "rows": 5, "format": "parquet", "partitioned_by": None}


@pytest.mark.parametrize("dates", [["2026-11-31", "2026-12-01"], ["2026-11-22", "2026-11-20"], ["11/20/2026", "x"]])
def test_cli_export_bad_dates_exit_2_with_one_line(ws, tmp_path, capsys, dates):
    code = main(["--home", str(ws.home), "export", "errors", "--from", dates[0], "--to", dates[1],
                 str(tmp_path / "e.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: bad date")
    assert not (tmp_path / "e.parquet").exists()


def test_cli_export_runs_as_a_module_with_text_output(ws, tmp_path):
    env = {**os.environ, "ALLEGRO_OPS_HOME": str(ws.home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = tmp_path / "parts"
    done = subprocess.run([sys.executable, "-m", "allegro_ops.cli", "export", "errors", "--from", "2026-11-20",
                           "--to", "2026-11-22", "--partition-by-date", "--format", "csv", str(out)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"10 errored work items -> {out} (csv, partitioned by run_date)"

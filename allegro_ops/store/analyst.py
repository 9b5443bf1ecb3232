"""SQL for analysts: filtered reads of the documented views, error trends, payload breakdowns,
Parquet/CSV export and guarded raw SQL.

Every value reaches DuckDB as a parameter. The only text spliced into SQL is ours: fixed column
names (``Filters.where``, ``GROUPABLE``), ``?`` placeholders, list indexes we count, and the
export path, which COPY cannot take as a parameter (``sql_literal`` quotes it).
The views themselves (v_work_items, v_errors, v_attempts, v_jobs, v_executions) are migration 2
(v_attempts as migration 5 left it).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from ..errors import BadInput
from .db import Store, rolled_back

__all__ = [
    "Filters", "GROUPABLE", "EXPORT_COLUMNS", "errors", "attempts", "error_counts", "error_codes",
    "failing_accounts", "leaf_fields", "population_size", "payload_breakdown", "executions", "job_history",
    "copy_errors", "sql_literal", "snapshot", "read_query",
]

# Columns a caller may group error counts by (a whitelist: these names are spliced into SQL).
GROUPABLE = ("run_date", "client", "schedule", "job", "job_sequence", "error_code")
EXPORT_COLUMNS = ("client", "schedule", "run_date", "job", "job_sequence", "item_no", "account_id", "batch_id",
                  "error_code", "reason", "attempts", "updated_at", "payload")
_ITEM_ORDER = "run_date, client, schedule, job_sequence, item_no"
_READ_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


@dataclass(frozen=True)
class Filters:
    """Conditions on the views' columns; an empty tuple means no condition on that column."""

    client: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()
    job: tuple[str, ...] = ()
    error_code: tuple[str, ...] = ()
    account_id: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def where(
        self, alias: str = "", *, only: tuple[str, ...] | None = None, names: dict[str, str] | None = None
    ) -> tuple[str, list[Any]]:
        """A WHERE clause body ("true" when unfiltered) and its parameters, in order. Columns are
        ``alias.column`` unless ``names`` maps them to other (fixed) column expressions."""

        def name(column: str) -> str:
            return (names or {}).get(column) or (f"{alias}.{column}" if alias else column)

        parts: list[str] = []
        params: list[Any] = []
        for column in ("client", "schedule", "job", "error_code", "account_id"):
            values = getattr(self, column)
            if values and (only is None or column in only):
                parts.append(f"{name(column)} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if only is None or "run_date" in only:
            for value, op in ((self.date_from, ">="), (self.date_to, "<=")):
                if value is not None:
                    parts.append(f"{name('run_date')} {op} ?")
                    params.append(value)
        return (" AND ".join(parts) or "true"), params


_EXECUTION_COLUMNS = ("client", "schedule", "run_date")
_ATTEMPT_NAMES = {"client": "e.client", "schedule": "e.schedule", "run_date": "e.run_date", "job": "j.name",
                  "error_code": "a.error_code", "account_id": "w.account_id"}
_JOB_COLUMNS = ("client", "schedule", "run_date", "job")


def _df(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> pd.DataFrame:
    # Through Arrow: over twice as fast as .df() on wide string results; dates as datetime64.
    return con.sql(query, params=params).to_arrow_table().to_pandas(date_as_object=False)


# ----------------------------------------------------------------------------- work items
def errors(
    con: duckdb.DuckDBPyConnection,
    f: Filters,
    *,
    paths: list[str],
    with_attempts: bool,
    per_code: int | None,
    limit: int | None,
) -> pd.DataFrame:
    """Currently errored work items; payload fields at ``paths`` (JSON paths) as columns _f0, _f1, ...;
    ``attempt_history`` (a list of attempts, oldest first) when asked; at most ``per_code`` per code."""
    where, params = f.where()
    extract, fields = "", ""
    if paths:
        extract = ", json_extract_string(payload, ?::VARCHAR[]) AS _fields"
        fields = " EXCLUDE (_fields), " + ", ".join(f"_fields[{i + 1}] AS _f{i}" for i in range(len(paths)))
        params = [paths] + params
    qualify = ""
    if per_code is not None:
        qualify = f"QUALIFY row_number() OVER (PARTITION BY error_code ORDER BY run_date DESC, {_ITEM_ORDER}) <= ?"
        params.append(per_code)
    query = f"WITH e AS (SELECT *{extract} FROM v_errors WHERE {where} {qualify}) "
    if with_attempts:
        query += (
            ", h AS (SELECT a.job_id, a.item_no, list(struct_pack(attempt := a.attempt, batch_id := a.batch_id, "
            "status := a.status, error_code := a.error_code, reason := a.reason, started_at := a.started_at, "
            "finished_at := a.finished_at) ORDER BY a.attempt) AS attempt_history "
            "FROM attempts a SEMI JOIN e ON a.job_id = e.job_id AND a.item_no = e.item_no GROUP BY ALL) "
            f"SELECT e.*{fields}, h.attempt_history FROM e LEFT JOIN h ON h.job_id = e.job_id AND h.item_no = e.item_no"
        )
    else:
        query += f"SELECT e.*{fields} FROM e"
    query += f" ORDER BY {_ITEM_ORDER}" + (" LIMIT ?" if limit is not None else "")
    return _df(con, query, params + ([limit] if limit is not None else []))


def attempts(con: duckdb.DuckDBPyConnection, f: Filters, *, errored_only: bool) -> pd.DataFrame:
    """Every attempt at the current generation's work items that match the filters, oldest first."""
    where, params = f.where("w")
    status = "AND w.status = 'ERROR'" if errored_only else ""
    return _df(con, (
        "SELECT w.client, w.schedule, w.run_date, w.job, w.job_sequence, w.job_id, w.item_no, w.account_id, "
        "w.status AS item_status, w.error_code AS item_error_code, a.attempt, a.batch_id, a.status, a.error_code, "
        "a.reason, a.started_at, a.finished_at, "
        "date_diff('millisecond', a.started_at, a.finished_at) / 1000.0 AS duration_s, a.run_token "
        "FROM v_work_items w JOIN attempts a ON a.job_id = w.job_id AND a.item_no = w.item_no "
        f"WHERE {where} {status} ORDER BY w.run_date, w.client, w.schedule, w.job_sequence, w.item_no, a.attempt"
    ), params)


# ----------------------------------------------------------------------------- trends
def error_counts(con: duckdb.DuckDBPyConnection, f: Filters, by: tuple[str, ...]) -> pd.DataFrame:
    """Currently errored work items and distinct accounts per combination of the ``by`` columns."""
    if not by or any(c not in GROUPABLE for c in by):
        raise ValueError(f"group by columns must come from {GROUPABLE}")
    where, params = f.where()
    cols = ", ".join(by)
    return _df(con, (
        f"SELECT {cols}, count(*) AS errors, count(DISTINCT account_id) AS accounts "
        f"FROM v_errors WHERE {where} GROUP BY {cols} ORDER BY {cols}"
    ), params)


def error_codes(con: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """Per error code: what is errored now, and when the code was first and last seen in any attempt."""
    w_now, p_now = f.where()
    # From the tables, not v_attempts: the join to listed_items (for account_id) only when needed.
    w_seen, p_seen = f.where(names=_ATTEMPT_NAMES)
    items = "JOIN listed_items w ON w.job_id = a.job_id AND w.item_no = a.item_no " if f.account_id else ""
    return _df(con, (
        "WITH now AS (SELECT error_code, count(*) AS errors, count(DISTINCT account_id) AS accounts, "
        "  count(DISTINCT run_date) AS dates, string_agg(DISTINCT job, ', ' ORDER BY job) AS jobs, "
        f"  min(reason) AS example_reason FROM v_errors WHERE {w_now} GROUP BY error_code), "
        "seen AS (SELECT a.error_code, min(e.run_date) AS first_seen, max(e.run_date) AS last_seen, "
        "  min(a.finished_at) AS first_seen_at, max(a.finished_at) AS last_seen_at, count(*) AS failed_attempts "
        "  FROM attempts a JOIN jobs j ON j.job_id = a.job_id JOIN executions e ON e.execution_id = j.execution_id "
        f"  {items}WHERE a.status = 'ERROR' AND {w_seen} GROUP BY a.error_code) "
        "SELECT error_code, coalesce(now.errors, 0) AS errors, coalesce(now.accounts, 0) AS accounts, "
        "  coalesce(now.dates, 0) AS dates, seen.first_seen, seen.last_seen, seen.first_seen_at, "
        "  seen.last_seen_at, coalesce(seen.failed_attempts, 0) AS failed_attempts, now.jobs, now.example_reason "
        "FROM seen FULL JOIN now USING (error_code) ORDER BY errors DESC, failed_attempts DESC, error_code"
    ), p_now + p_seen)


def failing_accounts(con: duckdb.DuckDBPyConnection, f: Filters, min_dates: int) -> pd.DataFrame:
    """Accounts with currently errored work items on at least ``min_dates`` run dates."""
    where, params = f.where()
    return _df(con, (
        "SELECT client, account_id, count(DISTINCT run_date) AS dates, count(*) AS errors, "
        "  string_agg(DISTINCT error_code, ', ' ORDER BY error_code) AS error_codes, "
        "  string_agg(DISTINCT job, ', ' ORDER BY job) AS jobs, min(run_date) AS first_date, "
        "  max(run_date) AS last_date, arg_max(reason, run_date) AS last_reason "
        f"FROM v_errors WHERE {where} GROUP BY client, account_id HAVING count(DISTINCT run_date) >= ? "
        "ORDER BY dates DESC, errors DESC, client, account_id"
    ), params + [min_dates])


# ----------------------------------------------------------------------------- payload fields
def leaf_fields(con: duckdb.DuckDBPyConnection, f: Filters, sample: int) -> list[str]:
    """JSON paths of the scalar, non-array fields in a sample of the errored payloads."""
    where, params = f.where()
    rows = con.execute(
        f"WITH s AS (SELECT payload FROM v_errors WHERE {where} LIMIT ?) "
        "SELECT DISTINCT j.fullkey FROM s, json_tree(s.payload) j "
        "WHERE j.type NOT IN ('OBJECT', 'ARRAY') AND NOT contains(j.fullkey, '[') ORDER BY 1",
        params + [sample],
    ).fetchall()
    return [r[0] for r in rows]


def _population(f: Filters, error_code: str) -> tuple[str, list[Any]]:
    """The attempted work items (PROCESSED or ERROR) of the job runs (a job of one execution's
    current generation) where ``error_code`` occurs now, within the filters; ``failed`` marks
    those errored with that code."""
    scope, p_scope = f.where(only=_JOB_COLUMNS)
    within, p_within = f.where("w", only=_JOB_COLUMNS + ("account_id",))
    return (
        f"WITH runs AS (SELECT DISTINCT job_id FROM v_errors WHERE error_code = ? AND {scope}) "
        "SELECT w.job_id, w.item_no, w.payload, w.status = 'ERROR' AND w.error_code = ? AS failed "
        "FROM v_work_items w SEMI JOIN runs r ON r.job_id = w.job_id "
        f"WHERE w.status IN ('PROCESSED', 'ERROR') AND {within}"
    ), [error_code, *p_scope, error_code, *p_within]


def population_size(con: duckdb.DuckDBPyConnection, f: Filters, error_code: str) -> int:
    population, params = _population(f, error_code)
    return int(con.execute(f"SELECT count(*) FROM ({population})", params).fetchall()[0][0])


def payload_breakdown(
    con: duckdb.DuckDBPyConnection, f: Filters, error_code: str, paths: list[str], max_values: int,
    max_distinct: int | None, rate: float = 1.0,
) -> pd.DataFrame:
    """For each payload field value in the population (``_population``): items, how many are
    errored with ``error_code``, the error rate and the share of that code's errors.

    With ``rate`` < 1 every failed item counts but only that share of the others (chosen by a hash
    of the work item, so the same each time), and ``items`` is estimated as errored + others / rate.
    Unless ``max_distinct`` is None, fields that look like identifiers or amounts are left out:
    more than ``max_distinct`` values, or fewer than 5 items per value on average. The field whose
    values separate the failures best (highest error rate of one value) comes first."""
    population, params = _population(f, error_code)
    return _df(con, (
        f"WITH p AS ({population}), "
        "items AS (SELECT failed, unnest(?::VARCHAR[]) AS path, "
        "  unnest(json_extract_string(payload, ?::VARCHAR[])) AS value FROM p "
        "  WHERE failed OR ? >= 1.0 OR hash(job_id, item_no) % 1000000 < ? * 1000000), "
        "g AS (SELECT path, value, count(*) FILTER (WHERE failed) AS errored, "
        "  CAST(round(count(*) FILTER (WHERE failed) + count(*) FILTER (WHERE NOT failed) / ?) AS BIGINT) AS items "
        "  FROM items GROUP BY path, value), "
        "r AS (SELECT *, errored / items AS error_rate, errored / nullif(sum(errored) OVER (PARTITION BY path), 0) "
        "  AS share_of_errors, count(*) OVER (PARTITION BY path) AS field_values, "
        "  sum(items) OVER (PARTITION BY path) AS field_items, "
        "  max(errored / items) OVER (PARTITION BY path) AS field_score, "
        "  row_number() OVER (PARTITION BY path ORDER BY errored DESC, items DESC, value) AS rank FROM g) "
        "SELECT path, value, items, errored, error_rate, share_of_errors, field_values FROM r "
        "WHERE rank <= ? AND (? IS NULL OR (field_values <= ? AND field_items >= 5 * field_values)) "
        "ORDER BY field_score DESC, list_position(?::VARCHAR[], path), errored DESC, items DESC, value"
    ), params + [paths, paths, rate, rate, rate, max_values, max_distinct, max_distinct, paths])


# ----------------------------------------------------------------------------- executions
def executions(con: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    where, params = f.where(only=_EXECUTION_COLUMNS)
    return _df(con, f"SELECT * FROM v_executions WHERE {where} ORDER BY client, schedule, run_date", params)


def job_history(con: duckdb.DuckDBPyConnection, f: Filters) -> pd.DataFrame:
    """v_jobs rows plus, from the attempts, the runs of each job, its busy seconds (summed over
    runs, so the wait between a failure and its retry does not count) and work items per second."""
    where, params = f.where("j", only=_JOB_COLUMNS)
    return _df(con, (
        f"WITH j AS (SELECT * FROM v_jobs j WHERE {where}), "
        "r AS (SELECT a.job_id, a.run_token, count(*) AS n, "
        "  date_diff('millisecond', min(a.started_at), max(a.finished_at)) / 1000.0 AS s "
        "  FROM attempts a SEMI JOIN j ON j.job_id = a.job_id GROUP BY a.job_id, a.run_token), "
        "rr AS (SELECT job_id, count(*) AS runs, CAST(sum(n) AS BIGINT) AS attempts, sum(s) AS busy_s "
        "  FROM r GROUP BY job_id) "
        "SELECT j.*, coalesce(rr.runs, 0) AS runs, coalesce(rr.attempts, 0) AS attempts, rr.busy_s, "
        "  CASE WHEN rr.busy_s > 0 THEN rr.attempts / rr.busy_s END AS items_per_s "
        "FROM j LEFT JOIN rr USING (job_id) ORDER BY j.client, j.schedule, j.run_date, j.job_sequence"
    ), params)


# ----------------------------------------------------------------------------- export
def sql_literal(text: str) -> str:
    """A SQL string literal; for the one place a value cannot be a parameter (COPY's target)."""
    if "\x00" in text:
        raise BadInput("bad path: contains a NUL character")
    return "'" + text.replace("'", "''") + "'"


def copy_errors(con: duckdb.DuckDBPyConnection, f: Filters, target: str, fmt: str, partition_by_date: bool) -> int:
    """COPY the currently errored work items to ``target`` (a file, or a folder when partitioned)."""
    options = {"parquet": "FORMAT parquet, COMPRESSION zstd", "csv": "FORMAT csv, HEADER true"}[fmt]
    if partition_by_date:
        options += ", PARTITION_BY (run_date)"
    where, params = f.where()
    cols = ", ".join(EXPORT_COLUMNS)
    rows = con.execute(
        f"COPY (SELECT {cols} FROM v_errors WHERE {where} ORDER BY {_ITEM_ORDER}) TO {sql_literal(target)} ({options})",
        params,
    ).fetchall()
    return int(rows[0][0]) if rows else 0


# ----------------------------------------------------------------------------- raw SQL
@contextmanager
def snapshot(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short connection holding one transaction that is always rolled back: every query in it
    sees the same snapshot, and nothing it might change is kept."""
    with store.connect() as con, rolled_back(con):
        yield con


def read_query(con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | dict[str, Any] | None) -> pd.DataFrame:
    """Run one read statement (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) into a DataFrame."""
    if not isinstance(query, str):
        raise BadInput(f"bad SQL {query!r}: a string")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise BadInput(f"bad SQL: {_one_line(exc)}") from None
    if len(statements) != 1:
        raise BadInput(f"read-only SQL runs one statement at a time (got {len(statements)})")
    kind = statements[0].type
    if kind not in _READ_STATEMENTS:
        raise BadInput(f"read-only SQL: {kind.name} statements are refused; use SELECT, WITH, FROM, DESCRIBE, "
                       "SHOW, SUMMARIZE or EXPLAIN (and pragma_* table functions for PRAGMAs)")
    try:
        return con.sql(query, params=params).df()
    except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
            duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        raise BadInput(f"bad SQL: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())

"""The analysts' query API: why do work items fail, across dates, clients and jobs?

Every function takes a *source* first — a Workspace, a workspace folder (or its DuckDB file), an
open ``Session``, or None for ALLEGRO_OPS_HOME — and returns a pandas DataFrame. Filters take one
value or a list of values; dates are ISO strings or ``datetime.date``. Names are never checked
against the workspace: a filter that matches nothing returns an empty frame.

Each call opens the database for one short unit of work and closes it, waiting for a running
engine's lock like every other command does. ``session()`` runs several queries in one short
connection; do not hold one open while runs are going (it blocks them). The SQL is in
``allegro_ops/store/analyst.py``; the documented views in docs/analysts.md.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import duckdb
import pandas as pd

from .errors import BadInput, NotFound
from .service import Workspace, parse_date
from .store import DB_FILENAME, Store
from .store import analyst as sql_

__all__ = [
    "Session", "ExportResult", "errors", "attempts", "error_counts", "error_codes", "failing_accounts",
    "payload_breakdown", "executions", "job_history", "sql", "session", "export_errors", "VIEWS",
]

VIEWS = ("v_work_items", "v_errors", "v_attempts", "v_jobs", "v_executions")
Names = Union[str, Iterable[str], None]
DateLike = Union[str, dt.date, None]
T = TypeVar("T")

# A payload field: dotted keys, each optionally indexed, e.g. "plan.id", "lines[0].sku".
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\[\d{1,6}\])*(\.[A-Za-z_][A-Za-z0-9_]{0,63}(\[\d{1,6}\])*){0,15}")
_MAX_FIELDS = 50
_STORES: dict[tuple[Path, str | None], Store] = {}


class Session:
    """Several queries in one short connection and one consistent snapshot (see ``session``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """One read-only statement with ``?`` or ``$name`` parameters, as a DataFrame."""
        return sql_.read_query(self._con, query, params)


Source = Union[Workspace, Store, Session, str, os.PathLike, None]


@dataclass(frozen=True)
class ExportResult:
    path: str
    rows: int
    format: str
    partitioned_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- errored work items
def errors(
    source: Source = None,
    *,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
    payload_fields: Iterable[str] | None = None,
    with_attempts: bool = False,
    per_code: int | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The currently errored work items (the v_errors columns), oldest date first.

    ``payload_fields=["currency", "plan.id"]`` adds one column per field (named as given, or
    ``payload.<field>`` where that name is already a column); ``with_attempts`` adds
    ``attempt_history``, a list of every attempt (oldest first); ``per_code`` keeps the newest N
    examples of each error code."""
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    fields = _fields(payload_fields)
    _check_count("per_code", per_code)
    _check_count("limit", limit)
    df = _read(source, lambda con: sql_.errors(con, f, paths=[_path(x) for x in fields], with_attempts=with_attempts,
                                               per_code=per_code, limit=limit))
    if with_attempts:
        df["attempt_history"] = df["attempt_history"].map(lambda a: [] if a is None else list(a))
    taken = set(df.columns)
    return df.rename(columns={f"_f{i}": (x if x not in taken else f"payload.{x}") for i, x in enumerate(fields)})


def attempts(
    source: Source = None,
    *,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
    errored_only: bool = True,
) -> pd.DataFrame:
    """One row per attempt at the matching work items (by default the currently errored ones):
    the item's current status and error code, then the attempt's number, batch, status, error
    code, reason, times and run token. ``error_code`` filters on the item's current code."""
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    return _read(source, lambda con: sql_.attempts(con, f, errored_only=errored_only))


# ----------------------------------------------------------------------------- trends
def error_counts(
    source: Source = None,
    *,
    by: Iterable[str] = ("run_date", "error_code", "job"),
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
) -> pd.DataFrame:
    """Currently errored work items (``errors``) and distinct accounts (``accounts``) per
    combination of the ``by`` columns (any of run_date, client, schedule, job, job_sequence,
    error_code)."""
    columns = (by,) if isinstance(by, str) else tuple(by)
    bad = [c for c in columns if c not in sql_.GROUPABLE]
    if not columns or bad or len(set(columns)) != len(columns):
        raise BadInput(f"bad group by {list(columns)}: pick distinct columns from {', '.join(sql_.GROUPABLE)}")
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    return _read(source, lambda con: sql_.error_counts(con, f, columns))


def error_codes(
    source: Source = None,
    *,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
) -> pd.DataFrame:
    """One row per error code, most errors first: errored work items, accounts and run dates now
    (``errors``, ``accounts``, ``dates``, ``jobs``, ``example_reason``), and from every attempt
    ever made, archived generations included: ``first_seen``/``last_seen`` (run dates),
    ``first_seen_at``/``last_seen_at`` (attempt times) and ``failed_attempts``. A code whose
    errors were all resolved shows ``errors`` 0."""
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    return _read(source, lambda con: sql_.error_codes(con, f))


def failing_accounts(
    source: Source = None,
    *,
    min_dates: int = 1,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
) -> pd.DataFrame:
    """The accounts to fix: those with currently errored work items on at least ``min_dates`` run
    dates, with their dates, errors, error codes, jobs, first and last date and latest reason."""
    _check_count("min_dates", min_dates)
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    return _read(source, lambda con: sql_.failing_accounts(con, f, min_dates))


def payload_breakdown(
    source: Source = None,
    error_code: str = "",
    *,
    fields: Iterable[str] | None = None,
    max_values: int = 20,
    max_distinct: int = 100,
    sample: int = 1000,
    max_items: int | None = 500_000,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
    account_id: Names = None,
) -> pd.DataFrame:
    """Which payload field values go with an error code.

    The population is the attempted work items (PROCESSED or ERROR) of the job runs (a job on a
    run date) where the code occurs now, within the filters. Per field and value: ``items``,
    ``errored`` (with this code), ``error_rate``, ``share_of_errors`` and ``field_values``
    (distinct values of the field); at most ``max_values`` values per field, most errored first;
    the field with the most telling value (highest error rate) first. ``fields`` defaults to the
    scalar fields found in up to ``sample`` of the code's errored payloads, leaving out those that
    look like identifiers or amounts (more than ``max_distinct`` values, or fewer than 5 items per
    value on average); fields named explicitly are always shown.

    Reading every payload of a large population takes seconds, so above ``max_items`` work items
    every failed item still counts but only a fixed sample of the others: ``items`` and
    ``error_rate`` are then estimates, and ``sample_rate`` (1.0 when exact) says how large the
    sample was. ``max_items=None`` reads them all."""
    if not isinstance(error_code, str) or not error_code:
        raise BadInput("payload_breakdown needs an error code")
    for label, value in (("max_values", max_values), ("max_distinct", max_distinct), ("sample", sample),
                         ("max_items", max_items)):
        _check_count(label, value)
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    explicit = _fields(fields) if fields is not None else None

    def read(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        size = sql_.population_size(con, f, error_code) if max_items is not None else 0
        rate = max_items / size if max_items is not None and size > max_items else 1.0
        if explicit is not None:
            names, limit = explicit, None
        else:
            found = [p[2:] for p in sql_.leaf_fields(con, f, sample) if p.startswith("$.")]
            names, limit = [p for p in found if _FIELD.fullmatch(p)][:_MAX_FIELDS], max_distinct
        df = sql_.payload_breakdown(con, f, error_code, [_path(n) for n in names], max_values, limit, rate)
        return df.assign(sample_rate=rate)

    df = _read(source, read)
    df.insert(0, "field", df.pop("path").str.slice(2))
    return df


# ----------------------------------------------------------------------------- executions
def executions(
    source: Source = None,
    *,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
) -> pd.DataFrame:
    """The v_executions rows: one per client, schedule and run date, with its status, times,
    ``duration_s`` and the current generation's job totals."""
    f = _filters(client, schedule, date_from, date_to)
    return _read(source, lambda con: sql_.executions(con, f))


def job_history(
    source: Source = None,
    *,
    client: Names = None,
    schedule: Names = None,
    date_from: DateLike = None,
    date_to: DateLike = None,
    job: Names = None,
) -> pd.DataFrame:
    """Per schedule, run date and job: the v_jobs columns (status, counts, ``duration_s`` from
    first start to last finish) plus ``runs``, ``attempts``, ``busy_s`` (the time the runs spent,
    without the wait before a retry) and ``items_per_s`` (attempts per busy second)."""
    f = _filters(client, schedule, date_from, date_to, job)
    return _read(source, lambda con: sql_.job_history(con, f))


# ----------------------------------------------------------------------------- raw SQL
def sql(source: Source, query: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
    """One read-only statement (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) with ``?``
    or ``$name`` parameters, as a DataFrame. Any other statement raises BadInput; the statement
    runs in a transaction that is rolled back, so nothing it could change is kept."""
    if isinstance(source, Session):
        return source.sql(query, params)
    with session(source) as s:
        return s.sql(query, params)


@contextmanager
def session(source: Source = None) -> Iterator[Session]:
    """Several read-only queries in one short connection that sees one snapshot::

        with allegro_ops.query.session(home) as s:
            codes = s.sql("SELECT error_code, count(*) AS n FROM v_errors GROUP BY ALL")
            recent = allegro_ops.query.errors(s, date_from="2026-11-01")

    While it is open no other process can open the workspace (a run waits up to
    ALLEGRO_OPS_LOCK_TIMEOUT seconds, then fails): keep it to a few queries."""
    if isinstance(source, Session):
        yield source
        return
    with sql_.snapshot(_store(source)) as con:
        yield Session(con)


# ----------------------------------------------------------------------------- export
def export_errors(
    source: Source,
    out: str | os.PathLike,
    *,
    date_from: DateLike = None,
    date_to: DateLike = None,
    client: Names = None,
    schedule: Names = None,
    job: Names = None,
    error_code: Names = None,
    account_id: Names = None,
    format: str = "parquet",
    partition_by_date: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Write the currently errored work items (one row each: ``sql_.EXPORT_COLUMNS``, payload as
    JSON text) to a Parquet (zstd) or CSV file, or to a folder of ``run_date=YYYY-MM-DD/``
    partitions. The output appears whole or not at all; an existing one is replaced only with
    ``overwrite`` (and a folder only when it holds nothing but run_date partitions)."""
    if format not in ("parquet", "csv"):
        raise BadInput(f"bad format {format!r}: parquet or csv")
    f = _filters(client, schedule, date_from, date_to, job, error_code, account_id)
    target = _export_target(out, overwrite)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        rows = _read(source, lambda con: sql_.copy_errors(con, f, str(tmp), format, partition_by_date))
        if partition_by_date:
            tmp.mkdir(exist_ok=True)  # no rows: still an (empty) folder
        if (target.exists() or target.is_symlink()) and (tmp.is_dir() or target.is_dir()):
            _remove(target)  # a folder cannot be renamed over; a file is replaced atomically
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
    return ExportResult(str(target), rows, format, "run_date" if partition_by_date else None)


def _export_target(out: str | os.PathLike, overwrite: bool) -> Path:
    text = os.fspath(out)
    if not text or "\x00" in text:
        raise BadInput("bad output path: empty or contains a NUL character")
    if not _is_text(text):
        raise BadInput(f"bad output path {text!r}: not UTF-8 text")
    target = Path(text).expanduser().absolute()
    if not target.parent.is_dir():
        raise BadInput(f"bad output path {target}: folder {target.parent} does not exist")
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise BadInput(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
        if target.is_dir() and not target.is_symlink():
            stray = [p.name for p in target.iterdir() if not (p.is_dir() and p.name.startswith("run_date="))]
            if stray:
                raise BadInput(f"refusing to replace folder {target}: it holds more than run_date=* partitions "
                               f"({', '.join(sorted(stray)[:3])})")
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# ----------------------------------------------------------------------------- helpers
def _store(source: Source) -> Store:
    if isinstance(source, (Workspace, Store)):
        store = source.store if isinstance(source, Workspace) else source
        if not store.exists:  # reading must not create an empty workspace
            raise NotFound("workspace", str(store.path.parent), f"no {store.path.name} there")
        return store
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise BadInput(f"bad source {source!r}: a Workspace, a workspace folder, or None for ALLEGRO_OPS_HOME")
    home = Path(source if source is not None else os.environ.get("ALLEGRO_OPS_HOME", ".")).expanduser().resolve()
    path = home if home.suffix == ".duckdb" else home / DB_FILENAME
    if not path.is_file():
        raise NotFound("workspace", str(home), f"no {DB_FILENAME} there (pass home= or set ALLEGRO_OPS_HOME)")
    key = (path, os.environ.get("ALLEGRO_OPS_LOCK_TIMEOUT"))  # one Store (migrated once) per file and timeout
    if key not in _STORES:
        _STORES[key] = Store(path)
    return _STORES[key]


def _read(source: Source, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    if isinstance(source, Session):
        return fn(source._con)
    return _store(source).read(fn)


def _names(label: str, value: Names) -> tuple[str, ...]:
    if value is None:
        return ()
    values = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else None
    if values is None or not values or not all(isinstance(v, str) for v in values):
        raise BadInput(f"bad {label} filter {value!r}: a name or a non-empty list of names")
    if not all(_is_text(v) for v in values):
        raise BadInput(f"bad {label} filter {value!r}: not UTF-8 text (a lone surrogate)")
    return values


def _is_text(value: str) -> bool:
    """Whether DuckDB can take the string: it must encode as UTF-8 (no lone surrogates, which
    undecodable bytes of a command line turn into)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _filters(client: Names = None, schedule: Names = None, date_from: DateLike = None, date_to: DateLike = None,
             job: Names = None, error_code: Names = None, account_id: Names = None) -> sql_.Filters:
    start = parse_date(date_from) if date_from is not None else None
    end = parse_date(date_to) if date_to is not None else None
    if start and end and start > end:
        raise BadInput(f"bad date range: {start} is after {end}")
    return sql_.Filters(_names("client", client), _names("schedule", schedule), _names("job", job),
                        _names("error code", error_code), _names("account", account_id), start, end)


def _fields(fields: Iterable[str] | None) -> list[str]:
    if fields is None:
        return []
    names = [fields] if isinstance(fields, str) else list(fields)
    for name in names:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise BadInput(f"bad payload field {name!r}: dotted keys such as 'plan.id' or 'lines[0].sku'")
    if len(names) > _MAX_FIELDS or len(set(names)) != len(names):
        raise BadInput(f"bad payload fields: up to {_MAX_FIELDS} distinct fields")
    return names


def _path(field: str) -> str:
    return "$." + field


def _check_count(label: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadInput(f"bad {label} {value!r}: a whole number of at least 1")

"""SQL injection (issue 7): every value reaches DuckDB as a parameter.

Quotes, SQL fragments, LIKE wildcards, backslashes, look-alike unicode and NUL go through every
filter of every public function of allegro_ops.query, the Workspace's reads and the CLI's export
and audit filters: each matches nothing (or is NotFound / BadInput) and the database is intact.
A spy on the connection shows the values travel only as parameters, and a static check of
allegro_ops/store/*.py and allegro_ops/query.py shows that the only text spliced into SQL is from
fixed identifier lists, placeholders and the two quoting helpers.
"""
from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import allegro_ops.query as q
from allegro_ops import BadInput, NotFound, Workspace
from allegro_ops.cli import main
from allegro_ops.demo import init_demo
from allegro_ops.store import Store
from allegro_ops.store import analyst as sql_
from allegro_ops.store import backup as backup_sql
from allegro_ops.store import executions as ex_sql

ROOT = Path(__file__).resolve().parent.parent
C, S, RUN = "acme", "daily-billing", "2026-11-24"
MARK = "zz'MARK\"; DROP TABLE executions; --"
HOSTILE = [  # the list, and a few that only a LIKE, a lower() or a C string would match
    "'", "''", '"; DROP TABLE executions; --', "%", "_", "\\", "' OR '1'='1", "Ünïcødé ☃ 名前", "\x00",
    "acme\x00", "ac_e", "ACME", "acme' --", MARK,
]
FILTERS = ("client", "schedule", "job", "error_code", "account_id")
# The values that break hand-made quoting or pattern matching; for the slower paths (each call its
# own connection, or its own CLI run).
QUOTING = ["'", '"; DROP TABLE executions; --', "' OR '1'='1", "%", "_", "\\", "acme\x00"]


def _build(ws: Workspace) -> None:
    init_demo(ws, accounts=60, seed=7, batch_size=10)
    for client in ("acme", "globex"):
        ws.create(client, S, RUN)
        ws.process(client, S, RUN)


@pytest.fixture
def ws(prepared) -> Workspace:
    """Both demo clients processed on RUN: errored work items in each."""
    return prepared("sql-params", _build)


def contents(source: Any) -> dict[str, tuple[int, str]]:
    """(rows, md5 of all rows) of every table, the audit log included (reads append nothing), read
    through allegro_ops.query from a Workspace or an open query.session (which sees its own changes)."""
    names = q.sql(source, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                          "AND table_type = 'BASE TABLE' ORDER BY 1")["table_name"].tolist()
    assert {"executions", "jobs", "listed_items", "item_states", "attempts", "audit", "config_versions"} <= set(names)
    query = " UNION ALL ".join(
        f"SELECT '{n}' AS t, count(*) AS n, md5(coalesce(string_agg(r::VARCHAR, '|' ORDER BY r::VARCHAR), '')) AS h "
        f'FROM "{n}" r' for n in names)
    return {t: (n, h) for t, n, h in q.sql(source, query).itertuples(index=False)}


# ------------------------------------------------------------------------------------ allegro_ops.query
PUBLIC_FUNCTIONS = [n for n in q.__all__ if inspect.isfunction(getattr(q, n))]
NAME_FILTERS = set(FILTERS)
DATE_FILTERS = {"date_from", "date_to"}
OTHER_TEXT = {"payload_fields", "fields", "by", "format"}  # refused unless from a fixed set or pattern
NOT_FILTERS = {"source", "with_attempts", "per_code", "limit", "min_dates", "max_values", "max_distinct", "sample",
               "max_items", "errored_only", "partition_by_date", "overwrite", "out", "query", "params"}


def _call(name: str, ws: Any, tmp_path: Path, **kwargs: Any) -> Any:
    """Call query.<name> on ``ws`` (a source) with the keyword arguments (and whatever else it needs)."""
    fn = getattr(q, name)
    if name == "payload_breakdown":
        kwargs.setdefault("error_code", "INVALID_EMAIL")
        return fn(ws, kwargs.pop("error_code"), **kwargs)
    if name == "export_errors":
        return fn(ws, tmp_path / "out.parquet", overwrite=True, **kwargs)
    if name == "sql":
        value = kwargs["client"]
        if isinstance(value, str):
            return fn(ws, "SELECT count(*) AS n FROM v_errors WHERE client = ?", [value])
        return fn(ws, "SELECT count(*) AS n FROM v_errors WHERE list_contains($names, client)", {"names": value})
    if name == "session":
        with fn(ws) as s:
            return q.errors(s, **kwargs)
    return fn(ws, **kwargs)


def _matches(result: Any) -> int:
    if isinstance(result, pd.DataFrame):
        return int(result["n"][0]) if list(result.columns) == ["n"] else len(result)
    return result.rows  # ExportResult


def _filter_params() -> list[tuple[str, str]]:
    pairs = []
    for name in PUBLIC_FUNCTIONS:
        params = set(inspect.signature(getattr(q, name)).parameters)
        if name in ("sql", "session"):
            params = {"client"}  # sql: the value as a ? parameter; session: a query inside one
        pairs += [(name, p) for p in sorted(params & NAME_FILTERS)]
    return pairs


def test_every_parameter_of_the_public_query_functions_is_covered():
    """A new filter (or any new parameter) must join one of the groups these tests feed."""
    for name in PUBLIC_FUNCTIONS:
        for param in inspect.signature(getattr(q, name)).parameters:
            assert param in NAME_FILTERS | DATE_FILTERS | OTHER_TEXT | NOT_FILTERS, f"query.{name}({param}=...)"
    assert {"errors", "attempts", "error_counts", "error_codes", "failing_accounts", "payload_breakdown",
            "executions", "job_history", "export_errors", "sql"} <= set(PUBLIC_FUNCTIONS)


FILTER_PARAMS = _filter_params()


def test_filters_match_by_equality_not_by_pattern_or_case(ws):
    """The controls: a real value of each filter matches; a pattern or look-alike of it does not."""
    real = q.errors(ws).iloc[0]
    with q.session(ws) as s:
        for param in FILTERS:
            value = str(real[param])
            assert len(q.errors(s, **{param: value})) > 0, param
            look_alikes = (value[:-1] + "_", value[:2] + "%", value.swapcase(), value + " ", " " + value,
                           value + "\x00", value + "\u200b", "\u202e" + value[::-1],
                           value.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}), "%", "_", "*")
            for other in look_alikes:
                assert q.errors(s, **{param: other}).empty, (param, other)


@pytest.mark.parametrize("name", sorted({n for n, _ in FILTER_PARAMS}))
def test_hostile_values_in_a_query_filter_match_nothing_and_change_nothing(ws, tmp_path, name):
    before = contents(ws)
    with q.session(ws) as s:  # one connection for the lot; it sees any change made in it
        for param in [p for n, p in FILTER_PARAMS if n == name]:
            for value in HOSTILE:
                for given in (value, [value, value + "x"]) if value in ("'", MARK) else (value,):
                    if (name, param) == ("payload_breakdown", "error_code") and isinstance(given, list):
                        with pytest.raises(BadInput, match="needs an error code"):  # one code, not a list
                            _call(name, s, tmp_path, **{param: given})
                        continue
                    assert _matches(_call(name, s, tmp_path, **{param: given})) == 0, (param, given)
        assert contents(s) == before
    assert contents(ws) == before


@pytest.mark.parametrize("name", [n for n in PUBLIC_FUNCTIONS if {"date_from", "fields", "payload_fields", "by",
                                                                   "format"} & set(inspect.signature(getattr(q, n))
                                                                                   .parameters)])
def test_hostile_values_where_a_date_field_or_column_is_expected_are_bad_input(ws, tmp_path, name):
    before = contents(ws)
    params = set(inspect.signature(getattr(q, name)).parameters) & (DATE_FILTERS | OTHER_TEXT)
    with q.session(ws) as s:
        for param in sorted(params):
            for value in HOSTILE:
                if param in ("fields", "payload_fields") and re.fullmatch(r"[A-Za-z_]\w*", value):
                    continue  # a plain key ("_", "ACME") is a valid payload field name
                with pytest.raises(BadInput) as info:
                    _call(name, s, tmp_path, **{param: [value] if param in ("fields", "payload_fields", "by")
                                                else value})
                assert "\n" not in str(info.value)
    assert contents(ws) == before
    assert not (tmp_path / "out.parquet").exists()


def test_lone_surrogates_in_a_filter_are_bad_input(ws, tmp_path):
    for name, param in FILTER_PARAMS:
        if name == "sql":  # a raw query's parameters: DuckDB's own conversion error, as BadInput
            with pytest.raises(BadInput):
                q.sql(ws, "SELECT count(*) FROM v_errors WHERE client = ?", ["\ud800"])
            continue
        with pytest.raises(BadInput, match="not UTF-8"):
            _call(name, ws, tmp_path, **{param: "acme\udcff"})
    with pytest.raises(BadInput, match="not UTF-8"):
        q.export_errors(ws, tmp_path / "out\udcff.parquet")


@pytest.mark.parametrize("statement", [
    "'; DROP TABLE executions; --", "SELECT 1; DROP TABLE executions", "DROP TABLE executions",
    "SELECT * FROM v_errors WHERE client = '' OR '1'='1'; DELETE FROM work_items",
    "DELETE FROM work_items WHERE client = ?", "COPY executions TO '/tmp/x.csv'", "\x00",
])
def test_raw_sql_that_is_not_one_read_is_refused_and_changes_nothing(ws, statement):
    before = contents(ws)
    with pytest.raises(BadInput):
        q.sql(ws, statement, ["acme"] if "?" in statement else None)
    assert contents(ws) == before


def test_an_export_path_with_quotes_is_written_where_asked(ws, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "it's \"quoted\"; DROP TABLE executions; --.csv"
    result = q.export_errors(ws, target, format="csv")
    assert result.rows > 0 and target.is_file()
    assert sorted(p.name for p in folder.iterdir()) == [target.name]
    with pytest.raises(BadInput, match="NUL"):
        q.export_errors(ws, str(folder / "a\x00b.csv"), format="csv")


# ------------------------------------------------------------------------------------ the Workspace's reads
def _workspace_reads(job: str) -> dict[str, Any]:
    return {
        "execution client": lambda ws, v: ws.execution(v, S, RUN),
        "execution schedule": lambda ws, v: ws.execution(C, v, RUN),
        "config": lambda ws, v: ws.config(v, S),
        "schedules": lambda ws, v: ws.schedules(v),
        "job_stats job": lambda ws, v: ws.job_stats(C, S, RUN, v),
        "job_errors job": lambda ws, v: ws.job_errors(C, S, RUN, v),
        "job_errors code": lambda ws, v: ws.job_errors(C, S, RUN, job, code=v),
        "account_history account": lambda ws, v: ws.account_history(C, v),
        "account_history client": lambda ws, v: ws.account_history(v, "ACME-000001"),
        "history schedule": lambda ws, v: ws.history(C, v),
        "audit client": lambda ws, v: ws.audit(client=v),
    }


@pytest.mark.parametrize("read", list(_workspace_reads("")))
def test_hostile_values_in_workspace_reads_are_not_found_or_empty(ws, read):
    job = next(j.name for j in ws.execution(C, S, RUN).jobs if j.error)
    call = _workspace_reads(job)[read]
    before = contents(ws)
    for value in QUOTING:
        try:
            result = call(ws, value)
        except NotFound as exc:
            assert "\n" not in str(exc)
            continue
        assert result == [], (read, value)
    assert contents(ws) == before


def test_lone_surrogates_in_workspace_reads_are_bad_input(ws):
    for read in _workspace_reads("bill-run").values():
        with pytest.raises(BadInput):
            read(ws, "acme\udcff")


# ------------------------------------------------------------------------------------ values only as parameters
class _SpyConnection:
    """Forwards to a DuckDB connection and records each statement's text and parameters."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list) -> None:
        self._con, self._log = con, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def execute(self, query: str, parameters: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._log.append((query, parameters))
        return self._con.execute(query, parameters, *args, **kwargs)

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._log.append((query, kwargs.get("params", args[0] if args else None)))
        return self._con.sql(query, *args, **kwargs)


@pytest.fixture
def statements(monkeypatch) -> list[tuple[str, Any]]:
    """Every statement the Store's connections run during the test: (text, parameters)."""
    log: list[tuple[str, Any]] = []
    connect = Store.connect

    @contextmanager
    def spying(self):
        with connect(self) as con:
            yield _SpyConnection(con, log)

    monkeypatch.setattr(Store, "connect", spying)
    return log


def _values(params: Any) -> list[Any]:
    if isinstance(params, dict):
        params = list(params.values())
    out = []
    for p in params or []:
        out += _values(p) if isinstance(p, (list, tuple, dict)) else [p]
    return out


def test_filter_values_reach_duckdb_only_as_parameters(ws, tmp_path, statements):
    job = next(j.name for j in ws.execution(C, S, RUN).jobs if j.error)
    # (label, call, whether the value must reach DuckDB: every filter value does, as a parameter;
    # the job name of job_stats / job_errors finds the execution's job in the same statement)
    calls = [(f"query.{n}({p}=…)", lambda n=n, p=p: _call(n, ws, tmp_path, **{p: MARK}), True)
             for n, p in FILTER_PARAMS]
    calls += [(f"Workspace {r}", lambda f=f: f(ws, MARK), True) for r, f in _workspace_reads(job).items()]
    for label, call, reaches in calls:
        statements.clear()
        try:
            call()
        except NotFound:
            pass
        assert statements, label
        assert not [text for text, _ in statements if MARK in text], label
        assert any(MARK in _values(params) for _, params in statements) == reaches, label


# ------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def cli(ws, capsys, monkeypatch):
    monkeypatch.setenv("ALLEGRO_OPS_ACTOR", "cli-tester")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--home", str(ws.home), *args])
        return (code, *capsys.readouterr())

    return run


EXPORT_OPTIONS = {"client": "--client", "schedule": "--schedule", "job": "--job", "error_code": "--code",
                  "account_id": "--account"}


def test_cli_export_and_audit_filters_take_hostile_values_as_data(ws, cli, tmp_path):
    out = tmp_path / "out.parquet"
    code, text, err = cli("export", "errors", "--from", RUN, "--to", RUN, "--json", str(out))
    assert code == 0 and json.loads(text)["rows"] > 0, err  # the control: unfiltered, it finds rows
    before = contents(ws)
    for value in QUOTING:
        for option in EXPORT_OPTIONS.values():
            code, text, err = cli("export", "errors", "--from", RUN, "--to", RUN, option, value, "--overwrite",
                                  "--json", str(out))
            assert (code, err) == (0, ""), (option, value, err)
            assert json.loads(text)["rows"] == 0, (option, value)
        code, text, err = cli("audit", "--client", value, "--json")
        assert (code, json.loads(text), err) == (0, [], "")
    assert contents(ws) == before
    assert set(EXPORT_OPTIONS) == set(FILTERS)


def test_cli_as_a_process_passes_hostile_filters_as_data(ws, cli_cmd, cli_env, tmp_path):
    before = contents(ws)
    env = dict(cli_env, ALLEGRO_OPS_HOME=str(ws.home), HOME=str(tmp_path))
    out = tmp_path / "out.parquet"
    export = [*cli_cmd, "export", "errors", "--from", RUN, "--to", RUN, "--json", str(out)]
    for value, option in zip(HOSTILE[:5], EXPORT_OPTIONS.values()):
        export[-2:-2] = [option, value]
    audit = [*cli_cmd, "audit", "--client", '"; DROP TABLE executions; --', "--json"]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in (export, audit)]
    (export_out, export_err), (audit_out, audit_err) = (p.communicate(timeout=120) for p in procs)
    assert [p.returncode for p in procs] == [0, 0], (export_err, audit_err)
    assert json.loads(export_out)["rows"] == 0 and json.loads(audit_out) == []
    assert contents(ws) == before


# ------------------------------------------------------------------------------------ what SQL text is built from
SQL_MODULES = sorted((ROOT / "allegro_ops" / "store").glob("*.py")) + [ROOT / "allegro_ops" / "query.py"]
# Text that makes an f-string or a concatenation SQL: the statement and clause words this code
# base writes in upper case, a ? placeholder, or an interpolation between single quotes.
_SQL_TEXT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|COPY|EXPORT|IMPORT|CREATE|DROP|ALTER|WITH|FROM|WHERE|JOIN|"
                       r"IN|SET|VALUES|ORDER BY|GROUP BY|QUALIFY|LIMIT|EXCLUDE|AS|TO)\b|\?")
# module -> the expressions it may splice into SQL, each a fixed identifier, placeholders or quoted text.
SPLICED = {
    "analyst.py": {
        "_ITEM_ORDER": "a module constant: column names",
        "cols": "GROUPABLE (checked against it) or EXPORT_COLUMNS",
        "name(column)": "Filters.where: a column from its fixed tuple or a fixed expression from _ATTEMPT_NAMES",
        "name('run_date')": "the same for run_date",
        "', '.join('?' * len(values))": "placeholders",
        "op": "'>=' or '<=' from a literal tuple",
        "where": "Filters.where(): fixed column names and ? placeholders",
        "w_now": "Filters.where()", "w_seen": "Filters.where()", "scope": "Filters.where()",
        "within": "Filters.where()",
        "population": "_population(): fixed text and Filters.where()",
        "extract": "a fixed fragment with a ? placeholder", "fields": "fixed text and list indexes",
        "', '.join((f'_fields[{i + 1}] AS _f{i}' for i in range(len(paths))))": "list indexes we count",
        "i": "a list index", "i + 1": "a list index",
        "qualify": "a fixed fragment with a ? placeholder", "status": "a fixed fragment",
        "items": "a fixed JOIN fragment", "options": "fixed COPY options",
        "sql_literal(target)": "COPY's target path, quoted as a literal (it cannot be a parameter)",
    },
    "accounts.py": {
        "', '.join('?' * len(job_ids))": "placeholders", "', '.join('?' * len(item_nos))": "placeholders",
        "in_items[0]": "account_history: a fixed WHERE of those placeholders",
        "where": "_rows_of, _rows_by_id: the same fixed WHERE of placeholders",
        "table": "_rows_of, _rows_by_id: a key of _COLUMNS (listed_items or attempts)",
        "_COLUMNS[table]": "_rows_by_id: that table's fixed column list",
    },
    "work_items.py": {
        "match": "read_items: a fixed fragment with $ parameters",
        "' UNION ALL '.join(parts)": "read_items: fixed SELECTs with $ parameters",
        "where": "_write_later_outcomes: a fixed fragment with ? placeholders",
    },
    "db.py": {
        "name": "_catalog_name(): the file's stem reduced to word characters, double-quoted as an identifier",
    },
    "executions.py": {
        "_EXEC_COLS": "a module constant: column names", "_JOB_COLS": "a module constant: column names",
        "table": "_update: a key of _UPDATABLE", "key": "_update: a fixed id column",
        "columns": "_update: '<name> = ?' for names checked against _UPDATABLE", "name": "the same names",
        "cols": "find_job: _JOB_COLS (a module constant) with a table alias",
    },
    "backup.py": {
        "_ident(name)": "a table name from DuckDB's catalog, quoted as an identifier",
        "sql_literal(str(folder))": "EXPORT/IMPORT DATABASE's folder, quoted as a literal",
    },
}


def _sql_splices(path: Path) -> list[tuple[int, str]]:
    """(line, expression) of every value spliced into SQL-looking text outside a raise statement;
    ('%', ...) or ('format', ...) for any %-formatting or str.format."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_raise = {id(n) for r in ast.walk(tree) if isinstance(r, ast.Raise) for n in ast.walk(r)}

    def literal(node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(literal(v) for v in node.values if isinstance(v, ast.Constant))
        if isinstance(node, ast.IfExp):
            return literal(node.body) + literal(node.orelse)
        return ""

    def constant(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) or isinstance(node, ast.IfExp) and constant(node.body) and \
            constant(node.orelse)

    found = []
    for node in ast.walk(tree):
        if id(node) in in_raise:
            continue
        if isinstance(node, ast.JoinedStr) and _SQL_TEXT.search(literal(node)):
            found += [(node.lineno, ast.unparse(v.value)) for v in node.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if _SQL_TEXT.search(literal(node.left) + literal(node.right)):
                found += [(node.lineno, ast.unparse(side)) for side in (node.left, node.right)
                          if not constant(side) and not isinstance(side, (ast.JoinedStr, ast.BinOp))]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and literal(node.left):
            found.append((node.lineno, "%"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format" \
                and literal(node.func.value):
            found.append((node.lineno, "format"))
    return found


@pytest.mark.parametrize("path", SQL_MODULES, ids=lambda p: p.name)
def test_sql_is_spliced_only_from_fixed_identifiers_and_quoting_helpers(path):
    allowed = SPLICED.get(path.name, {})
    unexpected = [(line, expr) for line, expr in _sql_splices(path) if expr not in allowed]
    assert not unexpected, f"{path.name}: values spliced into SQL (use ? parameters): {unexpected}"


def test_the_static_check_finds_a_value_spliced_into_sql(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f(con, client, n):\n"
        "    con.execute(f\"SELECT * FROM executions WHERE client = '{client}'\")\n"
        "    con.execute(\"DELETE FROM jobs WHERE job_id = %d\" % n)\n"
        "    con.execute(\"SELECT * FROM jobs WHERE name = '\" + client + \"'\")\n"
        "    con.execute(\"SELECT {} FROM jobs\".format(client))\n"
        "    raise ValueError(f'bad client {client} FROM here')\n")
    assert sorted(_sql_splices(bad)) == [(2, "client"), (3, "%"), (4, "client"), (5, "format")]


def test_the_spliced_identifiers_are_fixed_names():
    ident = re.compile(r"^[a-z_][a-z0-9_]*$")
    for text in (sql_._ITEM_ORDER, ex_sql._EXEC_COLS, ex_sql._JOB_COLS):
        assert all(ident.match(c.strip()) for c in text.split(",")), text
    assert all(ident.match(c) for c in sql_.GROUPABLE + sql_.EXPORT_COLUMNS)
    assert all(ident.match(c) for table, cols in ex_sql._UPDATABLE.items() for c in (table, *cols))
    assert all(re.match(r"^[a-z]\.[a-z_]+$", v) for v in sql_._ATTEMPT_NAMES.values())


def test_the_guards_of_spliced_identifiers_refuse_anything_else(ws):
    def write(con):
        with pytest.raises(ValueError):
            ex_sql.set_execution(con, 1, **{"status = 'COMPLETED' --": 1})
        with pytest.raises(ValueError):
            ex_sql.set_job(con, 1, **{"status": "X", MARK: 1})
        with pytest.raises(ValueError):
            sql_.error_counts(con, sql_.Filters(), ("client; DROP TABLE executions",))

    before = contents(ws)
    ws.store.write(write)
    assert contents(ws) == before
    where, params = sql_.Filters(client=(MARK,), account_id=("'", "%"), date_from=None).where("w")
    assert where == "w.client IN (?) AND w.account_id IN (?, ?)" and params == [MARK, "'", "%"]
    with pytest.raises(BadInput):
        q.error_counts(ws, by=[MARK])


@pytest.mark.parametrize("value", [v for v in HOSTILE if "\x00" not in v] + ["it's", "a\\'b", "'; --"])
def test_quoted_literals_and_identifiers_round_trip_through_duckdb(value):
    con = duckdb.connect()
    try:
        assert con.execute(f"SELECT {sql_.sql_literal(value)}").fetchall() == [(value,)]
        con.execute(f"CREATE TABLE {backup_sql._ident(value)} (x INTEGER)")
        con.execute(f"INSERT INTO {backup_sql._ident(value)} VALUES (1), (2)")
        con.execute("CREATE TABLE executions (x INTEGER)")
        assert backup_sql.contents(con).tables == {value: 2, "executions": 0} if value != "executions" else True
    finally:
        con.close()
    with pytest.raises(BadInput):
        sql_.sql_literal(value + "\x00")

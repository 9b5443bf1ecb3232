"""SQL for the demo platform's data: accounts and the reference catalogs demo jobs check."""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pyarrow as pa

__all__ = ["replace_demo_data", "accounts", "catalog", "repair", "clients"]


def replace_demo_data(
    con: duckdb.DuckDBPyConnection, client: str, accounts_df: pd.DataFrame, catalog_df: pd.DataFrame
) -> None:
    con.execute("DELETE FROM demo_accounts WHERE client = ?", [client])
    con.execute("DELETE FROM demo_catalog WHERE client = ?", [client])
    con.register("_accounts", accounts_df)
    con.register("_catalog", catalog_df)
    try:
        con.execute(
            "INSERT INTO demo_accounts SELECT client, account_id, name, plan_id, currency, tax_region, email, "
            "card_expiry, monthly_usage FROM _accounts"
        )
        con.execute("INSERT INTO demo_catalog SELECT client, kind, key, value FROM _catalog")
    finally:
        con.unregister("_accounts")
        con.unregister("_catalog")


def clients(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT client FROM demo_accounts ORDER BY client").fetchall()]


def accounts(con: duckdb.DuckDBPyConnection, client: str) -> pa.Table:
    return con.sql(
        "SELECT account_id, name, plan_id, currency, tax_region, email, card_expiry, monthly_usage "
        "FROM demo_accounts WHERE client = $client ORDER BY account_id",
        params={"client": client},
    ).to_arrow_table()


def catalog(con: duckdb.DuckDBPyConnection, client: str) -> dict[str, dict[str, float | None]]:
    """kind -> {key: value}."""
    out: dict[str, dict[str, float | None]] = {}
    for kind, key, value in con.execute(
        "SELECT kind, key, value FROM demo_catalog WHERE client = ?", [client]
    ).fetchall():
        out.setdefault(kind, {})[key] = value
    return out


def repair(con: duckdb.DuckDBPyConnection, client: str, code: str, as_of: dt.date) -> int:
    """Repair the data behind one error code; returns how many records were fixed.
    Cards expired before ``as_of`` are renewed until five years after it."""
    if code == "RATE_PLAN_NOT_FOUND":
        rows = con.execute(
            "INSERT INTO demo_catalog SELECT DISTINCT ?, 'plan', plan_id, 25.0 FROM demo_accounts a "
            "WHERE client = ? AND plan_id NOT IN (SELECT key FROM demo_catalog WHERE client = ? AND kind = 'plan') "
            "RETURNING key",
            [client, client, client],
        ).fetchall()
        return len(rows)
    if code == "TAX_RULE_MISSING":
        rows = con.execute(
            "INSERT INTO demo_catalog SELECT DISTINCT ?, 'tax_region', tax_region, 0.08 FROM demo_accounts "
            "WHERE client = ? AND tax_region NOT IN "
            "(SELECT key FROM demo_catalog WHERE client = ? AND kind = 'tax_region') RETURNING key",
            [client, client, client],
        ).fetchall()
        return len(rows)
    if code == "INVALID_EMAIL":
        rows = con.execute(
            "UPDATE demo_accounts SET email = lower(account_id) || '@billing.example.com' "
            "WHERE client = ? AND NOT regexp_full_match(email, '[^@\\s]+@[^@\\s]+\\.[a-z]{2,}') "
            "RETURNING account_id",
            [client],
        ).fetchall()
        return len(rows)
    if code == "CARD_EXPIRED":
        rows = con.execute(
            "UPDATE demo_accounts SET card_expiry = ? WHERE client = ? AND card_expiry < ? RETURNING account_id",
            [dt.date(as_of.year + 5, 12, 31), client, as_of],
        ).fetchall()
        return len(rows)
    raise ValueError(code)

"""The demo workspace: two clients of a billing platform, their accounts with seeded data defects,
an automatic daily billing schedule and a manual month-end schedule each."""
from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import NotFound
from .jobs.demo import ERROR_CODES
from .service import MAX_DATE, MIN_DATE, Workspace
from .store import demo as demo_sql

__all__ = ["init_demo", "resolve", "DEMO_CLIENTS", "ERROR_CODES"]

# client -> (timezone, currency, tax regions)
DEMO_CLIENTS: dict[str, tuple[str, str, list[str]]] = {
    "acme": ("America/New_York", "USD", ["US-NY", "US-CA", "US-TX", "US-WA"]),
    "globex": ("Europe/Berlin", "EUR", ["DE-BE", "DE-BY", "FR-IDF", "NL-NH"]),
}
PLANS = {"basic": 9.0, "standard": 29.0, "premium": 99.0}
# error code -> share of accounts with that defect (each between 1 % and 5 %)
DEFECT_RATES = {"RATE_PLAN_NOT_FOUND": 0.02, "TAX_RULE_MISSING": 0.015, "INVALID_EMAIL": 0.02, "CARD_EXPIRED": 0.015}


def init_demo(
    ws: Workspace,
    *,
    accounts: int = 400,
    seed: int = 7,
    batch_size: int = 50,
    item_delay_ms: float = 0,
    concurrency: int = 4,
    side_effects: bool = False,
) -> list[dict[str, Any]]:
    """Write the demo configs under <home>/configs, apply them, and (re)build the demo accounts.

    ``side_effects`` gives invoice delivery and payment collection a side-effect ledger
    (allegro_ops/jobs/demo.py: ``side_effects: ledger`` in their params)."""
    ws.authorize("demo init", str(ws.home))
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    configs_dir = ws.home / "configs"
    for client, (tz, currency, regions) in DEMO_CLIENTS.items():
        accounts_df, catalog_df = _demo_data(client, accounts, seed, currency, regions)
        ws.store.write(lambda con: demo_sql.replace_demo_data(con, client, accounts_df, catalog_df))
        _write_configs(configs_dir / client, client, tz, batch_size, item_delay_ms, concurrency, side_effects)
    return ws.apply_config(configs_dir)


def resolve(ws: Workspace, client: str, code: str | None = None) -> dict[str, int]:
    """Repair the demo data behind one error code (all when None); returns records fixed per code."""
    ws.authorize("demo resolve", client, client)
    known = ws.store.read(demo_sql.clients)
    if client not in known:
        raise NotFound("client", client, f"demo clients: {', '.join(known) or 'none (run demo init)'}")
    if code is not None and code not in ERROR_CODES:
        raise NotFound("error code", code, f"demo error codes: {', '.join(ERROR_CODES)}")
    codes = [code] if code else list(ERROR_CODES)
    # Cards are renewed past the last possible run date, so the fix holds for every date.
    fixed = ws.store.write(lambda con: {c: demo_sql.repair(con, client, c, MAX_DATE) for c in codes})
    ws.record("demo resolve", client, client, "done", ", ".join(f"{c}: {n} fixed" for c, n in fixed.items()))
    return fixed


def _demo_data(client: str, n: int, seed: int, currency: str, regions: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = random.Random(f"{seed}-{client}")
    ids = [f"{client.upper()}-{i:06d}" for i in range(1, n + 1)]
    rows = []
    for account_id in ids:
        rows.append({
            "client": client,
            "account_id": account_id,
            "name": f"{rng.choice(['North', 'Blue', 'Prime', 'Oak', 'Nova', 'Summit'])} "
                    f"{rng.choice(['Logistics', 'Retail', 'Labs', 'Foods', 'Energy', 'Media'])} {account_id[-4:]}",
            "plan_id": rng.choice(list(PLANS)),
            "currency": currency,
            "tax_region": rng.choice(regions),
            "email": f"billing+{account_id.lower()}@example.com",
            # valid after the last possible run date: the demo's error rates hold on any date
            "card_expiry": dt.date(MAX_DATE.year + rng.randint(1, 5), rng.randint(1, 12), 28),
            "monthly_usage": round(rng.uniform(5, 5000), 2),
        })
    # Exactly round(rate * n) accounts (at least one) carry each defect, on disjoint accounts.
    pool = list(range(n))
    rng.shuffle(pool)
    for code, rate in DEFECT_RATES.items():
        count = max(1, round(rate * n))
        for index in pool[:count]:
            _apply_defect(rows[index], code, rng)
        pool = pool[count:] or list(range(n))
    catalog = [(client, "plan", k, v) for k, v in PLANS.items()] + [(client, "tax_region", r, 0.08) for r in regions]
    return pd.DataFrame(rows), pd.DataFrame(catalog, columns=["client", "kind", "key", "value"])


def _apply_defect(row: dict[str, Any], code: str, rng: random.Random) -> None:
    if code == "RATE_PLAN_NOT_FOUND":
        row["plan_id"] = rng.choice(["legacy-2019", "promo-blackfriday", "enterprise-custom"])
    elif code == "TAX_RULE_MISSING":
        row["tax_region"] = rng.choice(["PR-SJ", "GU-HG", "IC-TF"])
    elif code == "INVALID_EMAIL":
        row["email"] = rng.choice(["billing@", "accounts.example.com", "ap@@example.com", ""])
    elif code == "CARD_EXPIRED":
        row["card_expiry"] = dt.date(MIN_DATE.year - rng.randint(1, 5), rng.randint(1, 12), 28)


def _write_configs(folder: Path, client: str, tz: str, batch_size: int, item_delay_ms: float, concurrency: int,
                   side_effects: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    params = {"item_delay_ms": item_delay_ms} if item_delay_ms else {}

    def job(name: str, type_: str, effects: bool = False) -> dict[str, Any]:
        extra = {"side_effects": "ledger"} if effects and side_effects else {}
        return {"name": name, "type": type_, "batch_size": batch_size, "concurrency": concurrency,
                "params": {**params, **extra}}

    daily = {
        "client": client,
        "name": "daily-billing",
        "description": f"Daily billing cycle for {client}: rate usage, bill, deliver invoices, collect payments.",
        "mode": "automatic",
        "calendar": {"cron": "0 2 * * *", "timezone": tz},
        "jobs": [
            job("usage-rating", "demo.usage_rating"),
            job("bill-run", "demo.bill_run"),
            job("invoice-delivery", "demo.invoice_delivery", effects=True),
            job("payment-collection", "demo.payment_collection", effects=True),
        ],
    }
    month_end = {
        "client": client,
        "name": "month-end",
        "description": f"Month-end close for {client}, run by hand after sign-off.",
        "mode": "manual",
        "calendar": {"cron": "0 6 1 * *", "timezone": tz},
        "jobs": [
            job("revenue-recognition", "demo.revenue_recognition"),
            job("statement-run", "demo.statement_run"),
            job("ledger-export", "demo.ledger_export"),
        ],
    }
    for doc in (daily, month_end):
        (folder / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

"""Demo billing job types. They look up the demo platform's data (accounts and catalogs) the way
an internal billing API would, so repairing that data (``demo resolve``) makes Reprocess succeed.

Handlers are idempotent: what they produce is keyed by account and run date. ``item_delay_ms``
in a job's params makes each work item wait, so a run can be watched or interrupted.

Invoice delivery (an invoice e-mailed) and payment collection (a card charged) have real-world
effects. With ``side_effects: ledger`` in a job's params, each successful call appends one JSON
line to ``<home>/side_effects/<client>-<job>.jsonl``, keyed ``<client>/<account>/<date>/<job>``
like a payment API's idempotency key: a repeated call with a known key has no further effect.
``read_side_effects`` and ``effective_side_effects`` show the calls and what took effect.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from ..errors import BadInput, WorkItemError
from ..store import demo as demo_sql
from .base import ItemInput, JobContext, JobType

__all__ = ["ERROR_CODES", "SIDE_EFFECTS_DIR", "side_effects_path", "read_side_effects", "effective_side_effects"]

SIDE_EFFECTS_DIR = "side_effects"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")

# error code -> (job type that raises it, what is wrong)
ERROR_CODES = {
    "RATE_PLAN_NOT_FOUND": ("demo.bill_run", "the account's rate plan is missing from the plan catalog"),
    "TAX_RULE_MISSING": ("demo.bill_run", "no tax rule for the account's tax region"),
    "INVALID_EMAIL": ("demo.invoice_delivery", "the account's billing e-mail address is malformed"),
    "CARD_EXPIRED": ("demo.payment_collection", "the account's payment card has expired"),
}


@dataclass(frozen=True)
class _Platform:
    plans: dict[str, float | None]
    tax_regions: dict[str, float | None]
    emails: dict[str, str]
    card_expiry: dict[str, dt.date]
    ledger: str | None = None  # the side-effect ledger file, when the job's params ask for one


def side_effects_path(home: str | Path, client: str, job: str) -> Path:
    """The side-effect ledger of one client's job (a JSON line per call)."""
    return Path(home) / SIDE_EFFECTS_DIR / f"{client}-{job}.jsonl"


def read_side_effects(home: str | Path, client: str, job: str | None = None) -> list[dict[str, Any]]:
    """Every side-effect call made for a client (of one job when given), in the order made per job."""
    folder = Path(home) / SIDE_EFFECTS_DIR
    files = [side_effects_path(home, client, job)] if job else sorted(folder.glob(f"{client}-*.jsonl"))
    calls: list[dict[str, Any]] = []
    for path in files:
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                calls.extend(c for c in map(json.loads, f) if c["client"] == client)
    return calls


def effective_side_effects(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What took effect: the first call per key (a repeated call with a known key changes nothing)."""
    effective: dict[str, dict[str, Any]] = {}
    for call in calls:
        effective.setdefault(call["key"], call)
    return effective


def _record_side_effect(ledger: str, ctx: JobContext, account_id: str) -> None:
    """Append one call to the ledger: one write() on an O_APPEND file, so worker threads (and
    processes) never interleave their lines."""
    day = ctx.run_date.isoformat()
    line = json.dumps({"job": ctx.job, "client": ctx.client, "account_id": account_id, "run_date": day,
                       "key": f"{ctx.client}/{account_id}/{day}/{ctx.job}", "pid": os.getpid()}) + "\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


class _DemoJob(JobType):
    has_side_effect: ClassVar[bool] = False  # a successful call changes something outside the platform

    def list_work_items(self, ctx: JobContext) -> pa.Table:
        assert ctx.store is not None
        accounts = ctx.store.read(lambda con: demo_sql.accounts(con, ctx.client))
        rows = accounts.to_pylist()
        return pa.table(
            {
                "account_id": [r["account_id"] for r in rows],
                "payload": [self.payload(r, ctx) for r in rows],
            }
        )

    def payload(self, account: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {"account_id": account["account_id"], "run_date": ctx.run_date.isoformat()}

    def prepare(self, ctx: JobContext) -> _Platform:
        assert ctx.store is not None
        ledger = self._ledger(ctx)

        def load(con):
            cat = demo_sql.catalog(con, ctx.client)
            acc = demo_sql.accounts(con, ctx.client).to_pylist()
            return _Platform(
                plans=cat.get("plan", {}),
                tax_regions=cat.get("tax_region", {}),
                emails={a["account_id"]: a["email"] for a in acc},
                card_expiry={a["account_id"]: a["card_expiry"] for a in acc},
                ledger=ledger,
            )

        return ctx.store.read(load)

    def _ledger(self, ctx: JobContext) -> str | None:
        """The ledger file of this job run (None: no ledger); made here, where the workspace is known."""
        mode = ctx.params.get("side_effects")
        if not mode or not self.has_side_effect:
            return None
        if mode != "ledger":
            raise BadInput(f"job {ctx.job}: params.side_effects must be 'ledger', not {mode!r}")
        assert ctx.store is not None
        path = side_effects_path(ctx.store.path.parent, ctx.client, ctx.job)
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def process_item(self, item: ItemInput, state: _Platform, ctx: JobContext) -> None:
        delay = float(ctx.params.get("item_delay_ms", 0) or 0)
        if delay:
            time.sleep(delay / 1000.0)
        self.check(item.payload, state, ctx)
        if state.ledger:
            _record_side_effect(state.ledger, ctx, item.account_id)

    def check(self, payload: dict[str, Any], state: _Platform, ctx: JobContext) -> None:
        return None


class UsageRating(_DemoJob):
    name = "demo.usage_rating"

    def payload(self, account, ctx):
        return {
            "account_id": account["account_id"],
            "run_date": ctx.run_date.isoformat(),
            "plan_id": account["plan_id"],
            "usage": {"unit": "GB", "quantity": round(account["monthly_usage"] / 30.0, 3)},
        }


class BillRun(_DemoJob):
    name = "demo.bill_run"

    def payload(self, account, ctx):
        return {
            "account_id": account["account_id"],
            "bill_date": ctx.run_date.isoformat(),
            "plan": {"id": account["plan_id"]},
            "currency": account["currency"],
            "tax_region": account["tax_region"],
            "usage_quantity": round(account["monthly_usage"] / 30.0, 3),
        }

    def check(self, payload, state, ctx):
        plan = payload["plan"]["id"]
        if plan not in state.plans:
            raise WorkItemError("RATE_PLAN_NOT_FOUND", f"rate plan {plan!r} is not in the plan catalog")
        region = payload["tax_region"]
        if region not in state.tax_regions:
            raise WorkItemError("TAX_RULE_MISSING", f"no tax rule for tax region {region!r}")


class InvoiceDelivery(_DemoJob):
    name = "demo.invoice_delivery"
    has_side_effect = True  # an invoice e-mailed

    def payload(self, account, ctx):
        return {
            "account_id": account["account_id"],
            "invoice_id": f"INV-{ctx.run_date:%Y%m%d}-{account['account_id']}",
            "channel": "email",
            "template": "monthly-invoice",
        }

    def check(self, payload, state, ctx):
        email = state.emails.get(payload["account_id"], "")
        if not _EMAIL.fullmatch(email):
            raise WorkItemError("INVALID_EMAIL", f"billing e-mail {email!r} is not a deliverable address")


class PaymentCollection(_DemoJob):
    name = "demo.payment_collection"
    has_side_effect = True  # a card charged

    def payload(self, account, ctx):
        return {
            "account_id": account["account_id"],
            "invoice_id": f"INV-{ctx.run_date:%Y%m%d}-{account['account_id']}",
            "amount": {"value": round(account["monthly_usage"] * 0.12 + 9.0, 2), "currency": account["currency"]},
            "method": "card",
        }

    def check(self, payload, state, ctx):
        expiry = state.card_expiry.get(payload["account_id"])
        if expiry is None or expiry < ctx.run_date:
            raise WorkItemError("CARD_EXPIRED", f"payment card expired on {expiry}")


class RevenueRecognition(_DemoJob):
    name = "demo.revenue_recognition"


class StatementRun(InvoiceDelivery):
    name = "demo.statement_run"

    def payload(self, account, ctx):
        return {
            "account_id": account["account_id"],
            "statement_id": f"STM-{ctx.run_date:%Y%m}-{account['account_id']}",
            "channel": "email",
        }


class LedgerExport(_DemoJob):
    name = "demo.ledger_export"


class Noop(JobType):
    """Items come from params: ``count`` work items with a small payload; processing does nothing.
    ``fail_every`` fails every n-th item with ``error_code``, for tests and benchmarks."""

    name = "demo.noop"

    def list_work_items(self, ctx: JobContext) -> pa.Table:
        count = int(ctx.params.get("count", 10))
        ids = [f"ACC-{i:07d}" for i in range(1, count + 1)]
        return pa.table({"account_id": ids, "payload": [{"account_id": a, "n": i} for i, a in enumerate(ids, 1)]})

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        every = int(ctx.params.get("fail_every", 0) or 0)
        if every and item.payload["n"] % every == 0:
            raise WorkItemError(str(ctx.params.get("error_code", "NOOP_FAILURE")), f"item {item.payload['n']} fails")


class CpuHash(Noop):
    """A CPU-bound handler: hashes the payload ``rounds`` times (params), for the Dask executor.
    ``fail_every`` fails every n-th item with ``error_code`` as in demo.noop."""

    name = "demo.cpu"

    def process_item(self, item: ItemInput, state: Any, ctx: JobContext) -> None:
        digest = repr(item.payload).encode()
        for _ in range(int(ctx.params.get("rounds", 1000))):
            digest = hashlib.sha256(digest).digest()
        super().process_item(item, state, ctx)


from . import registry  # noqa: E402

for _cls in (UsageRating, BillRun, InvoiceDelivery, PaymentCollection, RevenueRecognition, StatementRun, LedgerExport,
             Noop, CpuHash):
    registry.register(_cls)

"""Demo billing job types. They look up the demo platform's data (accounts and catalogs) the way
an internal billing API would, so repairing that data (``demo resolve``) makes Reprocess succeed.

Handlers are idempotent: what they produce is keyed by account and run date. ``item_delay_ms``
in a job's params makes each work item wait, so a run can be watched or interrupted.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ..errors import WorkItemError
from ..store import demo as demo_sql
from .base import ItemInput, JobContext, JobType

__all__ = ["ERROR_CODES"]

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


class _DemoJob(JobType):
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

        def load(con):
            cat = demo_sql.catalog(con, ctx.client)
            acc = demo_sql.accounts(con, ctx.client).to_pylist()
            return _Platform(
                plans=cat.get("plan", {}),
                tax_regions=cat.get("tax_region", {}),
                emails={a["account_id"]: a["email"] for a in acc},
                card_expiry={a["account_id"]: a["card_expiry"] for a in acc},
            )

        return ctx.store.read(load)

    def process_item(self, item: ItemInput, state: _Platform, ctx: JobContext) -> None:
        delay = float(ctx.params.get("item_delay_ms", 0) or 0)
        if delay:
            time.sleep(delay / 1000.0)
        self.check(item.payload, state, ctx)

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

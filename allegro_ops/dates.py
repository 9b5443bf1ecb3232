"""Run dates as operators type them, and the wall clock (passed in everywhere else)."""
from __future__ import annotations

import datetime as dt
import re

from .errors import BadInput

__all__ = ["parse_date", "parse_timestamp", "utc_now", "MIN_DATE", "MAX_DATE"]

MIN_DATE, MAX_DATE = dt.date(1990, 1, 1), dt.date(2100, 12, 31)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_date(value: str | dt.date) -> dt.date:
    """An ISO run date (YYYY-MM-DD) between 1990 and 2100."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        text = str(value).strip()
        try:
            if not _ISO_DAY.fullmatch(text):  # fromisoformat alone also takes week dates (2026-W48-2)
                raise ValueError
            value = dt.date.fromisoformat(text)
        except ValueError:
            raise BadInput(f"bad date {text!r}: expected an existing day as YYYY-MM-DD") from None
    if not MIN_DATE <= value <= MAX_DATE:
        raise BadInput(f"bad date {value.isoformat()}: run dates lie between {MIN_DATE} and {MAX_DATE}")
    return value


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """An ISO 8601 moment (``--now`` of the scheduler and of notify check), as UTC; a naive one is
    UTC. None stays None."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadInput(f"bad timestamp {value!r}: expected ISO 8601, e.g. 2026-11-25T09:00:00Z") from None
    if not MIN_DATE <= moment.date() <= MAX_DATE:
        raise BadInput(f"bad timestamp {value!r}: run dates lie between {MIN_DATE} and {MAX_DATE}")
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)

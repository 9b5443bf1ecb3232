"""Run dates as operators type them, and the wall clock (passed in everywhere else)."""
from __future__ import annotations

import datetime as dt
import re

from .errors import BadInput

__all__ = ["parse_date", "utc_now", "MIN_DATE", "MAX_DATE"]

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

"""Deadlines: by when an execution must be COMPLETED, in its schedule's timezone.

A schedule's ``deadline`` is "HH:MM" (on the run date) or "+N HH:MM" (N days after it). An
execution that exists, is not COMPLETED and whose deadline has passed is LATE.
"""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from .models import ScheduleConfig

__all__ = ["deadline_at", "is_late"]

_DEADLINE = re.compile(r"^(?:\+(\d{1,2}) )?(\d{2}):(\d{2})$")


def deadline_at(config: ScheduleConfig, run_date: dt.date) -> dt.datetime | None:
    """The moment (aware, in the schedule's timezone) the run date's execution is due; None without one."""
    if not config.deadline:
        return None
    match = _DEADLINE.match(config.deadline)
    if match is None:
        raise ValueError(f"bad deadline {config.deadline!r}: expected HH:MM or +N HH:MM")
    days, hour, minute = int(match.group(1) or 0), int(match.group(2)), int(match.group(3))
    day = run_date + dt.timedelta(days=days)
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(config.calendar.timezone))


def is_late(config: ScheduleConfig | None, run_date: dt.date, status: str, now: dt.datetime) -> bool:
    """A created execution that is not COMPLETED past its deadline."""
    if config is None or status in ("COMPLETED", "NOT_CREATED"):
        return False
    due = deadline_at(config, run_date)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return due is not None and now > due

"""Schedule calendars: which run dates a cron expression and business-day rules produce.

Pure functions of a ``Calendar`` and the time window they are asked about; nothing here reads
the clock, the store or a file.

The cron expression is read as wall-clock time in the calendar's IANA timezone. Each local date
on which it fires once or more gives one *fire*: its date and the time of its first firing that
day. A fire on a non-business day (a holiday, or a weekday listed in ``weekend``) follows the
calendar's ``non_business_day`` policy:

* ``run`` (the default) — run on that date anyway;
* ``skip`` — no run for that date;
* ``next`` / ``previous`` — the run date moves to the next / previous business day.

A run date becomes *due* at the fire's time of day on the run date itself, in the timezone; when
several fires land on one run date, the earliest counts. A wall time that a DST change skips is
due at the same UTC offset as before the change (02:30 on a spring-forward day is due at 03:30
local); a wall time that a DST change repeats is due at its first occurrence. So every date gets
exactly one due instant: no date is skipped or doubled by a DST change.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .models import Calendar

__all__ = [
    "WEEKDAYS",
    "POLICIES",
    "BusinessDays",
    "RunSlot",
    "SkippedFire",
    "business_days",
    "occurrences",
    "run_dates",
    "run_dates_between",
    "next_run",
    "fires_ever",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
POLICIES = ("skip", "next", "previous", "run")
_UTC = dt.timezone.utc
_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class BusinessDays:
    """Which local dates are business days: not a holiday and not a weekend weekday."""

    holidays: frozenset[dt.date] = frozenset()
    weekend: frozenset[int] = frozenset()  # 0 = Monday … 6 = Sunday

    def __post_init__(self) -> None:
        if len(self.weekend) >= 7:
            raise ValueError("a weekend cannot cover all seven days")

    def is_business_day(self, day: dt.date) -> bool:
        return day not in self.holidays and day.weekday() not in self.weekend

    def why_not(self, day: dt.date) -> str | None:
        """None on a business day; else "holiday" or "weekend (sat)"."""
        if day in self.holidays:
            return "holiday"
        if day.weekday() in self.weekend:
            return f"weekend ({WEEKDAYS[day.weekday()]})"
        return None

    def next_business_day(self, day: dt.date) -> dt.date:
        while not self.is_business_day(day):
            day += _ONE_DAY
        return day

    def previous_business_day(self, day: dt.date) -> dt.date:
        while not self.is_business_day(day):
            day -= _ONE_DAY
        return day

    @cached_property
    def longest_closure(self) -> int:
        """The most consecutive non-business days anywhere (bounds how far a run date moves)."""
        longest = _longest_weekend_run(self.weekend)
        if not self.holidays:
            return longest
        day, last = min(self.holidays) - dt.timedelta(days=7), max(self.holidays) + dt.timedelta(days=7)
        run = 0
        while day <= last:
            run = 0 if self.is_business_day(day) else run + 1
            longest = max(longest, run)
            day += _ONE_DAY
        return longest


@dataclass(frozen=True)
class RunSlot:
    """A run date and the UTC instant it becomes due."""

    run_date: dt.date
    due: dt.datetime
    moved_from: dt.date | None = None  # the fire's date when a policy moved it
    reason: str = ""  # why it moved, e.g. "holiday"


@dataclass(frozen=True)
class SkippedFire:
    """A fire on a non-business day that the ``skip`` policy dropped."""

    fire_date: dt.date
    at: dt.datetime
    reason: str


def business_days(calendar: Calendar, set_holidays: Iterable[dt.date] = ()) -> BusinessDays:
    """The calendar's business-day rules; ``set_holidays`` are the dates of its named holiday set."""
    weekend = frozenset(WEEKDAYS.index(d) for d in calendar.weekend)
    return BusinessDays(frozenset(calendar.holidays) | frozenset(set_holidays), weekend)


def occurrences(
    calendar: Calendar, start: dt.datetime, end: dt.datetime, set_holidays: Iterable[dt.date] = ()
) -> tuple[list[RunSlot], list[SkippedFire]]:
    """The run dates due in ``start < due <= end`` (sorted by due instant) and the fires in that
    window that the ``skip`` policy dropped."""
    _check_aware(start, end)
    rules = business_days(calendar, set_holidays)
    tz = ZoneInfo(calendar.timezone)
    policy = calendar.non_business_day
    slack = dt.timedelta(days=(rules.longest_closure + 1 if policy in ("next", "previous") else 0) + 1)
    first, last = start.astimezone(tz).date() - slack, end.astimezone(tz).date() + slack
    slots: dict[dt.date, RunSlot] = {}
    skipped: list[SkippedFire] = []
    for fire_date, first_time in _fires(calendar.cron, first, last):
        why = rules.why_not(fire_date)
        if why is None or policy == "run":
            target = fire_date
        elif policy == "skip":
            at = _instant(fire_date, first_time, tz)
            if start < at <= end:
                skipped.append(SkippedFire(fire_date, at, why))
            continue
        elif policy == "next":
            target = rules.next_business_day(fire_date)
        else:
            target = rules.previous_business_day(fire_date)
        slot = RunSlot(target, _instant(target, first_time, tz),
                       None if target == fire_date else fire_date, "" if target == fire_date else why)
        known = slots.get(target)
        if known is None or (slot.due, slot.moved_from is not None) < (known.due, known.moved_from is not None):
            slots[target] = slot
    due = sorted((s for s in slots.values() if start < s.due <= end), key=lambda s: (s.due, s.run_date))
    return due, skipped


def run_dates(
    calendar: Calendar, start: dt.datetime, end: dt.datetime, set_holidays: Iterable[dt.date] = ()
) -> list[dt.date]:
    """The run dates that become due in ``start < due <= end``: unique and sorted."""
    return sorted(s.run_date for s in occurrences(calendar, start, end, set_holidays)[0])


def run_dates_between(
    calendar: Calendar, first: dt.date, last: dt.date, set_holidays: Iterable[dt.date] = ()
) -> list[dt.date]:
    """The calendar's run dates from ``first`` to ``last`` inclusive (what a backfill runs)."""
    tz = ZoneInfo(calendar.timezone)
    start = dt.datetime.combine(first - _ONE_DAY, dt.time.min, tzinfo=tz).astimezone(_UTC)
    end = dt.datetime.combine(last + 2 * _ONE_DAY, dt.time.min, tzinfo=tz).astimezone(_UTC)
    return [d for d in run_dates(calendar, start, end, set_holidays) if first <= d <= last]


def next_run(
    calendar: Calendar, after: dt.datetime, set_holidays: Iterable[dt.date] = (), horizon_days: int = 3700
) -> RunSlot | None:
    """The first run date due strictly after ``after`` (None when none is due within the horizon)."""
    span = 2
    while True:
        end = after + dt.timedelta(days=min(span, horizon_days))
        due, _ = occurrences(calendar, after, end, set_holidays)
        if due:
            return due[0]
        if span >= horizon_days:
            return None
        span *= 4


def fires_ever(cron: str, within_years: int = 9, reference: dt.datetime = dt.datetime(2024, 1, 1)) -> bool:
    """Whether a 5-field cron expression fires at least once in ``within_years`` after ``reference``
    (9 years covers February 29 across the skipped leap year 2100)."""
    try:
        croniter(cron, reference, max_years_between_matches=within_years).get_next(dt.datetime)
    except (CroniterBadDateError, CroniterBadCronError):
        return False
    return True


def _fires(cron: str, first: dt.date, last: dt.date) -> Iterator[tuple[dt.date, dt.time]]:
    """(local date, time of its first firing) for each date in [first, last] the cron fires on.

    Wall-clock arithmetic on naive datetimes: every local date is visited once, DST or not."""
    cursor = dt.datetime.combine(first, dt.time.min) - dt.timedelta(seconds=30)
    while True:
        try:
            fire = croniter(cron, cursor, max_years_between_matches=9).get_next(dt.datetime)
        except CroniterBadDateError:
            return
        if fire.date() > last:
            return
        yield fire.date(), fire.time()
        cursor = dt.datetime.combine(fire.date(), dt.time(23, 59, 30))


def _instant(day: dt.date, wall: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of a wall time on a date (fold 0: a skipped time keeps the earlier offset,
    a repeated time is its first occurrence)."""
    return dt.datetime.combine(day, wall, tzinfo=tz).astimezone(_UTC)


def _longest_weekend_run(weekend: frozenset[int]) -> int:
    longest = run = 0
    for i in range(14):  # twice round the week catches a run that wraps Sunday to Monday
        run = run + 1 if i % 7 in weekend else 0
        longest = max(longest, run)
    return longest


def _check_aware(*moments: dt.datetime) -> None:
    for m in moments:
        if m.tzinfo is None or m.utcoffset() is None:
            raise ValueError(f"{m.isoformat()} has no timezone; pass aware datetimes (UTC)")

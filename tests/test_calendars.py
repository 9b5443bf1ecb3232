"""Schedule calendars: run dates from cron in a timezone, DST, month ends, leap days, and the
business-day policies (skip, next, previous, run); config validation of the new calendar fields.

Expected dates are written by hand from a wall calendar, not derived from calendars.py.
"""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from allegro_ops import InvalidConfig
from allegro_ops.calendars import business_days, next_run, occurrences, run_dates, run_dates_between
from allegro_ops.config import content_hash, from_snapshot, parse_document, snapshot_json, to_yaml
from allegro_ops.holiday_sets import holidays_of, load_holiday_sets
from allegro_ops.models import Calendar

UTC = dt.timezone.utc
NY = "America/New_York"
D = dt.date


def at(*args: int, tz: str = "UTC") -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# ------------------------------------------------------------------ DST
def test_a_0230_cron_in_new_york_runs_every_date_once_across_spring_forward():
    cal = Calendar("30 2 * * *", NY)
    slots, _ = occurrences(cal, at(2026, 3, 6), at(2026, 3, 11))
    assert [s.run_date for s in slots] == days(D(2026, 3, 6), D(2026, 3, 10))
    march_8 = next(s for s in slots if s.run_date == D(2026, 3, 8))
    # 02:30 does not exist on March 8: due at 03:30 EDT, which is 07:30 UTC
    assert march_8.due == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *", "0 * * * *", "*/20 1-2 * * *"])
def test_a_cron_in_new_york_runs_every_date_once_across_fall_back(cron):
    cal = Calendar(cron, NY)
    dates = run_dates(cal, at(2026, 10, 29, 23, 59, tz=NY), at(2026, 11, 2, 23, 59, tz=NY))
    assert dates == days(D(2026, 10, 30), D(2026, 11, 2))


def test_a_repeated_wall_time_is_due_at_its_first_occurrence():
    slots, _ = occurrences(Calendar("30 1 * * *", NY), at(2026, 11, 1), at(2026, 11, 2))
    assert [s.due for s in slots] == [dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]  # 01:30 EDT, not EST


@settings(max_examples=60, deadline=None)
@given(
    tz=st.sampled_from([NY, "Europe/Berlin", "Australia/Sydney", "America/Santiago", "UTC"]),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 30, 59]),
    first=st.dates(D(2025, 1, 1), D(2028, 12, 31)),
    length=st.integers(0, 60),
)
def test_a_daily_cron_gives_each_local_date_exactly_once_in_any_timezone(tz, hour, minute, first, length):
    last = first + dt.timedelta(days=length)
    assert run_dates_between(Calendar(f"{minute} {hour} * * *", tz), first, last) == days(first, last)


# ------------------------------------------------------------------ month ends and leap days
def test_a_last_day_of_month_cron_covers_february_in_and_out_of_leap_years():
    dates = run_dates_between(Calendar("0 23 L * *", "UTC"), D(2027, 1, 1), D(2028, 3, 31))
    assert D(2027, 2, 28) in dates and D(2028, 2, 29) in dates
    assert D(2028, 2, 28) not in dates
    assert len(dates) == 15 and all((d + dt.timedelta(days=1)).day == 1 for d in dates)


def test_a_day_31_cron_runs_only_in_months_that_have_one():
    dates = run_dates_between(Calendar("0 2 31 * *", "UTC"), D(2026, 1, 1), D(2026, 12, 31))
    assert [d.month for d in dates] == [1, 3, 5, 7, 8, 10, 12]


def test_a_february_29_cron_next_runs_on_the_next_leap_day():
    slot = next_run(Calendar("0 0 29 2 *", "UTC"), at(2026, 3, 1))
    assert slot is not None and slot.run_date == D(2028, 2, 29)


def test_a_local_month_start_cron_is_dated_in_the_schedules_timezone():
    # 00:30 on the 1st in Sydney is still the last day of the previous month in UTC
    slots, _ = occurrences(Calendar("30 0 1 * *", "Australia/Sydney"), at(2026, 5, 30), at(2026, 6, 2))
    assert [(s.run_date, s.due.date()) for s in slots] == [(D(2026, 6, 1), D(2026, 5, 31))]


# ------------------------------------------------------------------ business days
THANKSGIVING = D(2026, 11, 26)  # a Thursday


def weekly_thursday(policy: str, **kw) -> Calendar:
    return Calendar("0 2 * * 4", NY, holidays=(THANKSGIVING,), non_business_day=policy, weekend=("sat", "sun"), **kw)


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("run", [D(2026, 11, 19), THANKSGIVING, D(2026, 12, 3)]),
        ("skip", [D(2026, 11, 19), D(2026, 12, 3)]),
        ("next", [D(2026, 11, 19), D(2026, 11, 27), D(2026, 12, 3)]),
        ("previous", [D(2026, 11, 19), D(2026, 11, 25), D(2026, 12, 3)]),
    ],
)
def test_a_holiday_follows_the_non_business_day_policy(policy, expected):
    assert run_dates_between(weekly_thursday(policy), D(2026, 11, 16), D(2026, 12, 6)) == expected


def test_a_moved_run_date_is_due_at_the_cron_time_on_its_new_date_and_says_why():
    slots, _ = occurrences(weekly_thursday("next"), at(2026, 11, 26), at(2026, 11, 28))
    assert [(s.run_date, s.due, s.moved_from, s.reason) for s in slots] == [
        (D(2026, 11, 27), at(2026, 11, 27, 2, tz=NY), THANKSGIVING, "holiday")
    ]


def test_a_skipped_fire_is_reported_with_its_reason():
    slots, skipped = occurrences(weekly_thursday("skip"), at(2026, 11, 25), at(2026, 11, 28))
    assert slots == []
    assert [(f.fire_date, f.reason) for f in skipped] == [(THANKSGIVING, "holiday")]


def test_next_business_day_steps_over_a_weekend_and_a_following_holiday():
    # Friday Dec 25 and Monday Dec 28 are holidays, Sat/Sun weekend: Friday's run moves to Tuesday
    cal = Calendar("0 2 * * 5", "UTC", holidays=(D(2026, 12, 25), D(2026, 12, 28)), non_business_day="next",
                   weekend=("sat", "sun"))
    assert run_dates_between(cal, D(2026, 12, 21), D(2026, 12, 31)) == [D(2026, 12, 29)]
    assert business_days(cal).longest_closure == 4


def test_without_a_weekend_rule_saturdays_and_sundays_are_business_days():
    cal = Calendar("0 2 * * *", "UTC", non_business_day="skip")
    assert len(run_dates_between(cal, D(2026, 11, 16), D(2026, 11, 22))) == 7
    weekend = Calendar("0 2 * * *", "UTC", non_business_day="skip", weekend=("sat", "sun"))
    assert [d.weekday() for d in run_dates_between(weekend, D(2026, 11, 16), D(2026, 11, 22))] == [0, 1, 2, 3, 4]


def test_the_named_holiday_set_adds_to_the_calendars_own_holidays():
    cal = Calendar("0 2 * * *", "UTC", holidays=(D(2026, 12, 24),), non_business_day="skip")
    dates = run_dates_between(cal, D(2026, 12, 23), D(2026, 12, 26), set_holidays=[D(2026, 12, 25)])
    assert dates == [D(2026, 12, 23), D(2026, 12, 26)]


# ------------------------------------------------------------------ windows (properties)
CRONS = ["0 2 * * *", "30 2 * * *", "0 * * * *", "15 9 * * 1-5", "0 0 1 * *", "0 23 L * *", "*/30 1-3 * * 0,6"]
moments = st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 12, 31), timezones=st.just(UTC))


@settings(max_examples=80, deadline=None)
@given(cron=st.sampled_from(CRONS), tz=st.sampled_from([NY, "Europe/Berlin", "UTC"]), start=moments,
       span=st.integers(0, 40 * 24), cut=st.floats(0, 1))
def test_under_run_dates_are_unique_sorted_and_windows_split_without_gaps_or_overlaps(cron, tz, start, span, cut):
    cal = Calendar(cron, tz)
    end = start + dt.timedelta(hours=span)
    middle = start + (end - start) * cut
    whole = run_dates(cal, start, end)
    assert whole == sorted(set(whole))
    assert run_dates(cal, start, middle) + run_dates(cal, middle, end) == whole
    local = [start.astimezone(ZoneInfo(tz)).date(), end.astimezone(ZoneInfo(tz)).date()]
    assert all(local[0] <= d <= local[1] for d in whole)


@settings(max_examples=80, deadline=None)
@given(cron=st.sampled_from(CRONS), policy=st.sampled_from(["skip", "next", "previous"]), start=moments,
       span=st.integers(0, 30 * 24), holidays=st.lists(st.dates(D(2024, 12, 1), D(2029, 1, 31)), max_size=40),
       weekend=st.sampled_from([(), ("sat", "sun"), ("fri", "sat"), ("sun",)]))
def test_under_a_moving_policy_no_run_date_is_a_non_business_day(cron, policy, start, span, holidays, weekend):
    cal = Calendar(cron, NY, holidays=tuple(sorted(set(holidays))), non_business_day=policy, weekend=weekend)
    end = start + dt.timedelta(hours=span)
    rules = business_days(cal)
    dates = run_dates(cal, start, end)
    assert dates == sorted(set(dates))
    assert all(rules.is_business_day(d) for d in dates)
    middle = start + (end - start) / 2
    assert run_dates(cal, start, middle) + run_dates(cal, middle, end) == dates


def test_a_window_excludes_its_start_and_includes_its_end():
    cal = Calendar("0 2 * * *", "UTC")
    due = at(2026, 11, 24, 2)
    assert run_dates(cal, due, due + dt.timedelta(hours=1)) == []
    assert run_dates(cal, due - dt.timedelta(hours=1), due) == [D(2026, 11, 24)]


def test_a_window_with_naive_datetimes_is_refused():
    with pytest.raises(ValueError, match="no timezone"):
        run_dates(Calendar("0 2 * * *", "UTC"), dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))


# ------------------------------------------------------------------ config
def schedule_doc(**calendar) -> dict:
    return {"client": "acme", "name": "daily", "mode": "automatic", "calendar": {"timezone": NY, **calendar},
            "jobs": [{"name": "rate", "type": "demo.usage_rating"}]}


def test_a_cron_that_never_fires_is_refused_at_apply():
    with pytest.raises(InvalidConfig, match=r"daily.yaml: calendar.cron: '0 0 30 2 \*' never fires"):
        parse_document(schedule_doc(cron="0 0 30 2 *"), "daily.yaml")


def test_a_leap_day_cron_is_accepted():
    assert parse_document(schedule_doc(cron="0 0 29 2 *"), "daily.yaml").calendar.cron == "0 0 29 2 *"


@pytest.mark.parametrize(
    "calendar, field, problem",
    [
        ({"weekend": ["sat", "funday"]}, "calendar.weekend", "'funday' is not a weekday"),
        ({"weekend": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}, "calendar.weekend", "all seven days"),
        ({"holidays": ["2026-02-30"]}, "calendar.holidays.0", "date"),
        ({"holidays": [20261126]}, "calendar.holidays", "is not a date"),
        ({"non_business_day": "later"}, "calendar.non_business_day", "'skip', 'next', 'previous' or 'run'"),
        ({"holiday_set": "US Banks"}, "calendar.holiday_set", "pattern"),
    ],
)
def test_bad_business_day_rules_name_the_file_and_field(calendar, field, problem):
    with pytest.raises(InvalidConfig) as info:
        parse_document(schedule_doc(cron="0 2 * * *", **calendar), "daily.yaml")
    assert info.value.source == "daily.yaml" and info.value.field == field and problem in info.value.problem


def test_a_config_without_business_day_rules_keeps_its_snapshot_and_hash():
    cfg = parse_document(schedule_doc(cron="0 2 * * *"), "daily.yaml")
    old_snapshot = json.dumps({"calendar": {"cron": "0 2 * * *", "timezone": NY}, "client": "acme", "description": "",
                               "jobs": [{"batch_size": 100, "concurrency": 4, "name": "rate", "params": {},
                                         "type": "demo.usage_rating"}], "mode": "automatic", "name": "daily"},
                              sort_keys=True, separators=(",", ":"))
    assert snapshot_json(cfg) == old_snapshot
    assert from_snapshot(old_snapshot, 3).calendar == Calendar("0 2 * * *", NY)
    assert content_hash(from_snapshot(old_snapshot, 3)) == content_hash(cfg)


def test_business_day_rules_survive_snapshot_and_export_round_trips():
    doc = schedule_doc(cron="0 2 * * 1-5", holidays=["2026-12-25", "2026-11-26", "2026-11-26"],
                       holiday_set="us-banks", non_business_day="next", weekend=["Sunday", "sat"])
    cfg = parse_document(doc, "daily.yaml")
    assert cfg.calendar == Calendar("0 2 * * 1-5", NY, (THANKSGIVING, D(2026, 12, 25)), "us-banks", "next",
                                    ("sat", "sun"))
    assert from_snapshot(snapshot_json(cfg), 1).calendar == cfg.calendar
    assert parse_document(yaml.safe_load(to_yaml(cfg)), "export.yaml").calendar == cfg.calendar


# ------------------------------------------------------------------ named holiday sets
def test_holiday_sets_load_from_the_workspace_file(tmp_path):
    (tmp_path / "holidays.yaml").write_text("holiday_sets:\n  us-banks: [2026-12-25, 2026-11-26]\n")
    assert load_holiday_sets(tmp_path) == {"us-banks": (THANKSGIVING, D(2026, 12, 25))}
    cfg = parse_document(schedule_doc(cron="0 2 * * *", holiday_set="us-banks"), "daily.yaml")
    assert holidays_of(tmp_path, cfg) == (THANKSGIVING, D(2026, 12, 25))


def test_an_unknown_holiday_set_names_the_file_and_the_schedule(tmp_path):
    (tmp_path / "holidays.yaml").write_text("holiday_sets:\n  de-banks: [2026-12-25]\n")
    cfg = parse_document(schedule_doc(cron="0 2 * * *", holiday_set="us-banks"), "daily.yaml")
    with pytest.raises(InvalidConfig, match=r"holidays.yaml: holiday_sets.us-banks: no such holiday set, named by "
                                            r"acme/daily calendar.holiday_set \(known: de-banks\)"):
        holidays_of(tmp_path, cfg)


def test_a_bad_date_in_a_holiday_set_names_the_set_and_position(tmp_path):
    (tmp_path / "holidays.yaml").write_text("holiday_sets:\n  us-banks: [2026-12-25, 2026-13-01]\n")
    with pytest.raises(InvalidConfig) as info:
        load_holiday_sets(tmp_path)
    assert info.value.source.endswith("holidays.yaml") and info.value.field == "holiday_sets.us-banks.1"


def test_no_holiday_file_means_no_sets(tmp_path):
    assert load_holiday_sets(tmp_path) == {}


@pytest.mark.parametrize("policy", ["next", "previous"])
def test_a_date_with_its_own_fire_is_not_reported_as_moved_when_a_holiday_lands_on_it_too(policy):
    daily = Calendar("0 2 * * *", NY, holidays=(THANKSGIVING,), non_business_day=policy)
    slots, _ = occurrences(daily, at(2026, 11, 25), at(2026, 11, 28))
    assert [(s.run_date, s.moved_from) for s in slots] == [(D(2026, 11, 25), None), (D(2026, 11, 27), None)]

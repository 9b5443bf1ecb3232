"""Named holiday sets, kept in the workspace file ``<home>/holidays.yaml``::

    holiday_sets:
      us-banks: [2026-11-26, 2026-12-25, 2027-01-01]
      de-banks:
        - 2026-12-24
        - 2026-12-25

A schedule's calendar names one with ``holiday_set: us-banks``; its dates add to the calendar's
own ``holidays``. The file is read when the scheduler or a backfill plans run dates, so editing
it takes effect at the next pass without a new config version. A missing file holds no sets.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .yaml_files import TextDatesLoader, read_mapping
from .errors import InvalidConfig
from .models import ScheduleConfig

__all__ = ["HOLIDAYS_FILE", "load_holiday_sets", "holidays_of"]

HOLIDAYS_FILE = "holidays.yaml"
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class _HolidayFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holiday_sets: dict[str, list[dt.date]] = Field(default_factory=dict)

    @field_validator("holiday_sets", mode="before")
    @classmethod
    def _names_and_dates(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping of set name -> list of dates")
        for name, dates in value.items():
            if not isinstance(name, str) or not re.match(_NAME, name):
                raise ValueError(f"{name!r} is not a valid set name (lowercase letters, digits, - _ .)")
            for item in dates if isinstance(dates, list) else []:
                if not isinstance(item, (dt.date, str)):
                    raise ValueError(f"set {name}: {item!r} is not a date (write YYYY-MM-DD)")
        return value


def load_holiday_sets(home: str | Path) -> dict[str, tuple[dt.date, ...]]:
    """Every named set in ``<home>/holidays.yaml`` (sorted, unique dates); {} when there is no file."""
    path = Path(home) / HOLIDAYS_FILE
    if not path.exists():
        return {}
    source = str(path)
    data = read_mapping(path, "a mapping with holiday_sets", TextDatesLoader)
    try:
        model = _HolidayFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidConfig(source, ".".join(str(p) for p in err["loc"]),
                            err["msg"].removeprefix("Value error, ")) from None
    return {name: tuple(sorted(set(dates))) for name, dates in model.holiday_sets.items()}


def holidays_of(home: str | Path, config: ScheduleConfig) -> tuple[dt.date, ...]:
    """The dates of the schedule's named holiday set (() when it names none)."""
    name = config.calendar.holiday_set
    if not name:
        return ()
    sets = load_holiday_sets(home)
    if name not in sets:
        known = ", ".join(sorted(sets)) or "none"
        raise InvalidConfig(str(Path(home) / HOLIDAYS_FILE), f"holiday_sets.{name}",
                            f"no such holiday set, named by {config.client}/{config.name} calendar.holiday_set "
                            f"(known: {known})")
    return sets[name]

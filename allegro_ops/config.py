"""Schedule configurations: YAML in, validated ScheduleConfig out.

Validation errors name the file, the field and the problem (InvalidConfig); nothing is stored
unless every file of an apply validates.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .calendars import fires_ever
from .errors import InvalidConfig
from .models import Calendar, JobConfig, ScheduleConfig
from .yaml_files import MAX_CONFIG_BYTES, MAX_YAML_VALUES, read_documents  # noqa: F401  (the limits: re-exported)

__all__ = ["load_path", "parse_document", "content_hash", "from_snapshot", "to_yaml"]

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_NAME)
    type: str = Field(min_length=1, max_length=100)
    batch_size: int = Field(default=100, ge=1, le=100_000)
    concurrency: int = Field(default=4, ge=1, le=1024)
    params: dict[str, Any] = Field(default_factory=dict)
    # A hung handler call becomes the error TIMEOUT after this long (per work item / per batch).
    item_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    batch_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    # Accepted errors: a job that ends within them is COMPLETED with errors and the schedule goes on.
    max_errors: int | None = Field(default=None, ge=0)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)

    @field_validator("batch_size", "concurrency", "item_timeout_s", "batch_timeout_s", "max_errors", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        """YAML's true and false are not numbers (pydantic would take them as 1 and 0)."""
        if isinstance(value, bool):
            raise ValueError("expected a number, not true or false")
        return value

    @field_validator("max_error_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        """A fraction (0.005) or a percentage ("0.5%")."""
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                return float(value.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"{value!r} is not a percentage (write e.g. 0.5%)") from None
        if isinstance(value, bool):
            raise ValueError("expected a fraction (0.005) or a percentage (0.5%)")
        return value

    @field_validator("params")
    @classmethod
    def _json_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Params are stored as JSON, so they must be JSON data (quote dates, use text keys)."""
        try:
            same = json.loads(json.dumps(value, sort_keys=True, allow_nan=False)) == value
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ValueError("params must be JSON data: text keys; text, numbers, booleans, null, lists and "
                             "mappings as values (quote dates)")
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        from .jobs import registry

        if value not in registry.names():
            raise ValueError(f"unknown job type {value!r} (known: {', '.join(sorted(registry.names()))})")
        return value


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Calendar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cron: str
    timezone: str = "UTC"
    # Business-day rules (optional; see docs/automation.md). Defaults change nothing.
    holidays: list[dt.date] = Field(default_factory=list, max_length=10_000)
    holiday_set: str | None = Field(default=None, pattern=_NAME)
    non_business_day: Literal["skip", "next", "previous", "run"] = "run"
    weekend: list[str] = Field(default_factory=list)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a 5-field cron expression")
        if not fires_ever(value):
            raise ValueError(f"{value!r} never fires (no matching date within 9 years)")
        return value

    @field_validator("holidays", mode="before")
    @classmethod
    def _dates_only(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else []:
            if not isinstance(item, (dt.date, str)):
                raise ValueError(f"{item!r} is not a date (write YYYY-MM-DD)")
        return value

    @field_validator("weekend", mode="before")
    @classmethod
    def _weekdays(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("expected a list of weekdays, e.g. [sat, sun]")
        days = set()
        full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        for item in value:
            name = item.strip().lower() if isinstance(item, str) else ""
            if name in full:
                name = name[:3]
            if name not in _WEEKDAYS:
                raise ValueError(f"{item!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
            days.add(name)
        if len(days) == 7:
            raise ValueError("a weekend cannot cover all seven days")
        return [d for d in _WEEKDAYS if d in days]

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("Europe"), a name too long
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class _Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client: str = Field(pattern=_NAME)
    name: str = Field(pattern=_NAME)
    description: str = Field(default="", max_length=2000)
    mode: Literal["automatic", "manual"]
    calendar: _Calendar
    jobs: list[_Job] = Field(min_length=1, max_length=200)
    # By when (in the calendar's timezone) an execution must be COMPLETED: "06:00" on the run
    # date, "+1 06:00" on the day after. Past it, the execution is LATE.
    deadline: str | None = Field(default=None, pattern=r"^(\+\d{1,2} )?([01]\d|2[0-3]):[0-5]\d$")

    @model_validator(mode="after")
    def _unique_job_names(self) -> "_Schedule":
        seen: set[str] = set()
        for job in self.jobs:
            if job.name in seen:
                raise ValueError(f"duplicate job name {job.name!r}")
            seen.add(job.name)
        return self


def parse_document(data: Any, source: str) -> ScheduleConfig:
    """Validate one parsed YAML mapping."""
    if not isinstance(data, dict):
        raise InvalidConfig(source, "", "expected a mapping with client, name, mode, calendar and jobs")
    try:
        model = _Schedule.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise InvalidConfig(source, field, msg) from None
    return ScheduleConfig(
        client=model.client,
        name=model.name,
        description=model.description,
        mode=model.mode,
        calendar=Calendar(
            model.calendar.cron,
            model.calendar.timezone,
            tuple(sorted(set(model.calendar.holidays))),
            model.calendar.holiday_set,
            model.calendar.non_business_day,
            tuple(model.calendar.weekend),
        ),
        jobs=tuple(
            JobConfig(j.name, j.type, j.batch_size, j.concurrency, dict(j.params), j.item_timeout_s,
                      j.batch_timeout_s, j.max_errors, j.max_error_rate) for j in model.jobs
        ),
        deadline=model.deadline,
    )


def load_path(path: str | Path) -> list[ScheduleConfig]:
    """Every schedule in a YAML file (one or more documents) or a folder of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise InvalidConfig(str(path), "", "no .yaml or .yml files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise InvalidConfig(str(path), "", "no such file or folder")
    configs: list[ScheduleConfig] = []
    for file in files:
        configs.extend(_load_file(file))
    keys = [(c.client, c.name) for c in configs]
    for key in set(keys):
        if keys.count(key) > 1:
            raise InvalidConfig(str(path), "", f"schedule {key[0]}/{key[1]} is defined more than once")
    return configs


def _load_file(file: Path) -> list[ScheduleConfig]:
    docs = read_documents(file)
    if not docs:
        raise InvalidConfig(str(file), "", "the file holds no schedule")
    return [parse_document(d, str(file)) for d in docs]


def content_hash(config: ScheduleConfig) -> str:
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def _canonical(config: ScheduleConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))


def snapshot_json(config: ScheduleConfig) -> str:
    return _canonical(config)


def from_snapshot(text: str, version: int) -> ScheduleConfig:
    d = json.loads(text)
    return ScheduleConfig(
        client=d["client"],
        name=d["name"],
        description=d["description"],
        mode=d["mode"],
        calendar=Calendar.from_dict(d["calendar"]),
        jobs=tuple(JobConfig(**j) for j in d["jobs"]),
        version=version,
        deadline=d.get("deadline"),
    )


def to_yaml(config: ScheduleConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def is_valid_name(value: str) -> bool:
    return re.match(_NAME, value) is not None

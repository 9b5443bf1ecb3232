"""What Recreate would change: the execution's snapshot against the current config version.

Recreate rebuilds a PENDING execution's jobs from the current config; before it does (in the CLI's
``recreate --dry-run`` and the dashboard's confirmation), operators see the jobs added, removed
and reordered, and every changed setting, parameter by parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .models import ScheduleConfig

__all__ = ["Change", "ConfigDiff", "config_diff"]


@dataclass(frozen=True)
class Change:
    """One setting that differs: where (a job, or the schedule when job is None), which key, from, to."""

    job: str | None
    key: str
    old: Any
    new: Any

    def text(self) -> str:
        where = f"job {self.job}: " if self.job else ""
        return f"{where}{self.key} {_show(self.old)} → {_show(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "key": self.key, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class ConfigDiff:
    from_version: int
    to_version: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    order_before: tuple[str, ...] = ()
    order_after: tuple[str, ...] = ()
    changes: tuple[Change, ...] = field(default_factory=tuple)
    refusal: str | None = None  # why Recreate itself would be refused now (the state table), else None

    @property
    def reordered(self) -> bool:
        """The jobs both versions have run in another order."""
        kept = set(self.order_before) & set(self.order_after)
        return [j for j in self.order_before if j in kept] != [j for j in self.order_after if j in kept]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.reordered or self.changes)

    def lines(self) -> list[str]:
        """One line per difference, for the CLI and the confirmation dialog."""
        if self.empty:
            out = [f"no change: config version {self.to_version} runs the same jobs with the same settings"]
        else:
            out = [f"config version {self.from_version} → {self.to_version}"]
            out += [f"job added: {j}" for j in self.added]
            out += [f"job removed: {j}" for j in self.removed]
            if self.reordered:
                out.append(f"jobs reordered: {' > '.join(self.order_before)} ⇒ {' > '.join(self.order_after)}")
            out += [c.text() for c in self.changes]
        return out + ([f"recreate would be refused now: {self.refusal}"] if self.refusal else [])

    def to_dict(self) -> dict[str, Any]:
        return {"from_version": self.from_version, "to_version": self.to_version, "added": list(self.added),
                "removed": list(self.removed), "reordered": self.reordered,
                "order_before": list(self.order_before), "order_after": list(self.order_after),
                "changes": [c.to_dict() for c in self.changes], "empty": self.empty,
                "allowed": self.refusal is None, "refusal": self.refusal}


def config_diff(old: ScheduleConfig, new: ScheduleConfig, refusal: str | None = None) -> ConfigDiff:
    """The differences that matter to a run, from the snapshot ``old`` to the current ``new``;
    ``refusal``: why Recreate would be refused now, when it would."""
    before, after = [j.name for j in old.jobs], [j.name for j in new.jobs]
    changes: list[Change] = []
    old_s, new_s = old.to_dict(), new.to_dict()
    for key in ("mode", "description", "deadline"):
        if old_s.get(key) != new_s.get(key):
            changes.append(Change(None, key, old_s.get(key), new_s.get(key)))
    changes += _mapping_changes(None, "calendar", old_s["calendar"], new_s["calendar"])
    old_jobs = {j.name: j.to_dict() for j in old.jobs}
    for job in new.jobs:
        if job.name in old_jobs:
            changes += _mapping_changes(job.name, "", old_jobs[job.name], job.to_dict())
    return ConfigDiff(old.version, new.version, tuple(j for j in after if j not in before),
                      tuple(j for j in before if j not in after), tuple(before), tuple(after), tuple(changes), refusal)


def _mapping_changes(job: str | None, prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    out: list[Change] = []
    for key in sorted(set(old) | set(new), key=lambda k: (k == "params", k)):
        if key == "name":
            continue
        name = f"{prefix}.{key}" if prefix else key
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _mapping_changes(job, name, a, b)
        elif a != b:
            out.append(Change(job, name, a, b))
    return out


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value)

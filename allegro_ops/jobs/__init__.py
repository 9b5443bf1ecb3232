"""Job types, registered by name. Third parties register through the entry point group
``allegro_ops.jobs`` (name = "module:Class")."""
from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import NotFound
from .base import ItemInput, JobContext, JobType

__all__ = ["JobType", "JobContext", "ItemInput", "registry", "register"]


class _Registry:
    def __init__(self) -> None:
        self._types: dict[str, type[JobType]] = {}
        self._loaded_entry_points = False

    def register(self, cls: type[JobType]) -> type[JobType]:
        if not cls.name:
            raise ValueError(f"{cls.__name__} has no name")
        self._types[cls.name] = cls
        return cls

    def names(self) -> set[str]:
        self._load_entry_points()
        return set(self._types)

    def get(self, name: str) -> JobType:
        self._load_entry_points()
        try:
            return self._types[name]()
        except KeyError:
            raise NotFound("job type", name, f"known: {', '.join(sorted(self._types))}") from None

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group="allegro_ops.jobs"):
            cls = ep.load()
            self._types[getattr(cls, "name", "") or ep.name] = cls


registry = _Registry()
register = registry.register

from . import demo, http  # noqa: E402,F401  (built-in job types register themselves)

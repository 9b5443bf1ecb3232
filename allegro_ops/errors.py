"""Typed errors. Every error the engine raises on purpose derives from AllegroOpsError.

The CLI maps the classes to exit codes (``exit_code``) and prints ``str(error)`` as one line;
widgets show the same line on the page. Structured fields let callers react without parsing text.
"""
from __future__ import annotations

__all__ = [
    "AllegroOpsError",
    "BadInput",
    "NotFound",
    "InvalidConfig",
    "ActionRefused",
    "StoreBusy",
    "WorkItemError",
]


class AllegroOpsError(Exception):
    """Root of the project's errors."""

    exit_code = 1


class BadInput(AllegroOpsError):
    """The caller asked for something malformed (a bad date, an unknown name)."""

    exit_code = 2


class NotFound(BadInput):
    """An unknown client, schedule, job or error code."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"unknown {kind} {name!r}" + (f"; {hint}" if hint else ""))


class InvalidConfig(BadInput):
    """A schedule configuration that does not validate; names the file, the field and the problem."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"invalid config {where}: {problem}")


class ActionRefused(AllegroOpsError):
    """The state rules do not allow this action now; the message says why."""

    exit_code = 3

    def __init__(
        self,
        action: str,
        reason: str,
        *,
        client: str = "",
        schedule: str = "",
        run_date: str = "",
        job: str | None = None,
        status: str = "",
    ) -> None:
        self.action = action
        self.reason = reason
        self.client = client
        self.schedule = schedule
        self.run_date = run_date
        self.job = job
        self.status = status
        super().__init__(f"{action} refused: {reason}")


class StoreBusy(AllegroOpsError):
    """The database file stayed locked by another process past the wait timeout."""

    def __init__(self, path: str, waited: float) -> None:
        self.path = path
        self.waited = waited
        super().__init__(
            f"database {path} is locked by another process; gave up after {waited:.1f}s "
            "(raise ALLEGRO_OPS_LOCK_TIMEOUT to wait longer)"
        )


class WorkItemError(Exception):
    """Raised by a job type's handler to fail one work item with an error code and reason.

    Not an AllegroOpsError: it is an outcome of a work item, recorded, never shown as a failure
    of the command that ran it.
    """

    def __init__(self, error_code: str, reason: str) -> None:
        self.error_code = error_code
        self.reason = reason
        super().__init__(f"{error_code}: {reason}")

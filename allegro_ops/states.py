"""Statuses and the one table that decides which action is allowed in which state.

The engine, the CLI and the widgets all ask this module; nothing else decides enablement.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ExecutionStatus",
    "JobStatus",
    "WorkItemStatus",
    "Phase",
    "Role",
    "ScheduleAction",
    "JobAction",
    "phase_of",
    "schedule_actions",
    "job_actions",
    "refusal",
    "job_refusal",
    "role_refusal",
    "derive_execution_status",
]


class ExecutionStatus(str, Enum):
    NOT_CREATED = "NOT_CREATED"
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    ERRORED = "ERRORED"


class JobStatus(str, Enum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    ERRORED = "ERRORED"


class WorkItemStatus(str, Enum):
    PENDING = "PENDING"
    PROCESSED = "PROCESSED"
    ERROR = "ERROR"


class Phase(str, Enum):
    """An execution status refined by whether a live process owns the run."""

    NOT_CREATED = "NOT_CREATED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"  # IN_PROGRESS and its owner is alive
    STALLED = "STALLED"  # IN_PROGRESS and its owner is gone: Process resumes it
    COMPLETED = "COMPLETED"
    ERRORED = "ERRORED"


class Role(str, Enum):
    """Who is acting: a viewer sees everything and may do nothing; an operator may act."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class ScheduleAction(str, Enum):
    CREATE = "create"
    RECREATE = "recreate"
    PROCESS = "process"
    REPROCESS = "reprocess"
    RESET = "reset"


class JobAction(str, Enum):
    PROCESS = "job process"
    RETRY = "job retry"  # every errored work item of the job, or those of one error code
    ITEM_RETRY = "item retry"  # one errored work item, its payload corrected or not
    STATS = "job stats"


@dataclass(frozen=True)
class _Rule:
    phases: frozenset[Phase]
    needs: str  # what the refusal message says the action needs
    needs_errored_job: bool = False
    needs_a_run: bool = False  # refused on a PENDING execution nothing ran in (it would change nothing)
    needs_newer_config: bool = False  # refused when the execution already runs the current config version


def _rule(phases: set[Phase], needs: str, needs_errored_job: bool = False, needs_a_run: bool = False,
          needs_newer_config: bool = False) -> _Rule:
    return _Rule(frozenset(phases), needs, needs_errored_job, needs_a_run, needs_newer_config)


P = Phase
# The table. A schedule action is allowed when the execution's phase is listed and, where
# marked, a job of the execution is ERRORED.
SCHEDULE_RULES: dict[ScheduleAction, _Rule] = {
    ScheduleAction.CREATE: _rule({P.NOT_CREATED}, "NOT_CREATED"),
    ScheduleAction.RECREATE: _rule({P.PENDING}, "PENDING", needs_newer_config=True),
    ScheduleAction.PROCESS: _rule({P.PENDING, P.STALLED}, "PENDING, or IN_PROGRESS with its owner lost"),
    ScheduleAction.REPROCESS: _rule(
        {P.ERRORED, P.STALLED}, "ERRORED, or an errored job and no live run", needs_errored_job=True
    ),
    ScheduleAction.RESET: _rule(
        {P.PENDING, P.STALLED, P.COMPLETED, P.ERRORED}, "a created execution with no live run", needs_a_run=True,
    ),
}

# Job actions: allowed job statuses, the execution phases in which they may run, what the refusal
# says they need, and whether a COMPLETED job with errored work items (accepted errors) qualifies.
_J = JobStatus
_JOB_PHASES = frozenset({P.PENDING, P.STALLED, P.COMPLETED, P.ERRORED})
_RETRY_NEEDS = "an ERRORED job, or a COMPLETED one with errored work items"
JOB_RULES: dict[JobAction, tuple[frozenset[JobStatus], frozenset[Phase], str, bool]] = {
    JobAction.PROCESS: (frozenset({_J.PENDING}), _JOB_PHASES, "a PENDING job", False),
    JobAction.RETRY: (frozenset({_J.ERRORED}), _JOB_PHASES, _RETRY_NEEDS, True),
    JobAction.ITEM_RETRY: (frozenset({_J.ERRORED}), _JOB_PHASES, _RETRY_NEEDS, True),
    JobAction.STATS: (frozenset(JobStatus), frozenset(Phase) - {P.NOT_CREATED}, "a created job", False),
}


def phase_of(status: ExecutionStatus, owner_alive: bool) -> Phase:
    if status is ExecutionStatus.IN_PROGRESS:
        return Phase.RUNNING if owner_alive else Phase.STALLED
    return Phase(status.value)


# Actions a viewer may take: the ones that only read.
READ_ONLY_ACTIONS = frozenset({JobAction.STATS.value, "backup", "export"})


def role_refusal(role: Role, action: str) -> str | None:
    """None when the role may take the action; else the reason (the first check of every rule)."""
    action = getattr(action, "value", action)
    if role is Role.VIEWER and action not in READ_ONLY_ACTIONS:
        return f"role viewer may not {action}; only an operator may act (ALLEGRO_OPS_ROLE, access.yaml)"
    return None


def schedule_actions(phase: Phase, has_errored_job: bool, role: Role = Role.OPERATOR, has_run: bool = True,
                     runs_current_config: bool = False) -> dict[ScheduleAction, bool]:
    """Every schedule action and whether it is enabled now, for this role."""
    return {a: refusal(a, phase, has_errored_job, role=role, has_run=has_run,
                       runs_current_config=runs_current_config) is None for a in ScheduleAction}


def refusal(
    action: ScheduleAction, phase: Phase, has_errored_job: bool, execution: str = "execution",
    role: Role = Role.OPERATOR, has_run: bool = True, runs_current_config: bool = False,
) -> str | None:
    """None when allowed; else the reason, phrased for '<action> refused: <reason>'.

    ``execution`` names the execution in the reason (e.g. "execution acme/daily-billing 2026-11-24").
    ``has_run``: whether anything ran in it since it was created, reset or recreated (a Reset of a
    PENDING execution that never ran changes nothing, and N operators resetting at once would
    otherwise make N generations). ``runs_current_config``: its snapshot is the current config
    version (a Recreate would rebuild the same jobs)."""
    if (why := role_refusal(role, action)) is not None:
        return why
    rule = SCHEDULE_RULES[action]
    if phase not in rule.phases:
        return f"{execution} is {_describe(phase)}; {action.value} needs {rule.needs}"
    if rule.needs_errored_job and not has_errored_job:
        return f"{execution} is {_describe(phase)} and no job is ERRORED; {action.value} needs {rule.needs}"
    if rule.needs_a_run and phase is Phase.PENDING and not has_run:
        return (f"{execution} is PENDING and nothing ran in it since it was created or reset; "
                f"{action.value} needs a run to undo")
    if rule.needs_newer_config and runs_current_config:
        return (f"{execution} is PENDING and already runs the current config version; "
                f"{action.value} needs a newer config version (config apply)")
    return None


def job_actions(job_status: JobStatus, phase: Phase, role: Role = Role.OPERATOR,
                errors: int = 0) -> dict[JobAction, bool]:
    return {a: job_refusal(a, job_status, phase, role=role, errors=errors) is None for a in JobAction}


def job_refusal(
    action: JobAction, job_status: JobStatus, phase: Phase, execution: str = "execution", job: str = "job",
    role: Role = Role.OPERATOR, errors: int = 0,
) -> str | None:
    """None when allowed; else the reason, naming the execution or the job that stands in the way.
    ``errors``: the job's errored work items (a COMPLETED job may have accepted some)."""
    if (why := role_refusal(role, action)) is not None:
        return why
    statuses, phases, needs, completed_with_errors = JOB_RULES[action]
    if phase is Phase.NOT_CREATED:
        return f"{execution} is NOT_CREATED; {action.value} needs a created execution"
    if phase not in phases:
        return f"{execution} is {_describe(phase)}; {action.value} needs no live run"
    if job_status in statuses or (completed_with_errors and job_status is JobStatus.COMPLETED and errors > 0):
        return None
    if job_status is JobStatus.COMPLETED and completed_with_errors:
        return f"{job} is COMPLETED with no errored work item; {action.value} needs {needs}"
    return f"{job} is {job_status.value}; {action.value} needs {needs}"


def derive_execution_status(job_statuses: list[JobStatus]) -> ExecutionStatus:
    """The execution's status when no run holds it, from its jobs' statuses."""
    if any(s is JobStatus.IN_PROGRESS for s in job_statuses):
        return ExecutionStatus.IN_PROGRESS
    if any(s is JobStatus.ERRORED for s in job_statuses):
        return ExecutionStatus.ERRORED
    if job_statuses and all(s is JobStatus.COMPLETED for s in job_statuses):
        return ExecutionStatus.COMPLETED
    return ExecutionStatus.PENDING


def _describe(phase: Phase) -> str:
    if phase is Phase.RUNNING:
        return "IN_PROGRESS (a live run owns it)"
    if phase is Phase.STALLED:
        return "IN_PROGRESS (owner lost)"
    return phase.value

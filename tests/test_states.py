"""The state table: which schedule and job action is allowed in which state, and what a refusal says.

The expected matrices below are written by hand from the rules, not derived from states.py:

- Create only NOT_CREATED; Recreate only PENDING; Process only PENDING or STALLED (IN_PROGRESS,
  owner lost); Reprocess only ERRORED or STALLED and some job ERRORED; Reset any created state
  with no live run.
- Job Process only a PENDING job and no live run; Job Retry only an ERRORED job and no live run.
"""
from __future__ import annotations

import itertools

import pytest

from allegro_ops.states import (
    ExecutionStatus,
    JobAction,
    JobStatus,
    Phase,
    ScheduleAction,
    derive_execution_status,
    job_actions,
    job_refusal,
    phase_of,
    refusal,
    schedule_actions,
)

CREATE, RECREATE, PROCESS, REPROCESS, RESET = (
    ScheduleAction.CREATE, ScheduleAction.RECREATE, ScheduleAction.PROCESS, ScheduleAction.REPROCESS,
    ScheduleAction.RESET,
)
NAME = "execution acme/daily-billing 2026-11-24"

# (phase, some job ERRORED) -> the schedule actions allowed
ALLOWED: dict[tuple[Phase, bool], set[ScheduleAction]] = {
    (Phase.NOT_CREATED, False): {CREATE},
    (Phase.NOT_CREATED, True): {CREATE},
    (Phase.PENDING, False): {RECREATE, PROCESS, RESET},
    (Phase.PENDING, True): {RECREATE, PROCESS, RESET},
    (Phase.RUNNING, False): set(),
    (Phase.RUNNING, True): set(),
    (Phase.STALLED, False): {PROCESS, RESET},
    (Phase.STALLED, True): {PROCESS, REPROCESS, RESET},
    (Phase.COMPLETED, False): {RESET},
    (Phase.COMPLETED, True): {RESET},
    (Phase.ERRORED, False): {RESET},
    (Phase.ERRORED, True): {REPROCESS, RESET},
}

# How a refusal names each action's need.
NEEDS = {
    CREATE: "create needs NOT_CREATED",
    RECREATE: "recreate needs PENDING",
    PROCESS: "process needs PENDING, or IN_PROGRESS with its owner lost",
    REPROCESS: "reprocess needs ERRORED, or an errored job and no live run",
    RESET: "reset needs a created execution with no live run",
}

# How a refusal describes the phase the execution is in.
DESCRIBED = {
    Phase.NOT_CREATED: "NOT_CREATED",
    Phase.PENDING: "PENDING",
    Phase.RUNNING: "IN_PROGRESS (a live run owns it)",
    Phase.STALLED: "IN_PROGRESS (owner lost)",
    Phase.COMPLETED: "COMPLETED",
    Phase.ERRORED: "ERRORED",
}

SCHEDULE_CASES = [
    pytest.param(phase, errored, action, action in ALLOWED[(phase, errored)],
                 id=f"{action.value}-{phase.value}-{'errored_job' if errored else 'no_errored_job'}")
    for (phase, errored), action in itertools.product(ALLOWED, ScheduleAction)
]


def test_the_expected_matrix_covers_every_phase_with_and_without_an_errored_job():
    assert set(ALLOWED) == set(itertools.product(Phase, (False, True)))


@pytest.mark.parametrize("phase, errored, action, allowed", SCHEDULE_CASES)
def test_schedule_action_is_allowed_only_where_the_rules_say(phase, errored, action, allowed):
    reason = refusal(action, phase, errored, NAME)
    assert (reason is None) is allowed
    assert schedule_actions(phase, errored)[action] is allowed


@pytest.mark.parametrize(
    "phase, errored, action",
    [c.values[:3] for c in SCHEDULE_CASES if not c.values[3]],
)
def test_schedule_refusal_names_the_execution_its_state_and_what_the_action_needs(phase, errored, action):
    reason = refusal(action, phase, errored, NAME)
    assert reason.startswith(f"{NAME} is {DESCRIBED[phase]}")
    assert reason.endswith(NEEDS[action])
    assert "\n" not in reason


def test_reprocess_refusal_in_an_allowed_phase_says_no_job_is_errored():
    assert refusal(REPROCESS, Phase.ERRORED, False, NAME) == (
        f"{NAME} is ERRORED and no job is ERRORED; {NEEDS[REPROCESS]}"
    )


def test_recreate_refusal_reads_as_one_line_for_the_operator():
    assert refusal(RECREATE, Phase.COMPLETED, False, NAME) == f"{NAME} is COMPLETED; recreate needs PENDING"


def test_schedule_actions_lists_every_schedule_action():
    for phase, errored in ALLOWED:
        assert set(schedule_actions(phase, errored)) == set(ScheduleAction)


# ------------------------------------------------------------------ job actions
JOB_PROCESS, JOB_RETRY = JobAction.PROCESS, JobAction.RETRY
NO_LIVE_RUN = {Phase.PENDING, Phase.STALLED, Phase.COMPLETED, Phase.ERRORED}

# (job status, execution phase) -> the job actions allowed (for a created execution)
JOB_ALLOWED: dict[tuple[JobStatus, Phase], set[JobAction]] = {
    (JobStatus.PENDING, Phase.PENDING): {JOB_PROCESS},
    (JobStatus.PENDING, Phase.RUNNING): set(),
    (JobStatus.PENDING, Phase.STALLED): {JOB_PROCESS},
    (JobStatus.PENDING, Phase.COMPLETED): {JOB_PROCESS},
    (JobStatus.PENDING, Phase.ERRORED): {JOB_PROCESS},
    (JobStatus.IN_PROGRESS, Phase.PENDING): set(),
    (JobStatus.IN_PROGRESS, Phase.RUNNING): set(),
    (JobStatus.IN_PROGRESS, Phase.STALLED): set(),
    (JobStatus.IN_PROGRESS, Phase.COMPLETED): set(),
    (JobStatus.IN_PROGRESS, Phase.ERRORED): set(),
    (JobStatus.COMPLETED, Phase.PENDING): set(),
    (JobStatus.COMPLETED, Phase.RUNNING): set(),
    (JobStatus.COMPLETED, Phase.STALLED): set(),
    (JobStatus.COMPLETED, Phase.COMPLETED): set(),
    (JobStatus.COMPLETED, Phase.ERRORED): set(),
    (JobStatus.ERRORED, Phase.PENDING): {JOB_RETRY},
    (JobStatus.ERRORED, Phase.RUNNING): set(),
    (JobStatus.ERRORED, Phase.STALLED): {JOB_RETRY},
    (JobStatus.ERRORED, Phase.COMPLETED): {JOB_RETRY},
    (JobStatus.ERRORED, Phase.ERRORED): {JOB_RETRY},
}
JOB_NEEDS = {JOB_PROCESS: "job process needs a PENDING job",
             JOB_RETRY: "job retry needs an ERRORED job, or a COMPLETED one with errored work items"}
JOB = f"job bill-run of {NAME}"

JOB_CASES = [
    pytest.param(status, phase, action, action in JOB_ALLOWED[(status, phase)],
                 id=f"{action.value.replace(' ', '_')}-{status.value}-job-{phase.value}")
    for (status, phase), action in itertools.product(JOB_ALLOWED, (JOB_PROCESS, JOB_RETRY))
]


def test_the_expected_job_matrix_covers_every_job_status_in_every_created_phase():
    created = set(Phase) - {Phase.NOT_CREATED}
    assert set(JOB_ALLOWED) == set(itertools.product(JobStatus, created))


@pytest.mark.parametrize("status, phase, action, allowed", JOB_CASES)
def test_job_action_is_allowed_only_where_the_rules_say(status, phase, action, allowed):
    assert (job_refusal(action, status, phase, NAME, JOB) is None) is allowed
    assert job_actions(status, phase)[action] is allowed


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("action", [JOB_PROCESS, JOB_RETRY])
def test_job_action_during_a_live_run_is_refused_because_the_run_owns_the_execution(action, status):
    reason = job_refusal(action, status, Phase.RUNNING, NAME, JOB)
    assert reason == f"{NAME} is IN_PROGRESS (a live run owns it); {action.value} needs no live run"


@pytest.mark.parametrize("status, phase, action",
                         [c.values[:3] for c in JOB_CASES if not c.values[3] and c.values[1] in NO_LIVE_RUN])
def test_job_refusal_without_a_live_run_names_the_job_its_status_and_what_the_action_needs(status, phase, action):
    said = "COMPLETED with no errored work item" if (action, status) == (JOB_RETRY, JobStatus.COMPLETED) else status.value
    assert job_refusal(action, status, phase, NAME, JOB) == f"{JOB} is {said}; {JOB_NEEDS[action]}"


@pytest.mark.parametrize("action", [JOB_RETRY, JobAction.ITEM_RETRY])
def test_retry_is_allowed_on_a_completed_job_only_when_it_accepted_errors(action):
    assert job_refusal(action, JobStatus.COMPLETED, Phase.COMPLETED, NAME, JOB, errors=3) is None
    assert job_actions(JobStatus.COMPLETED, Phase.COMPLETED, errors=3)[action] is True
    assert job_actions(JobStatus.COMPLETED, Phase.COMPLETED, errors=0)[action] is False
    assert job_refusal(action, JobStatus.PENDING, Phase.PENDING, NAME, JOB, errors=3) is not None


@pytest.mark.parametrize("action", [JOB_PROCESS, JOB_RETRY])
def test_job_action_on_an_execution_not_created_says_it_needs_a_created_execution(action):
    reason = job_refusal(action, JobStatus.PENDING, Phase.NOT_CREATED, NAME, JOB)
    assert reason == f"{NAME} is NOT_CREATED; {action.value} needs a created execution"


def test_job_stats_is_available_for_every_job_of_a_created_execution():
    for status, phase in JOB_ALLOWED:
        assert job_actions(status, phase)[JobAction.STATS] is True
    assert job_actions(JobStatus.PENDING, Phase.NOT_CREATED)[JobAction.STATS] is False


# ------------------------------------------------------------------ phases and derived status
@pytest.mark.parametrize(
    "status, owner_alive, phase",
    [
        (ExecutionStatus.NOT_CREATED, False, Phase.NOT_CREATED),
        (ExecutionStatus.PENDING, False, Phase.PENDING),
        (ExecutionStatus.PENDING, True, Phase.PENDING),
        (ExecutionStatus.IN_PROGRESS, True, Phase.RUNNING),
        (ExecutionStatus.IN_PROGRESS, False, Phase.STALLED),
        (ExecutionStatus.COMPLETED, False, Phase.COMPLETED),
        (ExecutionStatus.ERRORED, False, Phase.ERRORED),
    ],
)
def test_phase_tells_a_live_run_from_one_whose_owner_is_lost(status, owner_alive, phase):
    assert phase_of(status, owner_alive) is phase


P, IP, C, E = JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.ERRORED


@pytest.mark.parametrize(
    "jobs, expected",
    [
        ([P, P, P], ExecutionStatus.PENDING),
        ([C, P, P], ExecutionStatus.PENDING),
        ([C, C, C], ExecutionStatus.COMPLETED),
        ([C, E, P], ExecutionStatus.ERRORED),
        ([C, C, E], ExecutionStatus.ERRORED),
        ([C, IP, P], ExecutionStatus.IN_PROGRESS),
        ([C, E, IP], ExecutionStatus.IN_PROGRESS),
        ([], ExecutionStatus.PENDING),
    ],
)
def test_execution_status_follows_from_its_jobs(jobs, expected):
    assert derive_execution_status(jobs) is expected

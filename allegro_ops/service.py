"""The service API: one method per operator action. The CLI, the widgets and the notebooks call
this and nothing deeper. Every action is checked against the state table, audited, and raises a
typed error when refused or malformed."""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import lease
from .access import Access, resolve_access
from .dates import MAX_DATE, MIN_DATE, parse_date, utc_now  # noqa: F401  (MIN/MAX_DATE: re-exported)
from .deadlines import deadline_at, is_late
from .engine import Engine, RunMode, Selection
from .errors import ActionRefused, AllegroOpsError, BadInput, NotFound
from .models import Execution, JobRun, Lease, ScheduleConfig, ScheduleSummary
from .notify import after_run
from .preview import ConfigDiff, config_diff
from .service_reads import WorkspaceReads
from .service_reads import name_of as _name
from .states import (
    ExecutionStatus, JobAction, JobStatus, Phase, Role, ScheduleAction, job_actions, job_refusal, phase_of,
    refusal, role_refusal, schedule_actions,
)
from .store import DB_FILENAME, Store
from .store import catalog as cat_sql
from .store import executions as ex_sql
from .store import work_items as wi_sql

__all__ = ["Workspace", "parse_date", "utc_now"]

Clock = Callable[[], dt.datetime]


class Workspace(WorkspaceReads):
    """A workspace folder: the DuckDB file and runs/. Cheap to build; holds no open connection.

    The actor (who the audit log names) and the role (viewer or operator) come from the
    environment and <home>/access.yaml (allegro_ops/access.py); ``role`` given here wins, for
    code that runs with a fixed role (tests, embedded use)."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        clock: Clock | None = None,
        actor: str | None = None,
        role: Role | str | None = None,
        lock_timeout: float | None = None,
        executor: str = "local",
    ) -> None:
        self.home = Path(home if home is not None else os.environ.get("ALLEGRO_OPS_HOME", ".")).resolve()
        self.store = Store(self.home / DB_FILENAME, lock_timeout=lock_timeout)
        self.clock: Clock = clock or utc_now
        access = resolve_access(self.home, actor=actor)
        if role is not None:
            access = Access(access.actor, access.user, Role(role), "given by the caller")
        self.access = access
        self.actor, self.role = access.actor, access.role
        self.engine = Engine(self.store, self.clock, executor)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    # ----------------------------------------------------------------- configurations
    def apply_config(self, path: str | Path) -> list[dict[str, Any]]:
        """Validate every schedule under path, then store a new version of each that changed."""
        self.authorize("config apply", str(path))
        configs = config_mod.load_path(path)
        now = self.clock()

        def write(con):
            applied = []
            for cfg in configs:
                latest = cat_sql.latest_config(con, cfg.client, cfg.name)
                digest = config_mod.content_hash(cfg)
                if latest and latest[1] == digest:
                    applied.append({"client": cfg.client, "schedule": cfg.name, "version": latest[0], "changed": False})
                    continue
                version = (latest[0] if latest else 0) + 1
                cat_sql.insert_config_version(con, cfg.client, cfg.name, version, digest,
                                              config_mod.snapshot_json(cfg), now, self.actor)
                applied.append({"client": cfg.client, "schedule": cfg.name, "version": version, "changed": True})
            for a in applied:
                cat_sql.append_audit(con, time=now, actor=self.actor, action="config apply", client=a["client"],
                                     target=f"{a['client']}/{a['schedule']}",
                                     outcome=f"version {a['version']}" + ("" if a["changed"] else " (unchanged)"))
            return applied

        return self.store.write(write)

    def schedules(self, client: str | None = None) -> list[ScheduleSummary]:
        rows = self.store.read(lambda con: cat_sql.list_latest_configs(con, client))
        out = []
        for version, text in rows:
            cfg = config_mod.from_snapshot(text, version)
            out.append(ScheduleSummary(cfg.client, cfg.name, cfg.mode, cfg.calendar.cron, cfg.calendar.timezone,
                                       version, tuple(j.name for j in cfg.jobs), cfg.description))
        if client is not None and not out:
            raise NotFound("client", client)
        return out

    def config(self, client: str, schedule: str) -> ScheduleConfig:
        """The current configuration version of a schedule."""
        return self.store.read(lambda con: self._config(con, client, schedule))

    def _config(self, con, client: str, schedule: str) -> ScheduleConfig:
        """The current config, read in the caller's unit of work (a read is one connection)."""
        row = cat_sql.latest_config(con, client, schedule)
        if row is None:
            self._raise_unknown(client, schedule)  # opens its own connection; only on a user mistake
        return config_mod.from_snapshot(row[2], row[0])

    def export_config(self, client: str, schedule: str) -> str:
        return config_mod.to_yaml(self.config(client, schedule))

    # ----------------------------------------------------------------- reading an execution
    def execution(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        day = parse_date(run_date)
        return self.store.read(lambda con: self._execution(con, self._config(con, client, schedule), day))

    def _execution(self, con, current: ScheduleConfig, day: dt.date) -> Execution:
        row = ex_sql.find_execution(con, current.client, current.name, day)
        if row is None:
            phase = Phase.NOT_CREATED
            return Execution(current.client, current.name, day, ExecutionStatus.NOT_CREATED, phase, None, current,
                             (), schedule_actions(phase, False, self.role), role=self.role)
        jobs = ex_sql.jobs_of(con, row.execution_id, row.generation)
        now = self.clock()
        alive = lease.owner_alive(row.lease_token, row.lease_host, row.lease_pid, row.lease_heartbeat, now)
        status = ExecutionStatus(row.status)
        phase = phase_of(status, alive)
        has_errored = any(j.status == JobStatus.ERRORED.value for j in jobs)
        runs = tuple(
            JobRun(j.name, j.sequence, j.type, JobStatus(j.status), j.total, j.pending, j.processed, j.error,
                   j.started_at, j.finished_at, job_actions(JobStatus(j.status), phase, self.role, j.error))
            for j in jobs
        )
        owner = None
        if row.lease_token:
            owner = Lease(row.lease_host or "", row.lease_pid or 0, row.lease_heartbeat, alive)
        snapshot = config_mod.from_snapshot(row.snapshot_json, row.config_version)
        return Execution(row.client, row.schedule, row.run_date, status, phase, row.config_version, snapshot, runs,
                         schedule_actions(phase, has_errored, self.role, row.started_at is not None,
                                          row.config_version == current.version), row.generation, owner,
                         row.created_at, row.started_at, row.finished_at, role=self.role,
                         deadline=deadline_at(snapshot, row.run_date), current_version=current.version,
                         late=is_late(snapshot, row.run_date, status.value, now))

    # ----------------------------------------------------------------- schedule actions
    def create(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        """Create the date's execution from the current config version; all jobs PENDING."""
        day = parse_date(run_date)
        cfg = self.config(client, schedule)
        action = ScheduleAction.CREATE

        def write(con):
            row = ex_sql.find_execution(con, client, schedule, day)
            created = None
            if row is None:
                created = ex_sql.insert_execution(con, client, schedule, day, cfg.version,
                                                  config_mod.snapshot_json(cfg), self.clock())
            if created is None:  # the date has an execution (possibly created by a racing process just now)
                row = ex_sql.find_execution(con, client, schedule, day)
                jobs = ex_sql.jobs_of(con, row.execution_id, row.generation)
                reason = refusal(action, self._phase(row), any(j.status == JobStatus.ERRORED.value for j in jobs),
                                 _name(client, schedule, day))
                raise self._refused(action, reason, client, schedule, day, status=row.status)
            ex_sql.insert_jobs(con, created, 1, _job_rows(cfg))

        self._audited(action.value, client, schedule, day, None, lambda: self.store.write(write))
        return self.execution(client, schedule, day)

    def recreate(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        """Rebuild a PENDING execution's jobs from the current config version (the old ones are archived)."""
        return self._new_generation(ScheduleAction.RECREATE, client, schedule, run_date)

    def recreate_preview(self, client: str, schedule: str, run_date: str | dt.date) -> ConfigDiff:
        """What Recreate would change: the execution's snapshot against the current config version.
        Reading only; a date that Recreate refuses gets the refusal here too."""
        day = parse_date(run_date)

        def read(con):
            current = self._config(con, client, schedule)
            row = ex_sql.find_execution(con, client, schedule, day)
            if row is None:
                reason = refusal(ScheduleAction.RECREATE, Phase.NOT_CREATED, False, _name(client, schedule, day))
                raise self._refused(ScheduleAction.RECREATE, reason, client, schedule, day,
                                    status=ExecutionStatus.NOT_CREATED.value)
            jobs = ex_sql.jobs_of(con, row.execution_id, row.generation)
            why = self._schedule_refusal(con, ScheduleAction.RECREATE, row, jobs, client, schedule, day)
            return config_diff(config_mod.from_snapshot(row.snapshot_json, row.config_version), current, why)

        return self.store.read(read)

    def reset(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        """Back to PENDING with fresh jobs from the execution's own snapshot; work items are archived."""
        return self._new_generation(ScheduleAction.RESET, client, schedule, run_date)

    def _new_generation(self, action: ScheduleAction, client, schedule, run_date) -> Execution:
        day = parse_date(run_date)
        current = self.config(client, schedule)

        def write(con):
            row, _ = self._check(con, action, client, schedule, day)
            now = self.clock()
            ex_sql.archive_generation(con, row, now, self.actor, action.value)
            cfg = current if action is ScheduleAction.RECREATE else config_mod.from_snapshot(row.snapshot_json, row.config_version)
            generation = row.generation + 1
            ex_sql.set_execution(con, row.execution_id, generation=generation, config_version=cfg.version,
                                 snapshot_json=config_mod.snapshot_json(cfg), status="PENDING",
                                 started_at=None, finished_at=None, lease_token=None, lease_host=None,
                                 lease_pid=None, lease_heartbeat=None)
            ex_sql.insert_jobs(con, row.execution_id, generation, _job_rows(cfg))

        self._audited(action.value, client, schedule, day, None, lambda: self.store.write(write))
        return self.execution(client, schedule, day)

    def process(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        """Run the PENDING jobs in sequence (or resume a run whose owner died); pause at an error."""
        return self._run(ScheduleAction.PROCESS, RunMode.PROCESS, client, schedule, run_date)

    def reprocess(self, client: str, schedule: str, run_date: str | dt.date) -> Execution:
        """Re-run the first errored job's errored work items; if it completes, run the rest."""
        return self._run(ScheduleAction.REPROCESS, RunMode.REPROCESS, client, schedule, run_date)

    def process_job(self, client: str, schedule: str, run_date: str | dt.date, job: str) -> Execution:
        """Run one PENDING job now."""
        return self._run(JobAction.PROCESS, RunMode.JOB_PROCESS, client, schedule, run_date, job)

    def retry_job(self, client: str, schedule: str, run_date: str | dt.date, job: str, *,
                  code: str | None = None) -> Execution:
        """Re-run a job's errored work items (only those of one error code when given); if the job
        then has no errors left, the paused jobs after it run."""
        if code is not None and not str(code).strip():
            raise BadInput("bad error code: empty")

        def select(con, jobs) -> Selection:
            if code is None:
                return Selection()
            job_id = next(j.job_id for j in jobs if j.name == job)
            if code not in {c for c, _ in wi_sql.errors_by_code(con, job_id)}:
                raise NotFound("error code", code, f"job {job} has no errored work item with it")
            return Selection(error_code=code)

        target = f" code {code}" if code is not None else ""
        return self._run(JobAction.RETRY, RunMode.JOB_RETRY, client, schedule, run_date, job, select, target)

    def retry_item(self, client: str, schedule: str, run_date: str | dt.date, job: str, account_id: str, *,
                   payload: str | None = None) -> Execution:
        """Re-run one errored work item alone, first giving it a corrected payload (JSON text) when
        one is given; the earlier payload stays in its history. If the job then has no errors left,
        the paused jobs after it run."""
        text = None if payload is None else _payload_text(payload)
        edits: list[tuple[int, str]] = []

        def select(con, jobs) -> Selection:
            edits.clear()  # the write path may run this again after a conflict
            job_id = next(j.job_id for j in jobs if j.name == job)
            found = wi_sql.find_item(con, job_id, account_id)
            if found is None:
                raise NotFound("work item", account_id, f"job {job} has no work item of this account")
            item_no, status, _code, old = found
            if status != "ERROR":
                raise self._refused(JobAction.ITEM_RETRY, f"work item {account_id} of job {job} is {status}; "
                                    "item retry needs an errored work item", client, schedule, parse_date(run_date),
                                    job)
            if text is not None and text != old:
                edits.append((wi_sql.edit_payload(con, job_id, item_no, text, self.clock(), self.actor), old))
            return Selection(item_no=item_no)

        try:
            return self._run(JobAction.ITEM_RETRY, RunMode.JOB_RETRY, client, schedule, run_date, job, select,
                             f" account {account_id}")
        finally:
            for edit_no, old in edits:
                self.record("item payload edit", client, f"{client}/{schedule} {parse_date(run_date)} job {job} "
                            f"account {account_id}", f"edit {edit_no}", f"was {old[:500]}; now {text[:500]}")

    def _run(self, action, mode: RunMode, client, schedule, run_date, job: str | None = None,
             select=None, target: str = "") -> Execution:
        """Check, lease, run and audit in as few units of work as the file allows, all on one
        attachment of it (``held``): begin (config, state check, lease), the engine's run, and the
        audit entry written with the status read after the run. Notices go out after the file is let go."""
        day = parse_date(run_date)
        if role_refusal(self.role, action.value) is not None:
            self.config(client, schedule)  # an unknown name is NotFound before the role's refusal
        token = lease.new_token()
        chosen: list[Selection] = []
        notes: list[str] = []
        after: list[Execution] = []  # the execution read once after the run, for the audit, notices and caller
        unknown: list[NotFound] = []  # an unknown client or schedule is not an action on anything: not audited

        def begin(con):
            latest = cat_sql.latest_config(con, client, schedule)
            if latest is None:
                try:
                    self._raise_unknown(client, schedule)
                except NotFound as exc:
                    unknown.append(exc)
                    raise
            row, jobs = self._check(con, action, client, schedule, day, job, latest=latest)
            chosen.clear()  # the write path may run this again after a conflict
            notes.clear()
            if row.lease_token and self._phase(row) is Phase.STALLED:  # the crashed run leaves no entry of its own
                notes.append(f"took over a run whose owner was lost ({row.lease_host} pid {row.lease_pid}, "
                             f"last heartbeat {row.lease_heartbeat:%Y-%m-%d %H:%M:%S})")
            chosen.append(select(con, jobs) if select else Selection())
            now = self.clock()
            ex_sql.take_lease(con, row.execution_id, token, lease.HOST, os.getpid(), now)
            ex_sql.set_execution(con, row.execution_id, status="IN_PROGRESS", started_at=row.started_at or now,
                                 finished_at=None)
            return row, jobs  # the jobs as they are: taking the lease does not change them

        def run() -> None:
            # Registered before the lease is written: a racing thread of this process must see the
            # run as live (RUNNING), never as an owner lost that it may take over.
            lease.register(token)
            try:
                row, jobs = self.store.write(begin)
            except BaseException:
                lease.unregister(token)
                raise
            self.engine.run(row, token, mode, job, chosen[-1], jobs=jobs)

        def settled(con) -> str:
            """The status after the run (read in the audit entry's unit of work): its outcome."""
            after[:] = [self._execution(con, self._config(con, client, schedule), day)]
            return after[-1].status.value

        try:
            with self.store.held():
                self._audited(action.value, client, schedule, day, job, run, target, notes, outcome=settled,
                              unaudited=unknown)
        finally:
            if chosen:  # a run took place (to its end or to a failure): tell whom it concerns
                self._notify(client, schedule, day, after[-1] if after else None)
        return after[-1]

    def _notify(self, client: str, schedule: str, day: dt.date, execution: Execution | None = None) -> None:
        """Notifications (ERRORED, COMPLETED after errors) once per execution generation and event;
        never fails the action (a failed delivery is recorded and audited by allegro_ops.notify)."""
        try:
            after_run(self, execution if execution is not None else self.execution(client, schedule, day))
        except Exception as exc:  # noqa: BLE001 - a notice must not undo the operator's action
            self.record("notify", client, f"{client}/{schedule} {day}", "failed", f"{type(exc).__name__}: {exc}")

    def _check(self, con, action, client, schedule, day, job: str | None = None, *, latest=None):
        """Load the execution and refuse the action when the state table does not allow it
        (``latest``: the schedule's current config row, when the caller read it already)."""
        row = ex_sql.find_execution(con, client, schedule, day)
        if row is None:
            if isinstance(action, JobAction):
                reason = job_refusal(action, JobStatus.PENDING, Phase.NOT_CREATED, _name(client, schedule, day))
            else:
                reason = refusal(action, Phase.NOT_CREATED, False, _name(client, schedule, day))
            raise self._refused(action, reason, client, schedule, day, job, ExecutionStatus.NOT_CREATED.value)
        jobs = ex_sql.jobs_of(con, row.execution_id, row.generation)
        phase = self._phase(row)
        if isinstance(action, JobAction):
            match = [j for j in jobs if j.name == job]
            if not match:
                raise NotFound("job", str(job), f"jobs of {client}/{schedule} {day}: {', '.join(j.name for j in jobs)}")
            reason = job_refusal(action, JobStatus(match[0].status), phase, _name(client, schedule, day),
                                 f"job {job} of {_name(client, schedule, day)}", errors=match[0].error)
        else:
            reason = self._schedule_refusal(con, action, row, jobs, client, schedule, day, latest)
        if reason:
            raise self._refused(action, reason, client, schedule, day, job, row.status)
        return row, jobs

    def _schedule_refusal(self, con, action: ScheduleAction, row, jobs, client, schedule, day,
                          latest=None) -> str | None:
        """The state table's answer for a schedule action on a created execution, read in the caller's
        unit of work (``latest``: the current config row, when the caller read it already)."""
        current = latest if latest is not None else cat_sql.latest_config(con, client, schedule)
        return refusal(action, self._phase(row), any(j.status == JobStatus.ERRORED.value for j in jobs),
                       _name(client, schedule, day), self.role, has_run=row.started_at is not None,
                       runs_current_config=current is not None and row.config_version == current[0])

    def _phase(self, row: ex_sql.ExecutionRow) -> Phase:
        alive = lease.owner_alive(row.lease_token, row.lease_host, row.lease_pid, row.lease_heartbeat, self.clock())
        return phase_of(ExecutionStatus(row.status), alive)

    def _refused(self, action, reason, client, schedule, day, job=None, status="") -> ActionRefused:
        return ActionRefused(action.value, reason, client=client, schedule=schedule,
                             run_date=day.isoformat(), job=job, status=status)

    def authorize(self, action: str, target: str = "", client: str | None = None) -> None:
        """Refuse (ActionRefused, exit 3 in the CLI) and audit an action this role may not take."""
        reason = role_refusal(self.role, action)
        if reason is not None:
            self.record(action, client, target or str(self.home), "refused", reason)
            raise ActionRefused(action, reason, client=client or "")

    def record(self, action: str, client: str | None, target: str, outcome: str, reason: str = "") -> None:
        """Append one entry to the audit log under this workspace's actor and clock."""
        self._audit(action, client, target, outcome, reason)

    def _audited(self, action: str, client, schedule, day, job, fn: Callable[[], Any], detail: str = "",
                 notes: list[str] | None = None, *, outcome: Callable[[Any], str] | None = None,
                 unaudited: list[BaseException] | None = None) -> Any:
        """Run an action and append its outcome (done, refused with reason, or failed) to the audit log;
        ``notes`` (filled while it runs) become the reason of a done entry. ``outcome``, when given,
        reads the outcome in the audit entry's own unit of work (one unit instead of two); an error
        in ``unaudited`` (filled while it runs) is raised without an entry."""
        target = f"{client}/{schedule} {day}" + (f" job {job}" if job else "") + detail
        try:
            reason = role_refusal(self.role, action)
            if reason is not None:
                raise self._refused(_Named(action), reason, client, schedule, day, job)
            result = fn()
            if outcome is not None:
                return self.store.write(lambda con: self._append_audit(
                    con, action, client, target, outcome(con), "; ".join(notes or ())))
        except ActionRefused as exc:
            self._audit(action, client, target, "refused", exc.reason)
            raise
        except AllegroOpsError as exc:
            if not any(exc is e for e in unaudited or ()):
                self._audit(action, client, target, "failed", str(exc))
            raise
        except Exception as exc:
            self._audit(action, client, target, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self._audit(action, client, target, result if isinstance(result, str) else "done", "; ".join(notes or ()))
        return result

    def _audit(self, action: str, client: str | None, target: str, outcome: str, reason: str) -> None:
        self.store.write(lambda con: self._append_audit(con, action, client, target, outcome, reason))

    def _append_audit(self, con, action: str, client: str | None, target: str, outcome: str, reason: str) -> str:
        """One audit entry, written in the caller's unit of work; returns its outcome."""
        cat_sql.append_audit(con, time=self.clock(), actor=self.actor, action=action, client=client, target=target,
                             outcome=outcome, reason=reason)
        return outcome


def _job_rows(cfg: ScheduleConfig) -> list[tuple[str, str, str]]:
    return [(j.name, j.type, json.dumps(j.to_dict(), sort_keys=True)) for j in cfg.jobs]


MAX_PAYLOAD_BYTES = 10_000_000


def _payload_text(payload: str) -> str:
    """A corrected payload: JSON text, validated and stored compact."""
    if not isinstance(payload, str):
        raise BadInput("bad payload: expected JSON text")
    if len(payload.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise BadInput(f"bad payload: larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        value = json.loads(payload)
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise BadInput(f"bad payload: not valid JSON ({' '.join(str(exc).split())})") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them as JSON escapes
        text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text


class _Named:
    """An action given by name (for refusals that come before the state table)."""

    def __init__(self, value: str) -> None:
        self.value = value

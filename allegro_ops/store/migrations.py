"""Numbered schema migrations, applied in order and recorded in schema_migrations."""
from __future__ import annotations

import duckdb

__all__ = ["MIGRATIONS", "migrate"]

_V1 = """
CREATE SEQUENCE IF NOT EXISTS seq_execution START 1;
CREATE SEQUENCE IF NOT EXISTS seq_job START 1;
CREATE SEQUENCE IF NOT EXISTS seq_audit START 1;

-- Immutable configuration versions: a new row only when the content changed.
CREATE TABLE config_versions (
    client VARCHAR NOT NULL,
    schedule VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    content_hash VARCHAR NOT NULL,
    config_json VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR NOT NULL,
    PRIMARY KEY (client, schedule, version)
);

-- One execution per (client, schedule, run_date), ever. Reset and Recreate move it to a new
-- generation; jobs and work items of earlier generations stay, archived.
CREATE TABLE executions (
    execution_id BIGINT PRIMARY KEY,
    client VARCHAR NOT NULL,
    schedule VARCHAR NOT NULL,
    run_date DATE NOT NULL,
    generation INTEGER NOT NULL,
    config_version INTEGER NOT NULL,
    snapshot_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    lease_token VARCHAR,
    lease_host VARCHAR,
    lease_pid INTEGER,
    lease_heartbeat TIMESTAMPTZ,
    UNIQUE (client, schedule, run_date)
);

-- What each generation was when it was archived by a Reset or Recreate.
CREATE TABLE archived_generations (
    execution_id BIGINT NOT NULL,
    generation INTEGER NOT NULL,
    config_version INTEGER NOT NULL,
    snapshot_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    archived_at TIMESTAMPTZ NOT NULL,
    archived_by VARCHAR NOT NULL,
    action VARCHAR NOT NULL
);

CREATE TABLE jobs (
    job_id BIGINT PRIMARY KEY,
    execution_id BIGINT NOT NULL,
    generation INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    config_json VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    items_listed BOOLEAN NOT NULL DEFAULT false,
    total BIGINT NOT NULL DEFAULT 0,
    processed BIGINT NOT NULL DEFAULT 0,
    error BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);

-- Current state of each work item; every attempt is also a row of attempts.
CREATE TABLE work_items (
    job_id BIGINT NOT NULL,
    item_no INTEGER NOT NULL,
    account_id VARCHAR NOT NULL,
    batch_id INTEGER NOT NULL,
    payload VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    error_code VARCHAR,
    reason VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ
);

CREATE TABLE attempts (
    job_id BIGINT NOT NULL,
    item_no INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    error_code VARCHAR,
    reason VARCHAR,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    run_token VARCHAR NOT NULL
);

CREATE TABLE audit (
    entry_id BIGINT NOT NULL DEFAULT nextval('seq_audit'),
    time TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    client VARCHAR,
    target VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    reason VARCHAR NOT NULL
);

-- The demo platform's data that demo job types look up (accounts and reference catalogs).
CREATE TABLE demo_accounts (
    client VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    plan_id VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    tax_region VARCHAR NOT NULL,
    email VARCHAR NOT NULL,
    card_expiry DATE NOT NULL,
    monthly_usage DOUBLE NOT NULL
);

CREATE TABLE demo_catalog (
    client VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value DOUBLE
);

CREATE TABLE demo_settings (
    client VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "engine tables", _V1),
    (2, "analyst views", """
-- Documented, stable views for analysts (docs/analysts.md); the tables under them may change.
-- Work items of each execution's current generation.
CREATE OR REPLACE VIEW v_work_items AS
SELECT e.client, e.schedule, e.run_date, e.generation, j.name AS job, j.sequence AS job_sequence,
       j.type AS job_type, w.job_id, w.item_no, w.account_id, w.batch_id, w.status, w.error_code, w.reason,
       w.attempts, w.payload, w.updated_at  -- payload: JSON text (a JSON cast would parse every row)
FROM executions e
JOIN jobs j ON j.execution_id = e.execution_id AND j.generation = e.generation
JOIN work_items w ON w.job_id = j.job_id;

-- The currently errored work items.
CREATE OR REPLACE VIEW v_errors AS SELECT * FROM v_work_items WHERE status = 'ERROR';

-- Every attempt at every work item, archived generations included (archived = true).
CREATE OR REPLACE VIEW v_attempts AS
SELECT e.client, e.schedule, e.run_date, j.generation, j.generation <> e.generation AS archived,
       j.name AS job, j.sequence AS job_sequence, a.job_id, a.item_no, w.account_id, a.attempt, a.batch_id,
       a.status, a.error_code, a.reason, a.started_at, a.finished_at,
       date_diff('millisecond', a.started_at, a.finished_at) / 1000.0 AS duration_s, a.run_token
FROM attempts a
JOIN work_items w ON w.job_id = a.job_id AND w.item_no = a.item_no
JOIN jobs j ON j.job_id = a.job_id
JOIN executions e ON e.execution_id = j.execution_id;

-- Jobs of each execution's current generation.
CREATE OR REPLACE VIEW v_jobs AS
SELECT e.client, e.schedule, e.run_date, e.generation, e.status AS execution_status, j.name AS job,
       j.sequence AS job_sequence, j.type AS job_type, j.job_id, j.status, j.total, j.processed, j.error,
       j.total - j.processed - j.error AS pending, j.started_at, j.finished_at,
       date_diff('millisecond', j.started_at, j.finished_at) / 1000.0 AS duration_s
FROM executions e
JOIN jobs j ON j.execution_id = e.execution_id AND j.generation = e.generation;

-- One row per execution (client, schedule, run date) with its current generation's job totals.
CREATE OR REPLACE VIEW v_executions AS
SELECT e.client, e.schedule, e.run_date, e.status, e.config_version, e.generation, e.created_at,
       e.started_at, e.finished_at, date_diff('millisecond', e.started_at, e.finished_at) / 1000.0 AS duration_s,
       count(j.job_id) AS jobs, count(j.job_id) FILTER (WHERE j.status = 'ERRORED') AS errored_jobs,
       CAST(coalesce(sum(j.total), 0) AS BIGINT) AS total, CAST(coalesce(sum(j.processed), 0) AS BIGINT) AS processed,
       CAST(coalesce(sum(j.error), 0) AS BIGINT) AS error,
       CAST(coalesce(sum(j.total - j.processed - j.error), 0) AS BIGINT) AS pending
FROM executions e
LEFT JOIN jobs j ON j.execution_id = e.execution_id AND j.generation = e.generation
GROUP BY ALL;
"""),
    (3, "payload edits and notifications", """
-- Fix and retry: every correction of an errored work item's payload. The work item holds the
-- latest payload; the rows here keep each earlier one, who changed it and when.
CREATE TABLE payload_edits (
    job_id BIGINT NOT NULL,
    item_no INTEGER NOT NULL,
    edit_no INTEGER NOT NULL,
    edited_at TIMESTAMPTZ NOT NULL,
    edited_by VARCHAR NOT NULL,
    old_payload VARCHAR NOT NULL,
    new_payload VARCHAR NOT NULL,
    PRIMARY KEY (job_id, item_no, edit_no)
);

-- Notifications (ERRORED, LATE, COMPLETED after errors): one row per execution, event and
-- channel target, so that each is sent once however often the run is retried.
CREATE TABLE notifications (
    execution_id BIGINT NOT NULL,
    event VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    outcome VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    PRIMARY KEY (execution_id, event, channel, target)
);
"""),
    (4, "account key", """
-- A number per account id (the first 64 bits of its MD5: stable across DuckDB versions), so that an
-- account's work items are found by comparing integers instead of 10 million strings.
CREATE OR REPLACE MACRO account_key(account_id) AS CAST('0x' || left(md5(account_id), 16) AS UBIGINT);
ALTER TABLE work_items ADD COLUMN account_key UBIGINT;
UPDATE work_items SET account_key = account_key(account_id);
"""),
    (5, "item states", """
-- A Reprocess of 1,000 errored work items among 10 million must not scan or update the big table:
-- an UPDATE of 1,000 scattered rows rewrites nearly every row group it touches (0.2-1.5 s).
-- listed_items: every work item as listed, with its first outcome (PENDING until it runs).
ALTER TABLE work_items RENAME TO listed_items;

-- item_states: the state of every work item that has errored, from its first error on: what errored
-- pages, errors by code, Reprocess and Retry read and write. For these items the row here wins over
-- their row in listed_items; a corrected payload is written here (listed_items keeps the listed one).
CREATE TABLE item_states (
    job_id BIGINT NOT NULL,
    item_no INTEGER NOT NULL,
    account_id VARCHAR NOT NULL,
    batch_id INTEGER NOT NULL,
    payload VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    error_code VARCHAR,
    reason VARCHAR,
    attempts INTEGER NOT NULL,
    updated_at TIMESTAMPTZ
);
INSERT INTO item_states SELECT job_id, item_no, account_id, batch_id, payload, status, error_code, reason, attempts,
    updated_at FROM listed_items WHERE status = 'ERROR' ORDER BY job_id, item_no;

-- work_items: the current state of every work item, as before (the row of item_states where there is one).
CREATE VIEW work_items AS
SELECT l.job_id, l.item_no, l.account_id, l.batch_id, coalesce(s.payload, l.payload) AS payload,
       coalesce(s.status, l.status) AS status,
       CASE WHEN s.job_id IS NULL THEN l.error_code ELSE s.error_code END AS error_code,
       CASE WHEN s.job_id IS NULL THEN l.reason ELSE s.reason END AS reason,
       coalesce(s.attempts, l.attempts) AS attempts, coalesce(s.updated_at, l.updated_at) AS updated_at, l.account_key
FROM listed_items l LEFT JOIN item_states s ON s.job_id = l.job_id AND s.item_no = l.item_no;

-- An attempt's account from the listing (it never changes): no join to the current state.
CREATE OR REPLACE VIEW v_attempts AS
SELECT e.client, e.schedule, e.run_date, j.generation, j.generation <> e.generation AS archived,
       j.name AS job, j.sequence AS job_sequence, a.job_id, a.item_no, l.account_id, a.attempt, a.batch_id,
       a.status, a.error_code, a.reason, a.started_at, a.finished_at,
       date_diff('millisecond', a.started_at, a.finished_at) / 1000.0 AS duration_s, a.run_token
FROM attempts a
JOIN listed_items l ON l.job_id = a.job_id AND l.item_no = a.item_no
JOIN jobs j ON j.job_id = a.job_id
JOIN executions e ON e.execution_id = j.execution_id;
"""),
    (6, "32-bit account key", """
-- An account's history scans every listed item's account_key: 4 bytes instead of 8 make that scan
-- ~30% faster at 10M items. Ids that share a key are told apart by comparing the ids themselves.
CREATE OR REPLACE MACRO account_key(account_id) AS CAST('0x' || left(md5(account_id), 8) AS UINTEGER);
ALTER TABLE listed_items ALTER COLUMN account_key TYPE UINTEGER USING CAST(account_key >> 32 AS UINTEGER);
"""),
    (7, "account index", """
-- An account's history scanned every listed item's key (10M items: ~40 MB, 35-60 ms). The account
-- index (store/accounts.py) holds (account_key, job_id, item_no) of every listed work item, in runs
-- sorted by key, so that DuckDB's zone maps find an account in a row group or two per run. The
-- engine adds a job's items when it marks the job listed: a listing of at least a row group (30,720
-- items) as a run of its own, smaller ones to account_items_recent until they make a run.
CREATE TABLE account_items (account_key UINTEGER NOT NULL, job_id BIGINT NOT NULL, item_no INTEGER NOT NULL);
CREATE TABLE account_items_recent (account_key UINTEGER NOT NULL, job_id BIGINT NOT NULL, item_no INTEGER NOT NULL);
-- The items of jobs listed so far (not those an interrupted listing left: they are deleted when the
-- job runs again): each job of 30,720 items or more is one run, all smaller jobs together are run 0.
-- Runs are written in one statement, so consecutive runs share a row group: sorting every other run
-- by descending key keeps that row group's keys at one end of the range (not from end to end).
INSERT INTO account_items
WITH sizes AS (
    SELECT l.job_id, count(*) >= 30720 AS big FROM listed_items l
    WHERE l.job_id IN (SELECT job_id FROM jobs WHERE items_listed) GROUP BY l.job_id),
runs AS (SELECT job_id, CASE WHEN big THEN row_number() OVER (PARTITION BY big ORDER BY job_id) ELSE 0 END AS run
         FROM sizes)
SELECT l.account_key, l.job_id, l.item_no FROM listed_items l JOIN runs r ON r.job_id = l.job_id
ORDER BY r.run, CASE WHEN r.run % 2 = 0 THEN CAST(l.account_key AS BIGINT) ELSE -CAST(l.account_key AS BIGINT) END,
         l.job_id, l.item_no;
"""),
    (8, "notifications per generation", """
-- A notice is sent once per execution *generation*: Reset and Recreate keep the execution (its id)
-- and start a new generation, whose ERRORED is news again; Reprocess and Retry stay in theirs.
-- DuckDB cannot change a primary key, so the table is rebuilt with the generation in its key and
-- every row copied. A row gets the generation that was current when it was last sent (sent_at;
-- a retry of a failed notice delivered the execution as it was then): the first generation of its
-- execution archived at or after that moment, else the execution's current generation.
CREATE TABLE notifications_by_generation (
    execution_id BIGINT NOT NULL,
    generation INTEGER NOT NULL,
    event VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    outcome VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    PRIMARY KEY (execution_id, generation, event, channel, target)
);
INSERT INTO notifications_by_generation
SELECT n.execution_id,
       coalesce((SELECT min(a.generation) FROM archived_generations a
                 WHERE a.execution_id = n.execution_id AND a.archived_at >= n.sent_at), e.generation, 1),
       n.event, n.channel, n.target, n.sent_at, n.outcome, n.detail
FROM notifications n LEFT JOIN executions e ON e.execution_id = n.execution_id
ORDER BY n.execution_id, n.event, n.channel, n.target;
DROP TABLE notifications;
ALTER TABLE notifications_by_generation RENAME TO notifications;
"""),
]


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply every migration the file has not seen yet, each in its own transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name]
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            if "already exists" in str(exc) or "PRIMARY KEY" in str(exc) or "Conflict" in str(exc):
                continue  # another process migrated first
            raise

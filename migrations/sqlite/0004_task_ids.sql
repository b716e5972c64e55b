-- Task keys are handed to workers (with the attempt) as the handle of an
-- assignment, so they must never be reused. SQLite reuses the largest rowid
-- after a delete unless the key is AUTOINCREMENT; PostgreSQL identities
-- never reuse. Rebuild the table with an AUTOINCREMENT key.
create table tasks_new (
    pk integer primary key autoincrement,
    project_pk integer not null references projects(pk),
    id text not null,
    batch_pk integer references batch_tasks(pk) on delete cascade,
    video_source_pk integer not null references video_sources(pk),
    state integer not null,
    target_roi text,
    error_code text,
    error_message text,
    created_at integer not null,
    updated_at integer not null,
    worker_pk integer references workers(pk),
    attempt integer not null default 0,
    service_version text,
    unique (project_pk, id)
);
insert into tasks_new (pk, project_pk, id, batch_pk, video_source_pk, state, target_roi, error_code,
    error_message, created_at, updated_at, worker_pk, attempt, service_version)
select pk, project_pk, id, batch_pk, video_source_pk, state, target_roi, error_code,
    error_message, created_at, updated_at, worker_pk, attempt, service_version from tasks;
drop table tasks;
alter table tasks_new rename to tasks;
create unique index tasks_by_batch_source on tasks (batch_pk, video_source_pk);
create index tasks_by_state on tasks (state, pk);
create index tasks_by_worker on tasks (worker_pk) where worker_pk is not null;
-- The history of a task goes with it.
delete from task_events where task_pk not in (select pk from tasks);

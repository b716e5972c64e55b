-- The lifecycle: workers with leases, which worker holds a task (and the
-- attempt it holds), every transition a task made, frozen projects,
-- batches being deleted, and the row every scheduler tick locks first so
-- ticks of several processes never overlap.

create table workers (
    pk integer primary key,
    id text not null unique,
    name text not null,
    secret_hash blob not null,
    kind text not null default 'cloud',
    slots integer not null default 0,
    created_at integer not null,
    registered_at integer,
    lease_expires_at integer not null default 0,
    lost integer not null default 1
);

alter table tasks add column worker_pk integer references workers(pk);
alter table tasks add column attempt integer not null default 0;
alter table tasks add column service_version text;
create index tasks_by_state on tasks (state, pk);
create index tasks_by_worker on tasks (worker_pk) where worker_pk is not null;

create table task_events (
    pk integer primary key,
    task_pk integer not null,
    project_pk integer not null,
    at integer not null,
    from_state integer not null,
    event text not null,
    to_state integer
);
create index task_events_by_task on task_events (task_pk, pk);

alter table projects add column frozen integer not null default 0;
-- A deleted source that tasks still name stays, marked, until they go.
alter table video_sources add column deleted integer not null default 0;
alter table batch_tasks add column deleting integer not null default 0;

create table scheduler_lock (
    id integer primary key,
    ticks integer not null
);
insert into scheduler_lock (id, ticks) values (1, 0);

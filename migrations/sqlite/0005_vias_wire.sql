-- The VIAS wire contract: video sources and groups with VIAS's fields,
-- services deployable onto edge pools, edge pools of named workers, and
-- tasks with no batch (CreateTask) that carry their own input, output,
-- configuration and service.

alter table video_groups add column description text not null default '';
alter table video_groups add column access_type text not null default 'cloud';
alter table video_groups add column updated_at integer not null default 0;
update video_groups set updated_at = created_at;

alter table video_sources add column access_type text not null default 'cloud';
alter table video_sources add column source_type text not null default 'url';
alter table video_sources add column type_config text not null default '';
alter table video_sources add column latitude text;
alter table video_sources add column longitude text;
alter table video_sources add column tags text not null default '[]';
alter table video_sources add column updated_at integer not null default 0;
-- Existing sources were registered by URL: their configuration says so.
update video_sources set updated_at = created_at,
    type_config = '<type>URL</type><config><URL_ADDRESS>' ||
        replace(replace(replace(url, '&', '&amp;'), '<', '&lt;'), '>', '&gt;') ||
        '</URL_ADDRESS></config>';

create table edge_pools (
    pk integer primary key,
    project_pk integer not null references projects(pk),
    id text not null,
    name text not null,
    description text not null default '',
    ief_service_instance_id text,
    created_at integer not null,
    updated_at integer not null,
    unique (project_pk, id),
    unique (project_pk, name)
);

-- Nodes listed at creation, by worker name (a worker may also join a pool
-- by its --pool flag).
create table edge_pool_nodes (
    pool_pk integer not null references edge_pools(pk) on delete cascade,
    position integer not null,
    node text not null,
    primary key (pool_pk, position)
);

alter table workers add column pool text;

alter table services add column description text not null default '';
alter table services add column pool_pk integer references edge_pools(pk);
alter table services add column stream_count integer;
alter table services add column deploy_config text;
alter table services add column envs text;
alter table services add column updated_at integer not null default 0;
update services set updated_at = created_at;

alter table batch_tasks add column schedule text;
alter table batch_tasks add column resource_order_id text;
alter table batch_tasks add column saved_as_template integer not null default 0;

-- Tasks: a task of CreateTask has no batch, and its input may name no video
-- source (a URL, say), so video_source_pk becomes nullable; such a task
-- carries its own service, type and settings. SQLite changes a column's
-- nullability only by rebuilding the table (keys stay AUTOINCREMENT).
create table tasks_new (
    pk integer primary key autoincrement,
    project_pk integer not null references projects(pk),
    id text not null,
    batch_pk integer references batch_tasks(pk) on delete cascade,
    video_source_pk integer references video_sources(pk),
    state integer not null,
    target_roi text,
    error_code text,
    error_message text,
    created_at integer not null,
    updated_at integer not null,
    worker_pk integer references workers(pk),
    attempt integer not null default 0,
    service_version text,
    name text,
    description text,
    service_pk integer references services(pk),
    task_type text,
    input text,
    output text,
    config text,
    schedule text,
    resource_order_id text,
    creator text,
    source_url text,
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
create index tasks_by_source on tasks (video_source_pk) where video_source_pk is not null;

-- Initial schema. Every table hangs off a project; public ids are unique
-- per project, internal joins use the integer `pk`.

create table projects (
    pk integer primary key,
    id text not null unique,
    name text not null unique,
    created_at integer not null
);

create table users (
    pk integer primary key,
    name text not null unique,
    password_hash text not null,
    created_at integer not null
);

create table user_projects (
    user_pk integer not null references users(pk) on delete cascade,
    project_pk integer not null references projects(pk) on delete cascade,
    primary key (user_pk, project_pk)
);

create table tokens (
    id text primary key,
    secret_hash blob not null,
    project_pk integer not null references projects(pk) on delete cascade,
    user_pk integer references users(pk) on delete cascade,
    issued_at integer not null,
    expires_at integer not null
);

create table services (
    pk integer primary key,
    project_pk integer not null references projects(pk),
    id text not null,
    service_name text not null,
    service_version text not null,
    alg_name text not null,
    company text not null,
    deploy_type text not null,
    deployed integer not null default 1,
    created_at integer not null,
    unique (project_pk, id),
    unique (project_pk, service_name, service_version)
);

create table video_groups (
    pk integer primary key,
    project_pk integer not null references projects(pk),
    id text not null,
    name text not null,
    created_at integer not null,
    unique (project_pk, id),
    unique (project_pk, name)
);

create table video_sources (
    pk integer primary key,
    project_pk integer not null references projects(pk),
    id text not null,
    name text not null,
    url text not null,
    created_at integer not null,
    unique (project_pk, id)
);

create table video_source_groups (
    source_pk integer not null references video_sources(pk) on delete cascade,
    position integer not null,
    group_pk integer not null references video_groups(pk),
    primary key (source_pk, position),
    unique (source_pk, group_pk)
);
create index video_source_groups_group on video_source_groups (group_pk, source_pk);

-- A batch carries its service's display fields (the service of a batch never
-- changes) and one counter per task state, kept in the same transaction as
-- every task insert, delete and state change: the list never counts tasks.
create table batch_tasks (
    pk integer primary key,
    project_pk integer not null references projects(pk),
    id text not null,
    name text not null,
    name_lc text not null,
    description text not null default '',
    service_pk integer not null references services(pk),
    service_name text not null,
    service_name_lc text not null,
    service_version text not null,
    alg_name text not null,
    company text not null,
    task_type text not null,
    priority text not null,
    config text not null,
    output text not null,
    created_at integer not null,
    num_task integer not null default 0,
    c_pending integer not null default 0,
    c_recovering integer not null default 0,
    c_starting integer not null default 0,
    c_upgrading integer not null default 0,
    c_create_failed integer not null default 0,
    c_start_failed integer not null default 0,
    c_running integer not null default 0,
    c_stopping integer not null default 0,
    c_stopped integer not null default 0,
    c_abnormal integer not null default 0,
    c_succeeded integer not null default 0,
    c_failed integer not null default 0,
    c_deleting integer not null default 0,
    c_freezing integer not null default 0,
    c_frozen integer not null default 0,
    c_stopped_no_service integer not null default 0,
    c_scheduling integer not null default 0,
    c_lack_of_resources integer not null default 0,
    unique (project_pk, id),
    unique (project_pk, name)
);
create index batch_tasks_by_created on batch_tasks (project_pk, created_at, id);
create index batch_tasks_by_count on batch_tasks (project_pk, num_task, id);

create table batch_task_groups (
    batch_pk integer not null references batch_tasks(pk) on delete cascade,
    position integer not null,
    group_pk integer not null references video_groups(pk),
    primary key (batch_pk, position)
);
create index batch_task_groups_group on batch_task_groups (group_pk, batch_pk);

create table tasks (
    pk integer primary key,
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
    unique (project_pk, id)
);
create unique index tasks_by_batch_source on tasks (batch_pk, video_source_pk);

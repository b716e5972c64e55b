-- The scheduler's pick reads waiting tasks through one index already in pick
-- order (state, worker type, batch priority, age) instead of sorting every
-- waiting task: each task carries its worker type and its batch's priority
-- rank (0 high, 1 medium, 2 low).
alter table tasks add column prio integer not null default 2;
update tasks set
    prio = coalesce((select case b.priority when 'high' then 0 when 'medium' then 1 else 2 end
                     from batch_tasks b where b.pk = tasks.batch_pk), 2),
    task_type = coalesce((select b.task_type from batch_tasks b where b.pk = tasks.batch_pk), task_type, '0');
create index tasks_by_pick on tasks (state, task_type, prio, created_at, pk);
-- The maintenance steps start from the rare rows (deleted sources, a
-- standalone task's service) instead of scanning every live task.
create index tasks_by_service on tasks (service_pk) where service_pk is not null;

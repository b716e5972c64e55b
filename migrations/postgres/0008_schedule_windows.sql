-- Task schedules. `window_due` is when the scheduler next looks at a task's
-- schedule windows (null: the task has no schedule; far future: parked at
-- rest until started again); `schedule_hold` is 1 while the scheduler holds
-- the task stopped because its window closed, to start it when one opens.
alter table tasks add column window_due bigint;
alter table tasks add column schedule_hold bigint not null default 0;
create index tasks_by_window_due on tasks (window_due) where window_due is not null;
update tasks set window_due = 0 where schedule is not null
    or batch_pk in (select pk from batch_tasks where schedule is not null);

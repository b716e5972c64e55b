-- Where a task ran: `last_worker_pk` is the worker of its latest placement,
-- kept after the task lets its slot go (`worker_pk` is the slot it holds).
-- A placement's history row names the worker it went to.
alter table tasks add column last_worker_pk integer;
alter table task_events add column worker_pk integer;

-- The capacity read counts what each worker holds (its tasks in a held
-- state). With the state in the worker's index that count reads the
-- worker's own entries; before, a planner could AND in every held entry of
-- `tasks_by_state`, which a busy lifecycle fills with entries of rows that
-- have since moved on.
drop index tasks_by_worker;
create index tasks_by_worker on tasks (worker_pk, state) where worker_pk is not null;
-- Every full pass asks for deleted sources, which are rare.
create index video_sources_deleted on video_sources (pk) where deleted = 1;

-- The pick reads only waiting tasks (pending 0, scheduling 16,
-- lack_of_resources 17), each query naming its state as a literal, so its
-- index holds only those: a move between any other states never touches it,
-- and a restore builds it over the waiting rows alone.
drop index tasks_by_pick;
create index tasks_by_pick on tasks (state, task_type, prio, created_at, pk)
    where state in (0, 16, 17);

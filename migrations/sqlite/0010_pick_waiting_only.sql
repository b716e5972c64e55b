-- PostgreSQL narrows `tasks_by_pick` to waiting tasks here. SQLite keeps the
-- whole index: its planner uses a partial index only when the query repeats
-- the index's condition, and the pick names one state.
select 1;

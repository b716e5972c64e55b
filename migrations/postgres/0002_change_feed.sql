-- On PostgreSQL the change feed is LISTEN/NOTIFY on channel
-- `taskcenter_changes` (delivered at commit, in commit order); nothing to
-- store. The file exists so both sides keep the same migration names.
select 1;

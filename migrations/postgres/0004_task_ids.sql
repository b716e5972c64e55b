-- On SQLite this migration rebuilds `tasks` so task keys are never reused
-- (AUTOINCREMENT). PostgreSQL identities never reuse values: nothing to do.
-- The file exists so both sides keep the same migration names.
select 1;

-- The change feed other processes on the same file poll: one row per write
-- transaction that changed a batch's list row (batch_pk 0: reload the whole
-- project). Writers are serialized, so seq order is commit order.
create table change_log (
    seq integer primary key autoincrement,
    origin integer not null,
    project_pk integer not null,
    batch_pk integer not null,
    created_at integer not null
);

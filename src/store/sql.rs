//! SQL text shared by both backends. Both accept `$N` placeholders,
//! `string_agg(... order by ...)`, `like ... escape`, and `returning`, so one
//! text serves SQLite and PostgreSQL. Every identifier spliced into a string
//! here comes from a fixed list in code; every value is a bound parameter.

use crate::domain::state::COUNTER_COLUMNS;
use crate::domain::{ListBatchTasksParams, NameField, SortField, SortOrder};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    Int(i64),
    Text(String),
    /// A null where text goes.
    Null,
    /// A null where an integer goes (PostgreSQL types a multi-row insert's
    /// column by its first row).
    NullInt,
}

/// Builds a statement's text and its arguments together, so placeholder
/// numbers always match the bind order.
#[derive(Debug, Default)]
pub(super) struct Query {
    pub sql: String,
    pub args: Vec<Arg>,
    /// Write `?` instead of `$N`. SQLite resolves a `$N` name by a linear
    /// search per parameter, which made statements with thousands of
    /// parameters quadratic; `?` binds in order of appearance.
    pub positional: bool,
}

impl Query {
    pub(super) fn new(positional: bool) -> Query {
        Query {
            positional,
            ..Query::default()
        }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `arg`.
    pub(super) fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        if self.positional {
            self.sql.push('?');
        } else {
            self.sql.push('$');
            self.sql.push_str(&self.args.len().to_string());
        }
        self
    }

    /// Appends `(p1, p2, ...)`, one placeholder per argument: a row of a
    /// multi-row insert.
    pub(super) fn bind_row(&mut self, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        self.sql.push('(');
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(a);
        }
        self.sql.push(')');
        self
    }

    /// Appends `(p1, p2, ...)` for a non-empty list of texts.
    pub(super) fn bind_list(&mut self, items: &[String]) -> &mut Self {
        self.bind_row(items.iter().map(|it| Arg::Text(it.clone())))
    }
}

/// How a bulk load writes many rows in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    /// `values (...), (...)`: one parameter per value.
    Values { positional: bool },
    /// `select * from unnest(cast($1 as bigint[]), ...)`: one parameter per
    /// column, an array literal (PostgreSQL). It binds and plans a few
    /// parameters instead of thousands, and takes ten times the rows.
    Arrays,
}

/// Rows per statement for arrays.
pub(super) const ARRAY_ROWS: usize = 5_000;

/// Inserts of `rows` into `into` (`table (col, ...)`, the columns in the
/// rows' order), `tail` (a `returning` clause, say) after each, with the
/// range of rows each statement holds. `values_rows` caps a `values`
/// statement (fewer for wide rows).
pub(super) fn bulk_insert(
    how: Bulk,
    into: &str,
    rows: &[Vec<Arg>],
    values_rows: usize,
    tail: &str,
) -> Vec<(std::ops::Range<usize>, Query)> {
    let per = match how {
        Bulk::Values { .. } => values_rows,
        Bulk::Arrays => ARRAY_ROWS,
    };
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let end = (start + per).min(rows.len());
        let chunk = &rows[start..end];
        let mut q = match how {
            Bulk::Values { positional } => {
                let mut q = Query::new(positional);
                q.push("insert into ").push(into).push(" values ");
                for (i, row) in chunk.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.bind_row(row.iter().cloned());
                }
                q
            }
            Bulk::Arrays => {
                // A column with one value throughout (the project, a type,
                // nulls) is one parameter, not an array: PostgreSQL parses an
                // array element by element, half the cost of the insert.
                let width = chunk[0].len();
                let same: Vec<bool> = (0..width)
                    .map(|c| chunk.iter().all(|r| r[c] == chunk[0][c]))
                    .collect();
                // A column equal throughout to an earlier one (a task's
                // `updated_at` and `created_at`, as a load often has them)
                // reads that one's array.
                let mut alias: Vec<Option<usize>> = vec![None; width];
                let mut arrays: Vec<usize> = Vec::new();
                for c in (0..width).filter(|c| !same[*c]) {
                    match arrays.iter().find(|&&e| chunk.iter().all(|r| r[c] == r[e])) {
                        Some(&e) => alias[c] = Some(e),
                        None => arrays.push(c),
                    }
                }
                if arrays.is_empty() {
                    arrays.push(0);
                }
                let mut q = Query::new(false);
                q.push("insert into ").push(into).push(" select ");
                for (c, first) in chunk[0].iter().enumerate() {
                    if c > 0 {
                        q.push(", ");
                    }
                    if let Some(e) = alias[c] {
                        q.push("u.c").push(&e.to_string());
                    } else if arrays.contains(&c) {
                        q.push("u.c").push(&c.to_string());
                    } else {
                        match first {
                            Arg::Null | Arg::NullInt => q.push("null"),
                            Arg::Int(n) => q.push("cast(").bind(Arg::Int(*n)).push(" as bigint)"),
                            Arg::Text(t) => {
                                q.push("cast(").bind(Arg::Text(t.clone())).push(" as text)")
                            }
                        };
                    }
                }
                q.push(" from unnest(");
                for (i, c) in arrays.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    let (literal, ty) = array_literal(chunk.iter().map(|r| &r[*c]));
                    q.push("cast(").bind(Arg::Text(literal)).push(" as ");
                    q.push(ty).push(")");
                }
                q.push(") as u(");
                for (i, c) in arrays.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.push("c").push(&c.to_string());
                }
                q.push(")");
                q
            }
        };
        q.push(tail);
        out.push((start..end, q));
        start = end;
    }
    out
}

/// A column's values as a PostgreSQL array literal, with the array type:
/// integers bare, texts double-quoted with `"` and `\` escaped, nulls as
/// `NULL`. A column whose values are all null is typed by its null.
fn array_literal<'a>(values: impl Iterator<Item = &'a Arg>) -> (String, &'static str) {
    let mut text = String::from("{");
    let mut ty = None;
    for (i, v) in values.enumerate() {
        if i > 0 {
            text.push(',');
        }
        match v {
            Arg::Int(n) => {
                ty.get_or_insert("bigint[]");
                text.push_str(&n.to_string());
            }
            Arg::Text(t) => {
                ty.get_or_insert("text[]");
                text.push('"');
                for ch in t.chars() {
                    if ch == '"' || ch == '\\' {
                        text.push('\\');
                    }
                    text.push(ch);
                }
                text.push('"');
            }
            Arg::Null => {
                ty.get_or_insert("text[]");
                text.push_str("NULL");
            }
            Arg::NullInt => {
                ty.get_or_insert("bigint[]");
                text.push_str("NULL");
            }
        }
    }
    text.push('}');
    (text, ty.unwrap_or("text[]"))
}

/// The batch row's own columns, `b.id as id` … `b.created_at as created_at`
/// and the counters by their column names, as `batch::batch_row_named`
/// decodes them.
pub(super) fn batch_fields() -> String {
    let mut s = String::new();
    for c in [
        "id",
        "name",
        "alg_name",
        "company",
        "service_name",
        "service_version",
        "task_type",
        "priority",
        "num_task",
        "created_at",
    ]
    .into_iter()
    .chain(COUNTER_COLUMNS)
    {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str("b.");
        s.push_str(c);
        s.push_str(" as ");
        s.push_str(c);
    }
    s
}

/// Columns of a batch-list row: `batch_fields`, then `group_names` and
/// `source_name`.
pub(super) fn batch_row_columns() -> String {
    let mut s = batch_fields();
    s.push_str(
        ", (select string_agg(g.name, ',' order by bg.position) from batch_task_groups bg \
         join video_groups g on g.pk = bg.group_pk where bg.batch_pk = b.pk) as group_names, \
         case when b.num_task = 1 then (select s.name from tasks t join video_sources s \
         on s.pk = t.video_source_pk where t.batch_pk = b.pk limit 1) end as source_name",
    );
    s
}

/// `%`, `_` and `\` in a needle are literal: escape them for `like ... escape '\'`.
pub(super) fn like_contains(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn push_filters(q: &mut Query, project_pk: i64, p: &ListBatchTasksParams) {
    q.push(" from batch_tasks b where b.project_pk = ")
        .bind(Arg::Int(project_pk));
    if !p.task_states.is_empty() {
        q.push(" and (");
        for (i, st) in p.task_states.iter().enumerate() {
            if i > 0 {
                q.push(" or ");
            }
            q.push("b.").push(st.counter_column()).push(" > 0");
        }
        q.push(")");
    }
    if !p.video_groups.is_empty() {
        q.push(
            " and exists (select 1 from batch_task_groups bg where bg.batch_pk = b.pk and bg.group_pk in \
             (select g.pk from video_groups g where g.project_pk = ",
        )
        .bind(Arg::Int(project_pk))
        .push(" and (g.id in ")
        .bind_list(&p.video_groups)
        .push(" or g.name in ")
        .bind_list(&p.video_groups)
        .push(")))");
    }
    if let Some(nl) = &p.name_like {
        let col = match nl.field {
            NameField::BatchTaskName => "b.name_lc",
            NameField::PublishServiceName => "b.service_name_lc",
        };
        q.push(" and ")
            .push(col)
            .push(" like ")
            .bind(Arg::Text(like_contains(&nl.needle)))
            .push(" escape '\\'");
    }
    if !p.manufacturers.is_empty() {
        q.push(" and b.company in ").bind_list(&p.manufacturers);
    }
    if !p.titles.is_empty() {
        q.push(" and b.alg_name in ").bind_list(&p.titles);
    }
}

pub(super) fn count_batch_tasks(
    positional: bool,
    project_pk: i64,
    p: &ListBatchTasksParams,
) -> Query {
    let mut q = Query::new(positional);
    q.push("select count(*) as n");
    push_filters(&mut q, project_pk, p);
    q
}

pub(super) fn select_batch_tasks(
    positional: bool,
    project_pk: i64,
    p: &ListBatchTasksParams,
) -> Query {
    let mut q = Query::new(positional);
    q.push("select ").push(&batch_row_columns());
    push_filters(&mut q, project_pk, p);
    let (col, dir) = (
        match p.sort {
            SortField::CreatedAt => "b.created_at",
            SortField::TaskCount => "b.num_task",
        },
        match p.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        },
    );
    q.push(" order by ")
        .push(col)
        .push(" ")
        .push(dir)
        .push(", b.id ")
        .push(dir);
    if let Some(pg) = p.paging {
        q.push(" limit ").bind(Arg::Int(i64::from(pg.page_size)));
        q.push(" offset ").bind(Arg::Int(pg.offset() as i64));
    }
    q
}

/// `update batch_tasks set c_x = c_x + $1, num_task = num_task + $1 where pk = $2`
pub(super) fn bump_counter(state: crate::domain::TaskState) -> String {
    let c = state.counter_column();
    format!("update batch_tasks set {c} = {c} + $1, num_task = num_task + $1 where pk = $2")
}

/// A batch priority's rank in the scheduler's pick order (`tasks.prio`):
/// high first, then medium, then low (and anything else).
pub(crate) fn prio_rank(priority: &str) -> i64 {
    match priority {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskState;

    #[test]
    fn the_waiting_states_have_the_numbers_the_pick_index_names() {
        // PostgreSQL's migration 0010 and `Backend::pick_index` list them.
        let waiting = [
            TaskState::Pending,
            TaskState::Scheduling,
            TaskState::LackOfResources,
        ];
        assert_eq!(waiting.map(|s| s.index()), [0, 16, 17]);
    }

    #[test]
    fn array_literals_quote_texts_and_keep_nulls() {
        let (lit, ty) = array_literal(
            [
                Arg::Text(r#"a"b\c"#.into()),
                Arg::Null,
                Arg::Text("NULL".into()),
                Arg::Text("{x, y}".into()),
            ]
            .iter(),
        );
        assert_eq!(ty, "text[]");
        assert_eq!(lit, r#"{"a\"b\\c",NULL,"NULL","{x, y}"}"#);
        let (lit, ty) = array_literal([Arg::NullInt, Arg::Int(-3)].iter());
        assert_eq!((lit.as_str(), ty), ("{NULL,-3}", "bigint[]"));
    }

    #[test]
    fn bulk_arrays_bind_a_column_of_one_value_once() {
        let rows: Vec<Vec<Arg>> = (0..3)
            .map(|i| vec![Arg::Int(7), Arg::Text(format!("t{i}")), Arg::Null])
            .collect();
        let out = bulk_insert(
            Bulk::Arrays,
            "tasks (project_pk, id, target_roi)",
            &rows,
            500,
            "",
        );
        assert_eq!(out.len(), 1);
        let (range, q) = &out[0];
        assert_eq!(range.clone(), 0..3);
        assert_eq!(
            q.sql,
            "insert into tasks (project_pk, id, target_roi) select cast($1 as bigint), u.c1, null \
             from unnest(cast($2 as text[])) as u(c1)"
        );
        assert_eq!(
            q.args,
            vec![Arg::Int(7), Arg::Text(r#"{"t0","t1","t2"}"#.into())]
        );
        // Every column the same: one array still carries the row count.
        let same = vec![vec![Arg::Int(1)]; 2];
        let out = bulk_insert(Bulk::Arrays, "t (a)", &same, 500, "");
        assert_eq!(
            out[0].1.sql,
            "insert into t (a) select u.c0 from unnest(cast($1 as bigint[])) as u(c0)"
        );
        // A column equal to an earlier one reads its array.
        let rows: Vec<Vec<Arg>> = (0..2)
            .map(|i| vec![Arg::Int(i), Arg::Int(10 + i), Arg::Int(10 + i)])
            .collect();
        let out = bulk_insert(Bulk::Arrays, "t (a, b, c)", &rows, 500, "");
        assert_eq!(
            out[0].1.sql,
            "insert into t (a, b, c) select u.c0, u.c1, u.c1 \
             from unnest(cast($1 as bigint[]), cast($2 as bigint[])) as u(c0, c1)"
        );
        // `values` keeps to its row cap.
        let out = bulk_insert(
            Bulk::Values { positional: true },
            "t (a)",
            &same,
            1,
            " returning pk",
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].1.sql, "insert into t (a) values (?) returning pk");
    }

    #[test]
    fn like_escapes_wildcards() {
        assert_eq!(like_contains("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    }

    #[test]
    fn placeholders_follow_binds() {
        let p = ListBatchTasksParams {
            video_groups: vec!["g1".into(), "g2".into()],
            task_states: vec![TaskState::Running],
            manufacturers: vec!["acme".into()],
            ..Default::default()
        };
        let q = select_batch_tasks(false, 7, &p);
        assert_eq!(q.args.len(), 1 + 1 + 4 + 1 + 2);
        assert!(q.sql.contains("$9"));
        assert!(!q.sql.contains("$10"));
        assert!(q.sql.contains("b.c_running > 0"));
        assert!(q
            .sql
            .ends_with("order by b.created_at desc, b.id desc limit $8 offset $9"));
    }
}

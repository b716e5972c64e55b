//! The body of the `Store` implementation, written once and expanded for each
//! backend. The SQL is shared (see `sql`); only the sqlx database type, how a
//! transaction begins, and migrations differ, and those live in `sqlite.rs`
//! and `postgres.rs` as inherent methods the expansion calls.

/// Expands to `impl Store for $store` and its importer. `$store` must have a
/// `pool` field and the inherent methods `begin_write`, `begin_read`,
/// `run_migrations`.
macro_rules! impl_sql_store {
    ($store:ident, $db:ty, $importer:ident) => {
        use crate::domain::dump::{
            BatchTaskRecord, DumpRecord, ProjectRecord, ServiceRecord, TaskRecord, UserRecord,
            VideoGroupRecord, VideoSourceRecord,
        };
        use crate::domain::{field, now_millis, random_hex, ListBatchTasksParams, TaskState};
        use crate::store::sql::{self, Arg};
        use crate::store::read_model::{BatchEntry, ProjectView, ReadModel};
        use crate::store::{
            BatchCreated, BatchTaskPage, BatchTaskRow, CounterCheck, DeployType,
            ImportError, ImportedCount, Importer, NewBatchTask, NewService, NewToken, Page, Project, ProjectRef,
            Service, SourceFailure, Store, StoreError, StoreResult, TaskRow, TokenRow, UserRow,
            VideoGroup, VideoSource,
        };
        use async_trait::async_trait;
        use sqlx::Row;
        use std::collections::{HashMap, HashSet};
        use std::sync::Arc;
        use tokio::sync::mpsc;

        type Conn = <$db as sqlx::Database>::Connection;

        /// The fields of a new batch row.
        #[derive(Clone, Copy)]
        struct BatchRow<'a> {
            id: &'a str,
            name: &'a str,
            description: &'a str,
            service_name: &'a str,
            service_version: &'a str,
            priority: &'a str,
            config: &'a serde_json::Value,
            output: &'a serde_json::Value,
            created_at: i64,
            group_pks: &'a [i64],
        }
        type DbRow = <$db as sqlx::Database>::Row;
        type BoundQuery<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>;

                /// Applies, in order, the migrations not yet recorded in
        /// `schema_migrations` (which the caller has created).
        async fn apply_migrations(conn: &mut Conn, migrations: &[(&str, &str)]) -> StoreResult<()> {
            for (name, body) in migrations {
                let done = sqlx::query_scalar::<$db, String>("select name from schema_migrations where name = $1")
                    .bind(*name)
                    .fetch_optional(&mut *conn)
                    .await?;
                if done.is_none() {
                    sqlx::Executor::execute(&mut *conn, *body).await?;
                    sqlx::query::<$db>("insert into schema_migrations (name, applied_at) values ($1, $2)")
                        .bind(*name)
                        .bind(now_millis())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Ok(())
        }

        fn bound(q: &sql::Query) -> BoundQuery<'_> {
            let mut out = sqlx::query::<$db>(&q.sql);
            for a in &q.args {
                out = match a {
                    Arg::Int(v) => out.bind(*v),
                    Arg::Text(s) => out.bind(s.as_str()),
                };
            }
            out
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        fn project_from(row: &DbRow) -> StoreResult<Project> {
            Ok(Project { pk: row.try_get(0)?, id: row.try_get(1)?, name: row.try_get(2)? })
        }

        fn service_from(row: &DbRow) -> StoreResult<Service> {
            Ok(Service {
                id: row.try_get(0)?,
                service_name: row.try_get(1)?,
                service_version: row.try_get(2)?,
                alg_name: row.try_get(3)?,
                company: row.try_get(4)?,
                deploy_type: row.try_get(5)?,
                deployed: row.try_get::<i64, _>(6)? != 0,
                created_at: row.try_get(7)?,
            })
        }

        fn group_from(row: &DbRow) -> StoreResult<VideoGroup> {
            Ok(VideoGroup { id: row.try_get(0)?, name: row.try_get(1)?, created_at: row.try_get(2)? })
        }

        fn source_from(row: &DbRow) -> StoreResult<VideoSource> {
            let ids: Option<String> = row.try_get(3)?;
            Ok(VideoSource {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                url: row.try_get(2)?,
                group_ids: ids.map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default(),
                created_at: row.try_get(4)?,
            })
        }

                /// A list row whose `id … created_at` and 18 counters start at column
        /// `at` (the SQL list and the read-model loader select them alike).
        fn batch_row_at(
            row: &DbRow,
            at: usize,
            video_group_name: Option<String>,
            video_source_name: Option<String>,
        ) -> StoreResult<BatchTaskRow> {
            let mut counters = [0i64; 18];
            for (i, c) in counters.iter_mut().enumerate() {
                *c = row.try_get(at + 8 + i)?;
            }
            Ok(BatchTaskRow {
                id: row.try_get(at)?,
                name: row.try_get(at + 1)?,
                alg_name: row.try_get(at + 2)?,
                company: row.try_get(at + 3)?,
                task_type: row.try_get(at + 4)?,
                priority: row.try_get(at + 5)?,
                num_task: row.try_get(at + 6)?,
                created_at: row.try_get(at + 7)?,
                counters,
                video_group_name,
                video_source_name,
                rendered: Default::default(),
            })
        }

        fn batch_row_from(row: &DbRow) -> StoreResult<BatchTaskRow> {
            batch_row_at(row, 0, row.try_get(26)?, row.try_get(27)?)
        }

        fn task_from(row: &DbRow) -> StoreResult<TaskRow> {
            let st: i64 = row.try_get(3)?;
            Ok(TaskRow {
                id: row.try_get(0)?,
                batch_id: row.try_get(1)?,
                video_source_id: row.try_get(2)?,
                state: crate::store::stored_state(st)?,
                created_at: row.try_get(4)?,
                updated_at: row.try_get(5)?,
            })
        }

        const SERVICE_COLS: &str =
            "id, service_name, service_version, alg_name, company, deploy_type, deployed, created_at";
        const SOURCE_COLS: &str = "s.id, s.name, s.url, (select string_agg(g.id, ',' order by vsg.position) \
             from video_source_groups vsg join video_groups g on g.pk = vsg.group_pk where vsg.source_pk = s.pk), s.created_at";
        const TASK_COLS: &str = "t.id, b.id, s.id, t.state, t.created_at, t.updated_at from tasks t \
             left join batch_tasks b on b.pk = t.batch_pk join video_sources s on s.pk = t.video_source_pk";

        // ---- helpers shared by the API path and the importer ----

        async fn project_pk(conn: &mut Conn, id: &str) -> StoreResult<Option<i64>> {
            Ok(sqlx::query_scalar::<$db, i64>("select pk from projects where id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        async fn insert_project(conn: &mut Conn, id: &str, name: &str, created_at: i64) -> StoreResult<Project> {
            field::check_id("id", id)?;
            field::check_display_name("name", name, 1, 64)?;
            if project_pk(conn, id).await?.is_some() {
                return Err(StoreError::Conflict { what: "project", param: "id".into() });
            }
            let row = sqlx::query::<$db>(
                "insert into projects (id, name, created_at) values ($1, $2, $3) returning pk, id, name",
            )
            .bind(id)
            .bind(name)
            .bind(created_at)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { what: "project", param: "name".into() }
                } else {
                    e.into()
                }
            })?;
            project_from(&row)
        }

        async fn insert_user(
            conn: &mut Conn,
            name: &str,
            password_hash: &str,
            project_ids: &[String],
            created_at: i64,
        ) -> StoreResult<()> {
            field::check_display_name("name", name, 1, 64)?;
            let exists = sqlx::query_scalar::<$db, i64>("select pk from users where name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_some() {
                return Err(StoreError::Conflict { what: "user", param: "name".into() });
            }
            let user_pk: i64 = sqlx::query_scalar::<$db, i64>(
                "insert into users (name, password_hash, created_at) values ($1, $2, $3) returning pk",
            )
            .bind(name)
            .bind(password_hash)
            .bind(created_at)
            .fetch_one(&mut *conn)
            .await?;
            for pid in project_ids {
                let ppk = project_pk(conn, pid)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "project", param: "project_ids".into() })?;
                sqlx::query::<$db>(
                    "insert into user_projects (user_pk, project_pk) values ($1, $2) on conflict do nothing",
                )
                .bind(user_pk)
                .bind(ppk)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        async fn insert_service(conn: &mut Conn, project_pk: i64, s: &NewService) -> StoreResult<Service> {
            field::check_id("id", &s.id)?;
            field::check_service_token("service_name", &s.service_name)?;
            field::check_service_token("service_version", &s.service_version)?;
            field::check_display_name("alg_name", &s.alg_name, 1, 64)?;
            field::check_display_name("company", &s.company, 1, 64)?;
            let dup = sqlx::query_scalar::<$db, i64>(
                "select pk from services where project_pk = $1 and id = $2 union all \
                 select pk from services where project_pk = $1 and service_name = $3 and service_version = $4 limit 1",
            )
            .bind(project_pk)
            .bind(&s.id)
            .bind(&s.service_name)
            .bind(&s.service_version)
            .fetch_optional(&mut *conn)
            .await?;
            if dup.is_some() {
                return Err(StoreError::Conflict { what: "service", param: "service_version".into() });
            }
            let row = sqlx::query::<$db>(&format!(
                "insert into services (project_pk, id, service_name, service_version, alg_name, company, deploy_type, deployed, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {SERVICE_COLS}"
            ))
            .bind(project_pk)
            .bind(&s.id)
            .bind(&s.service_name)
            .bind(&s.service_version)
            .bind(&s.alg_name)
            .bind(&s.company)
            .bind(s.deploy_type.as_str())
            .bind(i64::from(s.deployed))
            .bind(s.created_at)
            .fetch_one(&mut *conn)
            .await?;
            service_from(&row)
        }

        async fn insert_group(conn: &mut Conn, project_pk: i64, id: &str, name: &str, created_at: i64) -> StoreResult<VideoGroup> {
            field::check_id("id", id)?;
            field::check_display_name("name", name, 1, 64)?;
            let clash = sqlx::query_scalar::<$db, String>(
                "select id from video_groups where project_pk = $1 and id = $2 \
                 union all select id from video_groups where project_pk = $1 and name = $3 limit 1",
            )
            .bind(project_pk)
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(other) = clash {
                let param = if other == id { "id" } else { "name" };
                return Err(StoreError::Conflict { what: "video group", param: param.into() });
            }
            let row = sqlx::query::<$db>(
                "insert into video_groups (project_pk, id, name, created_at) values ($1, $2, $3, $4) returning id, name, created_at",
            )
            .bind(project_pk)
            .bind(id)
            .bind(name)
            .bind(created_at)
            .fetch_one(&mut *conn)
            .await?;
            group_from(&row)
        }

        async fn group_pk(conn: &mut Conn, project_pk: i64, id: &str) -> StoreResult<Option<i64>> {
            Ok(sqlx::query_scalar::<$db, i64>("select pk from video_groups where project_pk = $1 and id = $2")
                .bind(project_pk)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        async fn insert_source(conn: &mut Conn, project_pk: i64, s: &VideoSource) -> StoreResult<VideoSource> {
            field::check_id("id", &s.id)?;
            field::check_display_name("name", &s.name, 1, 64)?;
            field::check_text("url", &s.url, 2048)?;
            if s.url.trim().is_empty() {
                return Err(field::FieldError::new("url", "url must not be empty").into());
            }
            let exists = sqlx::query_scalar::<$db, i64>("select pk from video_sources where project_pk = $1 and id = $2")
                .bind(project_pk)
                .bind(&s.id)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_some() {
                return Err(StoreError::Conflict { what: "video source", param: "id".into() });
            }
            let mut group_pks = Vec::with_capacity(s.group_ids.len());
            for gid in &s.group_ids {
                let gpk = group_pk(conn, project_pk, gid)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "video group", param: "group_ids".into() })?;
                if group_pks.contains(&gpk) {
                    return Err(field::FieldError::new("group_ids", format!("group {gid:?} is listed twice")).into());
                }
                group_pks.push(gpk);
            }
            let spk: i64 = sqlx::query_scalar::<$db, i64>(
                "insert into video_sources (project_pk, id, name, url, created_at) values ($1, $2, $3, $4, $5) returning pk",
            )
            .bind(project_pk)
            .bind(&s.id)
            .bind(&s.name)
            .bind(&s.url)
            .bind(s.created_at)
            .fetch_one(&mut *conn)
            .await?;
            for (pos, gpk) in group_pks.iter().enumerate() {
                sqlx::query::<$db>("insert into video_source_groups (source_pk, position, group_pk) values ($1, $2, $3)")
                    .bind(spk)
                    .bind(pos as i64)
                    .bind(*gpk)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(s.clone())
        }

        /// Inserts a batch row with zero counters and its ordered groups;
        /// returns its pk. Checks name and id uniqueness and the service.
        async fn insert_batch_row(conn: &mut Conn, project_pk: i64, b: &BatchRow<'_>) -> StoreResult<i64> {
            let BatchRow {
                id,
                name,
                description,
                service_name,
                service_version,
                priority,
                config,
                output,
                created_at,
                group_pks,
            } = *b;
            let clash = sqlx::query_scalar::<$db, String>(
                "select id from batch_tasks where project_pk = $1 and id = $2 \
                 union all select id from batch_tasks where project_pk = $1 and name = $3 limit 1",
            )
            .bind(project_pk)
            .bind(id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(other) = clash {
                return Err(if other == id {
                    StoreError::Conflict { what: "batch task", param: "id".into() }
                } else {
                    StoreError::BatchNameTaken
                });
            }
            let svc = sqlx::query::<$db>(
                "select pk, alg_name, company, deploy_type, deployed from services \
                 where project_pk = $1 and service_name = $2 and service_version = $3",
            )
            .bind(project_pk)
            .bind(service_name)
            .bind(service_version)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "algorithm service", param: "service_name".into() })?;
            let service_pk: i64 = svc.try_get(0)?;
            let alg_name: String = svc.try_get(1)?;
            let company: String = svc.try_get(2)?;
            let deploy: String = svc.try_get(3)?;
            let task_type = DeployType::parse(&deploy).unwrap_or(DeployType::Cloud).task_type();
            let pk: i64 = sqlx::query_scalar::<$db, i64>(
                "insert into batch_tasks (project_pk, id, name, name_lc, description, service_pk, service_name, \
                 service_name_lc, service_version, alg_name, company, task_type, priority, config, output, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning pk",
            )
            .bind(project_pk)
            .bind(id)
            .bind(name)
            .bind(name.to_lowercase())
            .bind(description)
            .bind(service_pk)
            .bind(service_name)
            .bind(service_name.to_lowercase())
            .bind(service_version)
            .bind(alg_name)
            .bind(company)
            .bind(task_type)
            .bind(priority)
            .bind(config.to_string())
            .bind(output.to_string())
            .bind(created_at)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| if is_unique_violation(&e) { StoreError::BatchNameTaken } else { e.into() })?;
            for (pos, gpk) in group_pks.iter().enumerate() {
                sqlx::query::<$db>("insert into batch_task_groups (batch_pk, position, group_pk) values ($1, $2, $3)")
                    .bind(pk)
                    .bind(pos as i64)
                    .bind(*gpk)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(pk)
        }

        /// Inserts one task; the caller adjusts the batch's counters.
        #[allow(clippy::too_many_arguments)]
        async fn insert_task(
            conn: &mut Conn,
            project_pk: i64,
            id: &str,
            batch_pk: i64,
            source_pk: i64,
            state: TaskState,
            target_roi: Option<String>,
            created_at: i64,
            updated_at: i64,
        ) -> StoreResult<()> {
            sqlx::query::<$db>(
                "insert into tasks (project_pk, id, batch_pk, video_source_pk, state, target_roi, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(project_pk)
            .bind(id)
            .bind(batch_pk)
            .bind(source_pk)
            .bind(state.index() as i64)
            .bind(target_roi)
            .bind(created_at)
            .bind(updated_at)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict { what: "task", param: "id".into() }
                } else {
                    e.into()
                }
            })?;
            Ok(())
        }

        async fn bump(conn: &mut Conn, batch_pk: i64, state: TaskState, by: i64) -> StoreResult<()> {
            if by != 0 {
                sqlx::query::<$db>(&sql::bump_counter(state)).bind(by).bind(batch_pk).execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn source_pk(conn: &mut Conn, project_pk: i64, id: &str) -> StoreResult<Option<i64>> {
            Ok(sqlx::query_scalar::<$db, i64>("select pk from video_sources where project_pk = $1 and id = $2 and deleted = 0")
                .bind(project_pk)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        }

        async fn batch_pk(conn: &mut Conn, project_pk: i64, id: &str) -> StoreResult<i64> {
            sqlx::query_scalar::<$db, i64>("select pk from batch_tasks where project_pk = $1 and id = $2")
                .bind(project_pk)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| StoreError::NotFound { what: "batch task", param: "batch_id".into() })
        }

        async fn paged<T>(
            conn: &mut Conn,
            count_sql: &str,
            select_sql: &str,
            project_pk: i64,
            page: Page,
            decode: fn(&DbRow) -> StoreResult<T>,
        ) -> StoreResult<(u64, Vec<T>)> {
            let count: i64 = sqlx::query_scalar::<$db, i64>(count_sql).bind(project_pk).fetch_one(&mut *conn).await?;
            let rows = sqlx::query::<$db>(select_sql)
                .bind(project_pk)
                .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
                .bind(i64::try_from(page.offset).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await?;
            let items = rows.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
            Ok((count as u64, items))
        }

        /// Columns of a read-model entry; groups travel as `pk\tid\tname`
        /// lines (ids and names hold neither tabs nor newlines).
        fn entry_sql() -> String {
            let mut s = String::from(
                "select b.pk, b.id, b.name, b.alg_name, b.company, b.task_type, b.priority, b.num_task, b.created_at, ",
            );
            for c in crate::domain::state::COUNTER_COLUMNS {
                s.push_str("b.");
                s.push_str(c);
                s.push_str(", ");
            }
            s.push_str(
                "b.name_lc, b.service_name_lc, (select string_agg(cast(g.pk as text) || '\t' || g.id || '\t' || g.name, '\n' \
                 order by bg.position) from batch_task_groups bg join video_groups g on g.pk = bg.group_pk where bg.batch_pk = b.pk), \
                 case when b.num_task = 1 then (select s.name from tasks t join video_sources s on s.pk = t.video_source_pk \
                 where t.batch_pk = b.pk limit 1) end \
                 from batch_tasks b where b.project_pk = ",
            );
            s
        }

                fn entry_from(row: &DbRow) -> StoreResult<BatchEntry> {
            let groups_raw: Option<String> = row.try_get(29)?;
            let mut groups = Vec::new();
            for line in groups_raw.as_deref().unwrap_or("").split('\n').filter(|l| !l.is_empty()) {
                let mut it = line.splitn(3, '\t');
                let (Some(pk), Some(id), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
                groups.push((pk.parse().unwrap_or(0), id.to_string(), name.to_string()));
            }
            let names: Vec<&str> = groups.iter().map(|g| g.2.as_str()).collect();
            Ok(BatchEntry {
                pk: row.try_get(0)?,
                name_lc: row.try_get(27)?,
                service_name_lc: row.try_get(28)?,
                                row: Arc::new(batch_row_at(row, 1, (!names.is_empty()).then(|| names.join(",")), row.try_get(30)?)?),
                groups,
            })
        }

        async fn load_entries(conn: &mut Conn, project_pk: i64, pks: Option<&[i64]>) -> StoreResult<Vec<BatchEntry>> {
            let mut q = sql::Query::new($store::POSITIONAL);
            q.push(&entry_sql());
            q.bind(Arg::Int(project_pk));
            if let Some(pks) = pks {
                q.push(" and b.pk in (");
                for (i, pk) in pks.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.bind(Arg::Int(*pk));
                }
                q.push(")");
            }
            bound(&q).fetch_all(&mut *conn).await?.iter().map(entry_from).collect()
        }

        /// Re-reads the given batches of a loaded project and applies them
        /// (a batch no longer in the database leaves the view).
        pub(crate) async fn refresh_batches(
            pool: &sqlx::Pool<$db>,
            model: &ReadModel,
            project_pk: i64,
            pks: &[i64],
        ) -> StoreResult<()> {
            let _serial = model.refresh.lock().await;
            if !model.is_loaded(project_pk) || pks.is_empty() {
                return Ok(());
            }
            let mut conn = pool.acquire().await?;
            let mut changes: Vec<(i64, Option<BatchEntry>)> = Vec::with_capacity(pks.len());
            for chunk in pks.chunks(500) {
                let found = load_entries(&mut conn, project_pk, Some(chunk)).await?;
                for pk in chunk {
                    changes.push((*pk, found.iter().find(|e| e.pk == *pk).cloned()));
                }
            }
            model.apply(project_pk, changes);
            Ok(())
        }

        impl $store {
            /// Brings the read model up to date with a write this process just
            /// committed, before the write returns to its caller.
            async fn after_write(&self, project_pk: i64, batch_pk: i64) {
                if let Err(e) = refresh_batches(&self.pool, &self.model, project_pk, &[batch_pk]).await {
                    tracing::warn!(error = %e, project_pk, "read model refresh failed; project will be reloaded");
                    self.model.forget(project_pk);
                }
            }

            async fn project_view(&self, project_pk: i64) -> StoreResult<Arc<std::sync::RwLock<ProjectView>>> {
                if let Some(v) = self.model.view(project_pk) {
                    return Ok(v);
                }
                let _serial = self.model.refresh.lock().await;
                if let Some(v) = self.model.view(project_pk) {
                    return Ok(v);
                }
                let mut tx = self.begin_read().await?;
                let entries = load_entries(&mut tx, project_pk, None).await?;
                tx.commit().await?;
                Ok(self.model.install(project_pk, ProjectView::new(entries)))
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn migrate(&self) -> StoreResult<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query::<$db>("select 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_project(&self, id: &str, name: &str, created_at: i64) -> StoreResult<Project> {
                let mut tx = self.begin_write().await?;
                let p = insert_project(&mut tx, id, name, created_at).await?;
                tx.commit().await?;
                Ok(p)
            }

            async fn project(&self, r: &ProjectRef) -> StoreResult<Option<Project>> {
                let (sql, v) = match r {
                    ProjectRef::Id(v) => ("select pk, id, name from projects where id = $1", v),
                    ProjectRef::Name(v) => ("select pk, id, name from projects where name = $1", v),
                };
                let row = sqlx::query::<$db>(sql).bind(v.as_str()).fetch_optional(&self.pool).await?;
                row.as_ref().map(project_from).transpose()
            }

            async fn project_count(&self) -> StoreResult<u64> {
                let n: i64 = sqlx::query_scalar::<$db, i64>("select count(*) from projects").fetch_one(&self.pool).await?;
                Ok(n as u64)
            }

            async fn create_user(&self, name: &str, password_hash: &str, project_ids: &[String]) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                insert_user(&mut tx, name, password_hash, project_ids, now_millis()).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRow>> {
                let row = sqlx::query::<$db>("select pk, name, password_hash from users where name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                match row {
                    Some(r) => Ok(Some(UserRow { pk: r.try_get(0)?, name: r.try_get(1)?, password_hash: r.try_get(2)? })),
                    None => Ok(None),
                }
            }

            async fn user_may_use(&self, user_pk: i64, project_pk: i64) -> StoreResult<bool> {
                let n: i64 = sqlx::query_scalar::<$db, i64>(
                    "select count(*) from user_projects where user_pk = $1 and project_pk = $2",
                )
                .bind(user_pk)
                .bind(project_pk)
                .fetch_one(&self.pool)
                .await?;
                Ok(n > 0)
            }

            async fn insert_token(&self, t: &NewToken) -> StoreResult<()> {
                sqlx::query::<$db>(
                    "insert into tokens (id, secret_hash, project_pk, user_pk, issued_at, expires_at) values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.id)
                .bind(&t.secret_hash)
                .bind(t.project_pk)
                .bind(t.user_pk)
                .bind(t.issued_at)
                .bind(t.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
                // Tokens cannot be revoked, only expire, so a row once read
                // stays right until its expiry.
                if let Some(t) = self.tokens.read().ok().and_then(|m| m.get(id).cloned()) {
                    if t.expires_at > now_millis() {
                        return Ok(Some(t));
                    }
                }
                let row = sqlx::query::<$db>(
                    "select p.pk, p.id, p.name, t.secret_hash, t.expires_at from tokens t \
                     join projects p on p.pk = t.project_pk where t.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                let t = TokenRow { project: project_from(&r)?, secret_hash: r.try_get(3)?, expires_at: r.try_get(4)? };
                if let Ok(mut m) = self.tokens.write() {
                    if m.len() >= crate::store::TOKEN_CACHE_MAX {
                        m.clear();
                    }
                    m.insert(id.to_string(), t.clone());
                }
                Ok(Some(t))
            }

            async fn add_service(&self, project_pk: i64, s: &NewService) -> StoreResult<Service> {
                let mut tx = self.begin_write().await?;
                let out = insert_service(&mut tx, project_pk, s).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn list_services(&self, project_pk: i64, page: Page) -> StoreResult<(u64, Vec<Service>)> {
                let mut tx = self.begin_read().await?;
                let out = paged(
                    &mut tx,
                    "select count(*) from services where project_pk = $1",
                    &format!("select {SERVICE_COLS} from services where project_pk = $1 order by pk limit $2 offset $3"),
                    project_pk,
                    page,
                    service_from,
                )
                .await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn service(&self, project_pk: i64, id: &str) -> StoreResult<Option<Service>> {
                let row = sqlx::query::<$db>(&format!("select {SERVICE_COLS} from services where project_pk = $1 and id = $2"))
                    .bind(project_pk)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(service_from).transpose()
            }

            async fn create_video_group(&self, project_pk: i64, id: &str, name: &str, created_at: i64) -> StoreResult<VideoGroup> {
                let mut tx = self.begin_write().await?;
                let g = insert_group(&mut tx, project_pk, id, name, created_at).await?;
                tx.commit().await?;
                Ok(g)
            }

            async fn list_video_groups(&self, project_pk: i64, page: Page) -> StoreResult<(u64, Vec<VideoGroup>)> {
                let mut tx = self.begin_read().await?;
                let out = paged(
                    &mut tx,
                    "select count(*) from video_groups where project_pk = $1",
                    "select id, name, created_at from video_groups where project_pk = $1 order by pk limit $2 offset $3",
                    project_pk,
                    page,
                    group_from,
                )
                .await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn video_group(&self, project_pk: i64, id: &str) -> StoreResult<Option<VideoGroup>> {
                let row = sqlx::query::<$db>("select id, name, created_at from video_groups where project_pk = $1 and id = $2")
                    .bind(project_pk)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(group_from).transpose()
            }

            async fn create_video_source(&self, project_pk: i64, s: &VideoSource) -> StoreResult<VideoSource> {
                let mut tx = self.begin_write().await?;
                let out = insert_source(&mut tx, project_pk, s).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn delete_video_source(&self, project_pk: i64, id: &str) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let spk = source_pk(&mut tx, project_pk, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "video source", param: "source_id".into() })?;
                let used = sqlx::query_scalar::<$db, i64>("select pk from tasks where video_source_pk = $1 limit 1")
                    .bind(spk)
                    .fetch_optional(&mut *tx)
                    .await?;
                let sql = if used.is_some() {
                    "update video_sources set deleted = 1 where pk = $1"
                } else {
                    "delete from video_sources where pk = $1"
                };
                sqlx::query::<$db>(sql).bind(spk).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_video_sources(&self, project_pk: i64, page: Page) -> StoreResult<(u64, Vec<VideoSource>)> {
                let mut tx = self.begin_read().await?;
                let out = paged(
                    &mut tx,
                    "select count(*) from video_sources where project_pk = $1 and deleted = 0",
                    &format!("select {SOURCE_COLS} from video_sources s where s.project_pk = $1 and s.deleted = 0 order by s.pk limit $2 offset $3"),
                    project_pk,
                    page,
                    source_from,
                )
                .await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn video_source(&self, project_pk: i64, id: &str) -> StoreResult<Option<VideoSource>> {
                let row = sqlx::query::<$db>(&format!("select {SOURCE_COLS} from video_sources s where s.project_pk = $1 and s.id = $2 and s.deleted = 0"))
                    .bind(project_pk)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(source_from).transpose()
            }

            async fn create_batch_task(&self, project_pk: i64, b: &NewBatchTask) -> StoreResult<BatchCreated> {
                let mut tx = self.begin_write().await?;
                let conn: &mut Conn = &mut tx;
                let svc_deployed = sqlx::query_scalar::<$db, i64>(
                    "select deployed from services where project_pk = $1 and service_name = $2 and service_version = $3",
                )
                .bind(project_pk)
                .bind(&b.service_name)
                .bind(&b.service_version)
                .fetch_optional(&mut *conn)
                .await?;
                match svc_deployed {
                    None => return Err(StoreError::NotFound { what: "algorithm service", param: "service_name".into() }),
                    Some(0) => return Err(StoreError::NotAllowed("the algorithm service is not deployed".into())),
                    Some(_) => {}
                }
                let mut group_pks = Vec::with_capacity(b.groups.len());
                for g in &b.groups {
                    let gpk = group_pk(conn, project_pk, &g.group_id).await?.ok_or_else(|| StoreError::NotFound {
                        what: "video group",
                        param: "video_source_group_id".into(),
                    })?;
                    if group_pks.contains(&gpk) {
                        return Err(field::FieldError::new(
                            "video_source_group_id",
                            format!("video group {:?} is listed twice", g.group_id),
                        )
                        .into());
                    }
                    group_pks.push(gpk);
                }
                let pk = insert_batch_row(
                    conn,
                    project_pk,
                    &BatchRow {
                        id: &b.id,
                        name: &b.name,
                        description: &b.description,
                        service_name: &b.service_name,
                        service_version: &b.service_version,
                        priority: &b.priority,
                        config: &b.config,
                        output: &b.output,
                        created_at: b.created_at,
                        group_pks: &group_pks,
                    },
                )
                .await?;

                let mut seen: Vec<i64> = Vec::new();
                let mut failures = Vec::new();
                for (g, gpk) in b.groups.iter().zip(&group_pks) {
                    let members: Vec<(String, i64)> = sqlx::query::<$db>(
                        "select s.id, s.pk from video_source_groups vsg join video_sources s on s.pk = vsg.source_pk \
                         where vsg.group_pk = $1 and s.deleted = 0 order by s.pk",
                    )
                    .bind(*gpk)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<StoreResult<_>>()?;
                    let wanted: Vec<(String, Option<String>)> = match &g.sources {
                        None => members.iter().map(|(id, _)| (id.clone(), None)).collect(),
                        Some(list) => list
                            .iter()
                            .map(|s| (s.source_id.clone(), s.target_roi.as_ref().map(|v| v.to_string())))
                            .collect(),
                    };
                    for (sid, roi) in wanted {
                        let fail = |code: &'static str, msg: String| SourceFailure {
                            video_source_id: sid.clone(),
                            error_code: code,
                            error_msg: msg,
                        };
                        let spk = match members.iter().find(|(id, _)| *id == sid) {
                            Some((_, spk)) => *spk,
                            None => {
                                failures.push(if source_pk(conn, project_pk, &sid).await?.is_some() {
                                    fail("VIAS.00010001", format!("video source is not in video group {:?}", g.group_id))
                                } else {
                                    fail("VIAS.00010002", "video source does not exist".into())
                                });
                                continue;
                            }
                        };
                        if seen.contains(&spk) {
                            failures.push(fail("VIAS.00010003", "video source is already in this batch task".into()));
                            continue;
                        }
                        seen.push(spk);
                        let tid = random_hex(16)?;
                        insert_task(conn, project_pk, &tid, pk, spk, TaskState::Pending, roi, b.created_at, b.created_at).await?;
                    }
                }
                bump(conn, pk, TaskState::Pending, seen.len() as i64).await?;
                Self::record_change(conn, self.origin, project_pk, pk).await?;
                tx.commit().await?;
                self.after_write(project_pk, pk).await;
                Ok(BatchCreated { id: b.id.clone(), succeed_count: seen.len() as u64, failures })
            }

            async fn list_batch_tasks(&self, project_pk: i64, q: &ListBatchTasksParams) -> StoreResult<BatchTaskPage> {
                let view = self.project_view(project_pk).await?;
                let page = view.read().map_err(|_| StoreError::Internal("read model lock poisoned".into()))?.query(q);
                Ok(page)
            }

            async fn list_batch_tasks_from_db(&self, project_pk: i64, q: &ListBatchTasksParams) -> StoreResult<BatchTaskPage> {
                let mut tx = self.begin_read().await?;
                let cq = sql::count_batch_tasks($store::POSITIONAL, project_pk, q);
                let count: i64 = bound(&cq).fetch_one(&mut *tx).await?.try_get(0)?;
                let sq = sql::select_batch_tasks($store::POSITIONAL, project_pk, q);
                let rows = if q.paging.map(|p| p.offset() >= count as u64).unwrap_or(false) {
                    Vec::new()
                } else {
                    bound(&sq)
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| batch_row_from(r).map(Arc::new))
                        .collect::<StoreResult<_>>()?
                };
                tx.commit().await?;
                Ok(BatchTaskPage { count: count as u64, rows })
            }

            async fn add_task(&self, project_pk: i64, batch_id: &str, source_id: &str) -> StoreResult<TaskRow> {
                let mut tx = self.begin_write().await?;
                let conn: &mut Conn = &mut tx;
                let bpk = batch_pk(conn, project_pk, batch_id).await?;
                let spk = source_pk(conn, project_pk, source_id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "video source", param: "video_source_id".into() })?;
                let dup = sqlx::query_scalar::<$db, i64>("select pk from tasks where batch_pk = $1 and video_source_pk = $2")
                    .bind(bpk)
                    .bind(spk)
                    .fetch_optional(&mut *conn)
                    .await?;
                if dup.is_some() {
                    return Err(StoreError::Conflict { what: "task", param: "video_source_id".into() });
                }
                let id = random_hex(16)?;
                let now = now_millis();
                insert_task(conn, project_pk, &id, bpk, spk, TaskState::Pending, None, now, now).await?;
                bump(conn, bpk, TaskState::Pending, 1).await?;
                Self::record_change(conn, self.origin, project_pk, bpk).await?;
                tx.commit().await?;
                self.after_write(project_pk, bpk).await;
                Ok(TaskRow {
                    id,
                    batch_id: Some(batch_id.to_string()),
                    video_source_id: source_id.to_string(),
                    state: TaskState::Pending,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn tasks_of_batch(&self, project_pk: i64, batch_id: &str) -> StoreResult<Vec<TaskRow>> {
                let mut tx = self.begin_read().await?;
                let bpk = batch_pk(&mut tx, project_pk, batch_id).await?;
                let rows = sqlx::query::<$db>(&format!("select {TASK_COLS} where t.batch_pk = $1 order by t.pk"))
                    .bind(bpk)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows.iter().map(task_from).collect()
            }

            async fn check_counters(&self, project_pk: i64, batch_id: &str) -> StoreResult<CounterCheck> {
                let mut tx = self.begin_read().await?;
                let bpk = batch_pk(&mut tx, project_pk, batch_id).await?;
                let cols = crate::domain::state::COUNTER_COLUMNS.join(", ");
                let row = sqlx::query::<$db>(&format!("select num_task, {cols} from batch_tasks where pk = $1"))
                    .bind(bpk)
                    .fetch_one(&mut *tx)
                    .await?;
                let mut stored = [0i64; 18];
                for (i, c) in stored.iter_mut().enumerate() {
                    *c = row.try_get(1 + i)?;
                }
                let stored_num_task: i64 = row.try_get(0)?;
                let mut counted = [0i64; 18];
                for r in sqlx::query::<$db>("select state, count(*) from tasks where batch_pk = $1 group by state")
                    .bind(bpk)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    let st: i64 = r.try_get(0)?;
                    let n: i64 = r.try_get(1)?;
                    let st = crate::store::stored_state(st)?;
                    counted[st.index()] = n;
                }
                tx.commit().await?;
                Ok(CounterCheck { stored, stored_num_task, counted })
            }

            async fn export(&self, out: mpsc::Sender<DumpRecord>) -> StoreResult<()> {
                let mut tx = self.begin_read().await?;
                let conn: &mut Conn = &mut tx;
                let send = |r: DumpRecord| {
                    let out = out.clone();
                    async move { out.send(r).await.map_err(|_| StoreError::Internal("export reader went away".into())) }
                };
                let projects = sqlx::query::<$db>("select pk, id, name, created_at from projects order by pk")
                    .fetch_all(&mut *conn)
                    .await?;
                for p in &projects {
                    send(DumpRecord::Project(ProjectRecord {
                        id: p.try_get(1)?,
                        name: p.try_get(2)?,
                        created_at: Some(p.try_get(3)?),
                    }))
                    .await?;
                }
                let users = sqlx::query::<$db>(
                    "select u.name, u.password_hash, u.created_at, (select string_agg(p.id, ',' order by p.pk) \
                     from user_projects up join projects p on p.pk = up.project_pk where up.user_pk = u.pk) from users u order by u.pk",
                )
                .fetch_all(&mut *conn)
                .await?;
                for u in &users {
                    let ids: Option<String> = u.try_get(3)?;
                    send(DumpRecord::User(UserRecord {
                        name: u.try_get(0)?,
                        password_hash: u.try_get(1)?,
                        project_ids: ids.map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default(),
                        created_at: Some(u.try_get(2)?),
                    }))
                    .await?;
                }
                for p in &projects {
                    let ppk: i64 = p.try_get(0)?;
                    let pid: String = p.try_get(1)?;
                    for r in sqlx::query::<$db>(&format!("select {SERVICE_COLS} from services where project_pk = $1 order by pk"))
                        .bind(ppk)
                        .fetch_all(&mut *conn)
                        .await?
                    {
                        let s = service_from(&r)?;
                        send(DumpRecord::Service(ServiceRecord {
                            project_id: pid.clone(),
                            id: Some(s.id),
                            service_name: s.service_name,
                            service_version: s.service_version,
                            alg_name: s.alg_name,
                            company: s.company,
                            deploy_type: s.deploy_type,
                            deployed: Some(s.deployed),
                            created_at: Some(s.created_at),
                        }))
                        .await?;
                    }
                    for r in sqlx::query::<$db>("select id, name, created_at from video_groups where project_pk = $1 order by pk")
                        .bind(ppk)
                        .fetch_all(&mut *conn)
                        .await?
                    {
                        let g = group_from(&r)?;
                        send(DumpRecord::VideoGroup(VideoGroupRecord {
                            project_id: pid.clone(),
                            id: g.id,
                            name: g.name,
                            created_at: Some(g.created_at),
                        }))
                        .await?;
                    }
                    for r in sqlx::query::<$db>(&format!("select {SOURCE_COLS}, s.deleted from video_sources s where s.project_pk = $1 order by s.pk"))
                        .bind(ppk)
                        .fetch_all(&mut *conn)
                        .await?
                    {
                        let s = source_from(&r)?;
                        send(DumpRecord::VideoSource(VideoSourceRecord {
                            project_id: pid.clone(),
                            id: s.id,
                            name: s.name,
                            url: s.url,
                            group_ids: s.group_ids,
                            created_at: Some(s.created_at),
                            deleted: r.try_get::<i64, _>(5)? != 0,
                        }))
                        .await?;
                    }
                    let batches = sqlx::query::<$db>(
                        "select b.pk, b.id, b.name, b.description, b.service_name, b.service_version, b.priority, b.created_at, \
                         b.config, b.output, (select string_agg(g.id, ',' order by bg.position) from batch_task_groups bg \
                         join video_groups g on g.pk = bg.group_pk where bg.batch_pk = b.pk) \
                         from batch_tasks b where b.project_pk = $1 order by b.pk",
                    )
                    .bind(ppk)
                    .fetch_all(&mut *conn)
                    .await?;
                    for b in &batches {
                        let bpk: i64 = b.try_get(0)?;
                        let tasks = sqlx::query::<$db>(
                            "select t.id, s.id, t.state, t.created_at, t.updated_at from tasks t \
                             join video_sources s on s.pk = t.video_source_pk where t.batch_pk = $1 order by t.pk",
                        )
                        .bind(bpk)
                        .fetch_all(&mut *conn)
                        .await?
                        .iter()
                        .map(|t| {
                            let st: i64 = t.try_get(2)?;
                            Ok(TaskRecord {
                                id: t.try_get(0)?,
                                video_source_id: t.try_get(1)?,
                                state: crate::store::stored_state(st)?
                                    .as_str()
                                    .to_string(),
                                created_at: Some(t.try_get(3)?),
                                updated_at: Some(t.try_get(4)?),
                            })
                        })
                        .collect::<StoreResult<Vec<_>>>()?;
                        let description: String = b.try_get(3)?;
                        let config: String = b.try_get(8)?;
                        let output: String = b.try_get(9)?;
                        let groups: Option<String> = b.try_get(10)?;
                        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).map_err(|e| StoreError::Internal(e.to_string()));
                        send(DumpRecord::BatchTask(BatchTaskRecord {
                            project_id: pid.clone(),
                            id: b.try_get(1)?,
                            name: b.try_get(2)?,
                            description: (!description.is_empty()).then_some(description),
                            service_name: b.try_get(4)?,
                            service_version: b.try_get(5)?,
                            priority: b.try_get(6)?,
                            created_at: b.try_get(7)?,
                            group_ids: groups.map(|s| s.split(',').map(str::to_string).collect()).unwrap_or_default(),
                            config: Some(json(&config)?),
                            output: Some(json(&output)?),
                            tasks,
                        }))
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            fn start_change_feed(&self) {
                self.spawn_change_feed();
            }

            async fn begin_import(&self) -> StoreResult<Box<dyn Importer>> {
                let mut tx = self.begin_write().await?;
                Self::tune_for_import(&mut tx).await?;
                Ok(Box::new($importer {
                    tx,
                    projects: HashMap::new(),
                    sources: HashMap::new(),
                    groups: HashMap::new(),
                    services: HashMap::new(),
                    pending_sources: Vec::new(),
                    pending_source_ids: HashSet::new(),
                    pending_batches: Vec::new(),
                    pending_tasks: 0,
                    batch_keys: HashSet::new(),
                    touched: HashSet::new(),
                    model: self.model.clone(),
                    origin: self.origin,
                }))
            }
        }

        /// Rows per multi-row statement. One statement per row costs a round
        /// trip each (a thread handoff on SQLite), which dominated bulk
        /// loads; these keep every statement well under both backends'
        /// parameter limits.
        const TASK_CHUNK: usize = 500;
        const SOURCE_CHUNK: usize = 500;
        const BATCH_CHUNK: usize = 80;
        /// Pending work that triggers a flush.
        const FLUSH_SOURCES: usize = 2_000;
        const FLUSH_TASKS: usize = 20_000;
        const FLUSH_BATCHES: usize = 800;

        #[derive(Clone)]
        struct ServiceInfo {
            pk: i64,
            alg_name: String,
            company: String,
            task_type: &'static str,
        }

        struct PendingSource {
            line: u64,
            ppk: i64,
            id: String,
            name: String,
            url: String,
            created_at: i64,
            group_pks: Vec<i64>,
            deleted: bool,
        }

        struct PendingTask {
            id: String,
            source_pk: i64,
            state: TaskState,
            created_at: i64,
            updated_at: i64,
        }

        struct PendingBatch {
            line: u64,
            ppk: i64,
            id: String,
            name: String,
            description: String,
            service_name: String,
            service_version: String,
            service: ServiceInfo,
            priority: &'static str,
            config: String,
            output: String,
            created_at: i64,
            group_pks: Vec<i64>,
            tasks: Vec<PendingTask>,
        }

        /// A bulk load in one transaction. Records are checked as they come
        /// (so an error names its line), buffered, and written many rows per
        /// statement; uniqueness against rows already in the database is
        /// checked in bulk before each write, so those errors name their
        /// line too.
        pub struct $importer {
            tx: sqlx::Transaction<'static, $db>,
            projects: HashMap<String, i64>,
            sources: HashMap<(i64, String), i64>,
            groups: HashMap<(i64, String), i64>,
            services: HashMap<(i64, String, String), ServiceInfo>,
            pending_sources: Vec<PendingSource>,
            pending_source_ids: HashSet<(i64, String)>,
            pending_batches: Vec<PendingBatch>,
            pending_tasks: usize,
            /// Batch ids ("i" + id) and names ("n" + name) seen in this load.
            batch_keys: HashSet<(i64, String)>,
            /// Projects that gained batches; their views are reloaded after commit.
            touched: HashSet<i64>,
            model: Arc<ReadModel>,
            origin: i64,
        }

        fn at(line: u64) -> impl Fn(StoreError) -> ImportError {
            move |error| ImportError { line, error }
        }

        impl $importer {
            async fn project(&mut self, id: &str) -> StoreResult<i64> {
                if let Some(pk) = self.projects.get(id) {
                    return Ok(*pk);
                }
                let pk = project_pk(&mut self.tx, id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "project", param: "project_id".into() })?;
                self.projects.insert(id.to_string(), pk);
                Ok(pk)
            }

            async fn group(&mut self, ppk: i64, gid: &str, param: &str) -> StoreResult<i64> {
                let key = (ppk, gid.to_string());
                if let Some(pk) = self.groups.get(&key) {
                    return Ok(*pk);
                }
                let pk = group_pk(&mut self.tx, ppk, gid)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "video group", param: param.into() })?;
                self.groups.insert(key, pk);
                Ok(pk)
            }

            async fn service(&mut self, ppk: i64, name: &str, version: &str) -> StoreResult<ServiceInfo> {
                let key = (ppk, name.to_string(), version.to_string());
                if let Some(s) = self.services.get(&key) {
                    return Ok(s.clone());
                }
                let r = sqlx::query::<$db>(
                    "select pk, alg_name, company, deploy_type from services \
                     where project_pk = $1 and service_name = $2 and service_version = $3",
                )
                .bind(ppk)
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *self.tx)
                .await?
                .ok_or_else(|| StoreError::NotFound { what: "algorithm service", param: "service_name".into() })?;
                let deploy: String = r.try_get(3)?;
                let info = ServiceInfo {
                    pk: r.try_get(0)?,
                    alg_name: r.try_get(1)?,
                    company: r.try_get(2)?,
                    task_type: DeployType::parse(&deploy).unwrap_or(DeployType::Cloud).task_type(),
                };
                self.services.insert(key, info.clone());
                Ok(info)
            }

            async fn source(&mut self, ppk: i64, sid: &str) -> StoreResult<i64> {
                let key = (ppk, sid.to_string());
                if let Some(pk) = self.sources.get(&key) {
                    return Ok(*pk);
                }
                let pk = source_pk(&mut self.tx, ppk, sid)
                    .await?
                    .ok_or_else(|| StoreError::NotFound { what: "video source", param: "tasks.video_source_id".into() })?;
                self.sources.insert(key, pk);
                Ok(pk)
            }

            /// Ids among `ids` that already exist in `table` for the project,
            /// checked in bulk.
            async fn existing(&mut self, table: &str, column: &str, ppk: i64, ids: &[&str]) -> StoreResult<HashSet<String>> {
                let mut found = HashSet::new();
                for chunk in ids.chunks(500) {
                    let mut q = sql::Query::new($store::POSITIONAL);
                    q.push("select ").push(column).push(" from ").push(table).push(" where project_pk = ").bind(Arg::Int(ppk));
                    q.push(" and ").push(column).push(" in ");
                    q.bind_list(&chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                    for r in bound(&q).fetch_all(&mut *self.tx).await? {
                        found.insert(r.try_get::<String, _>(0)?);
                    }
                }
                Ok(found)
            }

                        /// Integer triples (`head` names the table and columns), many rows
            /// per statement.
            async fn insert_triples(&mut self, head: &str, rows: &[(i64, i64, i64)]) -> StoreResult<()> {
                for chunk in rows.chunks(TASK_CHUNK) {
                    let mut q = sql::Query::new($store::POSITIONAL);
                    q.push(head);
                    for (i, (a, b, c)) in chunk.iter().enumerate() {
                        q.push(if i > 0 { ", (" } else { "(" });
                        q.bind(Arg::Int(*a)).push(", ").bind(Arg::Int(*b)).push(", ").bind(Arg::Int(*c)).push(")");
                    }
                    bound(&q).execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn flush_sources(&mut self) -> Result<(), ImportError> {
                if self.pending_sources.is_empty() {
                    return Ok(());
                }
                let pending = std::mem::take(&mut self.pending_sources);
                self.pending_source_ids.clear();
                let first_line = pending[0].line;
                let mut by_project: HashMap<i64, Vec<&str>> = HashMap::new();
                for s in &pending {
                    by_project.entry(s.ppk).or_default().push(&s.id);
                }
                for (ppk, ids) in by_project {
                    let clash = self.existing("video_sources", "id", ppk, &ids).await.map_err(at(first_line))?;
                    if let Some(s) = pending.iter().find(|s| s.ppk == ppk && clash.contains(&s.id)) {
                        return Err(ImportError {
                            line: s.line,
                            error: StoreError::Conflict { what: "video source", param: "id".into() },
                        });
                    }
                }
                for chunk in pending.chunks(SOURCE_CHUNK) {
                    let mut q = sql::Query::new($store::POSITIONAL);
                    q.push("insert into video_sources (project_pk, id, name, url, created_at, deleted) values ");
                    for (i, s) in chunk.iter().enumerate() {
                        q.push(if i > 0 { ", (" } else { "(" });
                        q.bind(Arg::Int(s.ppk)).push(", ").bind(Arg::Text(s.id.clone())).push(", ");
                        q.bind(Arg::Text(s.name.clone())).push(", ").bind(Arg::Text(s.url.clone())).push(", ");
                        q.bind(Arg::Int(s.created_at)).push(", ").bind(Arg::Int(i64::from(s.deleted))).push(")");
                    }
                    q.push(" returning pk, project_pk, id");
                    let line = chunk[0].line;
                    for r in bound(&q).fetch_all(&mut *self.tx).await.map_err(|e| at(line)(e.into()))? {
                        let (pk, ppk, id): (i64, i64, String) =
                            (r.try_get(0).map_err(|e| at(line)(e.into()))?, r.try_get(1).map_err(|e| at(line)(e.into()))?, r.try_get(2).map_err(|e| at(line)(e.into()))?);
                        self.sources.insert((ppk, id), pk);
                    }
                }
                let mut links: Vec<(i64, i64, i64)> = Vec::new();
                for s in &pending {
                    let spk = self.sources.get(&(s.ppk, s.id.clone())).copied().unwrap_or(0);
                    for (pos, g) in s.group_pks.iter().enumerate() {
                        links.push((spk, pos as i64, *g));
                    }
                }
                                self.insert_triples("insert into video_source_groups (source_pk, position, group_pk) values ", &links)
                    .await
                    .map_err(at(first_line))?;
                Ok(())
            }

            async fn flush_batches(&mut self) -> Result<(), ImportError> {
                if self.pending_batches.is_empty() {
                    return Ok(());
                }
                let pending = std::mem::take(&mut self.pending_batches);
                self.pending_tasks = 0;
                let first_line = pending[0].line;
                // Clashes with batches and tasks already in the database.
                let mut by_project: HashMap<i64, Vec<&PendingBatch>> = HashMap::new();
                for b in &pending {
                    by_project.entry(b.ppk).or_default().push(b);
                }
                for (ppk, list) in &by_project {
                    let ids: Vec<&str> = list.iter().map(|b| b.id.as_str()).collect();
                    let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
                    let id_clash = self.existing("batch_tasks", "id", *ppk, &ids).await.map_err(at(first_line))?;
                    let name_clash = self.existing("batch_tasks", "name", *ppk, &names).await.map_err(at(first_line))?;
                    for b in list {
                        if id_clash.contains(&b.id) {
                            return Err(ImportError { line: b.line, error: StoreError::Conflict { what: "batch task", param: "id".into() } });
                        }
                        if name_clash.contains(&b.name) {
                            return Err(ImportError { line: b.line, error: StoreError::BatchNameTaken });
                        }
                    }
                    // Task ids are not checked ahead: a clash fails the insert
                    // below and is reported with the range of lines it spans.
                }
                let mut pks: HashMap<(i64, String), i64> = HashMap::new();
                for chunk in pending.chunks(BATCH_CHUNK) {
                    let mut q = sql::Query::new($store::POSITIONAL);
                    q.push(
                        "insert into batch_tasks (project_pk, id, name, name_lc, description, service_pk, service_name, \
                         service_name_lc, service_version, alg_name, company, task_type, priority, config, output, created_at, num_task",
                    );
                    for c in crate::domain::state::COUNTER_COLUMNS {
                        q.push(", ").push(c);
                    }
                    q.push(") values ");
                    for (i, b) in chunk.iter().enumerate() {
                        let mut counts = [0i64; 18];
                        for t in &b.tasks {
                            counts[t.state.index()] += 1;
                        }
                        q.push(if i > 0 { ", (" } else { "(" });
                        for (k, a) in [
                            Arg::Int(b.ppk),
                            Arg::Text(b.id.clone()),
                            Arg::Text(b.name.clone()),
                            Arg::Text(b.name.to_lowercase()),
                            Arg::Text(b.description.clone()),
                            Arg::Int(b.service.pk),
                            Arg::Text(b.service_name.clone()),
                            Arg::Text(b.service_name.to_lowercase()),
                            Arg::Text(b.service_version.clone()),
                            Arg::Text(b.service.alg_name.clone()),
                            Arg::Text(b.service.company.clone()),
                            Arg::Text(b.service.task_type.to_string()),
                            Arg::Text(b.priority.to_string()),
                            Arg::Text(b.config.clone()),
                            Arg::Text(b.output.clone()),
                            Arg::Int(b.created_at),
                            Arg::Int(b.tasks.len() as i64),
                        ]
                        .into_iter()
                        .chain(counts.into_iter().map(Arg::Int))
                        .enumerate()
                        {
                            if k > 0 {
                                q.push(", ");
                            }
                            q.bind(a);
                        }
                        q.push(")");
                    }
                    q.push(" returning pk, project_pk, id");
                    let line = chunk[0].line;
                    for r in bound(&q).fetch_all(&mut *self.tx).await.map_err(|e| {
                        at(line)(if is_unique_violation(&e) { StoreError::BatchNameTaken } else { e.into() })
                    })? {
                        let pk: i64 = r.try_get(0).map_err(|e| at(line)(e.into()))?;
                        let ppk: i64 = r.try_get(1).map_err(|e| at(line)(e.into()))?;
                        let id: String = r.try_get(2).map_err(|e| at(line)(e.into()))?;
                        pks.insert((ppk, id), pk);
                    }
                }
                let mut group_rows: Vec<(i64, i64, i64)> = Vec::new();
                let mut task_rows: Vec<(u64, i64, i64, &PendingTask)> = Vec::new();
                for b in &pending {
                    let bpk = pks.get(&(b.ppk, b.id.clone())).copied().unwrap_or(0);
                    for (pos, g) in b.group_pks.iter().enumerate() {
                        group_rows.push((bpk, pos as i64, *g));
                    }
                    for t in &b.tasks {
                        task_rows.push((b.line, b.ppk, bpk, t));
                    }
                    self.touched.insert(b.ppk);
                }
                                self.insert_triples("insert into batch_task_groups (batch_pk, position, group_pk) values ", &group_rows)
                    .await
                    .map_err(at(first_line))?;
                for chunk in task_rows.chunks(TASK_CHUNK) {
                    let mut q = sql::Query::new($store::POSITIONAL);
                    q.push("insert into tasks (project_pk, id, batch_pk, video_source_pk, state, created_at, updated_at) values ");
                    for (i, (_, ppk, bpk, t)) in chunk.iter().enumerate() {
                        q.push(if i > 0 { ", (" } else { "(" });
                        q.bind(Arg::Int(*ppk)).push(", ").bind(Arg::Text(t.id.clone())).push(", ").bind(Arg::Int(*bpk)).push(", ");
                        q.bind(Arg::Int(t.source_pk)).push(", ").bind(Arg::Int(t.state.index() as i64)).push(", ");
                        q.bind(Arg::Int(t.created_at)).push(", ").bind(Arg::Int(t.updated_at)).push(")");
                    }
                    let (from, to) = (chunk[0].0, chunk[chunk.len() - 1].0);
                    bound(&q).execute(&mut *self.tx).await.map_err(|e| {
                        if is_unique_violation(&e) {
                            ImportError {
                                line: from,
                                error: StoreError::Invalid(field::FieldError::new(
                                    "tasks.id",
                                    format!("a task id in lines {from} to {to} is used twice or exists already"),
                                )),
                            }
                        } else {
                            at(from)(e.into())
                        }
                    })?;
                }
                Ok(())
            }

            async fn flush_all(&mut self) -> Result<(), ImportError> {
                self.flush_sources().await?;
                self.flush_batches().await
            }

            async fn put_source(&mut self, line: u64, s: VideoSourceRecord, now: i64) -> StoreResult<()> {
                let ppk = self.project(&s.project_id).await?;
                field::check_id("id", &s.id)?;
                field::check_display_name("name", &s.name, 1, 64)?;
                field::check_text("url", &s.url, 2048)?;
                if s.url.trim().is_empty() {
                    return Err(field::FieldError::new("url", "url must not be empty").into());
                }
                let key = (ppk, s.id.clone());
                if self.sources.contains_key(&key) || self.pending_source_ids.contains(&key) {
                    return Err(StoreError::Conflict { what: "video source", param: "id".into() });
                }
                let mut group_pks = Vec::with_capacity(s.group_ids.len());
                for gid in &s.group_ids {
                    let gpk = self.group(ppk, gid, "group_ids").await?;
                    if group_pks.contains(&gpk) {
                        return Err(field::FieldError::new("group_ids", format!("group {gid:?} is listed twice")).into());
                    }
                    group_pks.push(gpk);
                }
                self.pending_source_ids.insert(key);
                self.pending_sources.push(PendingSource {
                    line,
                    ppk,
                    id: s.id,
                    name: s.name,
                    url: s.url,
                    created_at: s.created_at.unwrap_or(now),
                    group_pks,
                    deleted: s.deleted,
                });
                Ok(())
            }

            async fn put_batch(&mut self, line: u64, b: BatchTaskRecord) -> StoreResult<u64> {
                let ppk = self.project(&b.project_id).await?;
                field::check_batch_id("id", &b.id)?;
                field::check_batch_name("name", &b.name)?;
                let description = b.description.unwrap_or_default();
                field::check_text("description", &description, 500)?;
                let priority = crate::domain::field::parse_priority("priority", &b.priority)?;
                if self.batch_keys.contains(&(ppk, format!("i{}", b.id))) {
                    return Err(StoreError::Conflict { what: "batch task", param: "id".into() });
                }
                if self.batch_keys.contains(&(ppk, format!("n{}", b.name))) {
                    return Err(StoreError::BatchNameTaken);
                }
                let service = self.service(ppk, &b.service_name, &b.service_version).await?;
                let mut group_pks = Vec::with_capacity(b.group_ids.len());
                for gid in &b.group_ids {
                    let gpk = self.group(ppk, gid, "group_ids").await?;
                    if group_pks.contains(&gpk) {
                        return Err(field::FieldError::new("group_ids", format!("group {gid:?} is listed twice")).into());
                    }
                    group_pks.push(gpk);
                }
                let mut tasks = Vec::with_capacity(b.tasks.len());
                let mut seen_sources = HashSet::new();
                for t in b.tasks {
                    field::check_id("tasks.id", &t.id)?;
                    let state = t.state.parse::<TaskState>().map_err(|_| {
                        field::FieldError::new("tasks.state", format!("{:?} is not a task state", t.state))
                    })?;
                    let source_pk = self.source(ppk, &t.video_source_id).await?;
                    if !seen_sources.insert(source_pk) {
                        return Err(field::FieldError::new(
                            "tasks.video_source_id",
                            format!("video source {:?} has two tasks in this batch", t.video_source_id),
                        )
                        .into());
                    }
                    let created_at = t.created_at.unwrap_or(b.created_at);
                    tasks.push(PendingTask {
                        id: t.id,
                        source_pk,
                        state,
                        created_at,
                        updated_at: t.updated_at.unwrap_or(created_at),
                    });
                }
                let n = tasks.len() as u64;
                self.batch_keys.insert((ppk, format!("i{}", b.id)));
                self.batch_keys.insert((ppk, format!("n{}", b.name)));
                self.pending_tasks += tasks.len();
                self.pending_batches.push(PendingBatch {
                    line,
                    ppk,
                    id: b.id,
                    name: b.name,
                    description,
                    service_name: b.service_name,
                    service_version: b.service_version,
                    service,
                    priority,
                    config: b.config.unwrap_or_else(|| serde_json::json!({})).to_string(),
                    output: b.output.unwrap_or_else(|| serde_json::json!({})).to_string(),
                    created_at: b.created_at,
                    group_pks,
                    tasks,
                });
                Ok(n)
            }
        }

        #[async_trait]
        impl Importer for $importer {
            async fn put(&mut self, line: u64, record: DumpRecord) -> Result<ImportedCount, ImportError> {
                let now = now_millis();
                match record {
                    DumpRecord::VideoSource(s) => {
                        self.put_source(line, s, now).await.map_err(at(line))?;
                        if self.pending_sources.len() >= FLUSH_SOURCES {
                            self.flush_sources().await?;
                        }
                        Ok(ImportedCount::default())
                    }
                    DumpRecord::BatchTask(b) => {
                        // Tasks name sources: those must be written first.
                        self.flush_sources().await?;
                        let tasks = self.put_batch(line, b).await.map_err(at(line))?;
                        if self.pending_tasks >= FLUSH_TASKS || self.pending_batches.len() >= FLUSH_BATCHES {
                            self.flush_batches().await?;
                        }
                        Ok(ImportedCount { tasks })
                    }
                    other => {
                        self.flush_all().await?;
                        self.put_parent(other, now).await.map_err(at(line))?;
                        Ok(ImportedCount::default())
                    }
                }
            }

            async fn commit(self: Box<Self>) -> Result<(), ImportError> {
                let mut this = *self;
                this.flush_all().await?;
                let last = |e: StoreError| ImportError { line: 0, error: e };
                for p in &this.touched {
                    $store::record_change(&mut this.tx, this.origin, *p, 0).await.map_err(last)?;
                }
                this.tx.commit().await.map_err(|e| last(e.into()))?;
                for p in &this.touched {
                    this.model.forget(*p);
                }
                Ok(())
            }
        }

        impl $importer {
            /// Projects, users, services and groups: few, written at once.
            async fn put_parent(&mut self, record: DumpRecord, now: i64) -> StoreResult<()> {
                match record {
                    DumpRecord::Project(p) => {
                        let row = insert_project(&mut self.tx, &p.id, &p.name, p.created_at.unwrap_or(now)).await?;
                        self.projects.insert(row.id, row.pk);
                    }
                    DumpRecord::User(u) => {
                        insert_user(&mut self.tx, &u.name, &u.password_hash, &u.project_ids, u.created_at.unwrap_or(now)).await?;
                    }
                    DumpRecord::Service(s) => {
                        let ppk = self.project(&s.project_id).await?;
                        let deploy_type = DeployType::parse(&s.deploy_type)
                            .ok_or_else(|| field::FieldError::new("deploy_type", "deploy_type must be cloud or edge"))?;
                        let id = match s.id {
                            Some(id) => id,
                            None => random_hex(16)?,
                        };
                        insert_service(
                            &mut self.tx,
                            ppk,
                            &NewService {
                                id,
                                service_name: s.service_name,
                                service_version: s.service_version,
                                alg_name: s.alg_name,
                                company: s.company,
                                deploy_type,
                                deployed: s.deployed.unwrap_or(true),
                                created_at: s.created_at.unwrap_or(now),
                            },
                        )
                        .await?;
                    }
                    DumpRecord::VideoGroup(g) => {
                        let ppk = self.project(&g.project_id).await?;
                        insert_group(&mut self.tx, ppk, &g.id, &g.name, g.created_at.unwrap_or(now)).await?;
                    }
                    DumpRecord::VideoSource(_) | DumpRecord::BatchTask(_) => {}
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_sql_store;

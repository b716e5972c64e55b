//! The dump: every record, parents before children, in one read snapshot.

use super::catalogue::{
    group_from, service_from, source_from, GROUP_COLS, SERVICE_FIELDS, SERVICE_FROM, SOURCE_COLS,
};
use super::sql_store::SqlStore;
use super::{stored_state, StoreError, StoreResult};
use crate::domain::dump::{
    BatchTaskRecord, DumpRecord, EdgePoolRecord, ProjectRecord, ServiceRecord, SingleTaskRecord,
    TaskRecord, UserRecord, VideoGroupRecord, VideoSourceRecord,
};
use crate::store::prelude::*;
use crate::store::Importer;
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::mpsc;

/// Splits a `string_agg(..., ',')` list (`None`: no items).
fn split_ids(ids: Option<String>) -> Vec<String> {
    ids.map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Columns `batch_record` decodes, from `batch_tasks b`.
const BATCH_COLS: &str = "b.pk as pk, b.id as id, b.name as name, b.description as description, \
     b.service_name as service_name, b.service_version as service_version, b.priority as priority, \
     b.created_at as created_at, b.config as config, b.output as output, \
     b.schedule as schedule, b.resource_order_id as resource_order_id, \
     b.saved_as_template as saved_as_template, \
     (select string_agg(g.id, ',' order by bg.position) from batch_task_groups bg \
     join video_groups g on g.pk = bg.group_pk where bg.batch_pk = b.pk) as group_ids";

fn batch_record(
    b: &AnyRow,
    project_id: &str,
    tasks: Vec<TaskRecord>,
) -> StoreResult<BatchTaskRecord> {
    let description: String = b.try_get("description")?;
    let config: String = b.try_get("config")?;
    let output: String = b.try_get("output")?;
    let json = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .map_err(|e| StoreError::Internal(e.to_string()))
    };
    Ok(BatchTaskRecord {
        project_id: project_id.to_owned(),
        id: b.try_get("id")?,
        name: b.try_get("name")?,
        description: (!description.is_empty()).then_some(description),
        service_name: b.try_get("service_name")?,
        service_version: b.try_get("service_version")?,
        priority: b.try_get("priority")?,
        created_at: b.try_get("created_at")?,
        group_ids: split_ids(b.try_get("group_ids")?),
        config: Some(json(&config)?),
        output: Some(json(&output)?),
        schedule: json_of(b.try_get("schedule")?),
        resource_order_id: b.try_get("resource_order_id")?,
        saved_as_template: b.try_get::<i64, _>("saved_as_template")? != 0,
        tasks,
    })
}

/// Columns `task_record` decodes, with their joins.
const TASK_COLS: &str = "t.id as id, s.id as source_id, t.state as state, \
     t.created_at as created_at, t.updated_at as updated_at, t.target_roi as target_roi from tasks t \
     join video_sources s on s.pk = t.video_source_pk";

fn task_record(t: &AnyRow) -> StoreResult<TaskRecord> {
    Ok(TaskRecord {
        id: t.try_get("id")?,
        video_source_id: t.try_get("source_id")?,
        state: stored_state(t.try_get("state")?)?.as_str().to_owned(),
        created_at: Some(t.try_get("created_at")?),
        updated_at: Some(t.try_get("updated_at")?),
        target_roi: t.try_get("target_roi")?,
    })
}

/// Sends the records, each after the records it names.
struct Sink(mpsc::Sender<DumpRecord>);

impl Sink {
    async fn send(&self, r: DumpRecord) -> StoreResult<()> {
        self.0
            .send(r)
            .await
            .map_err(|_| StoreError::Internal("export reader went away".into()))
    }
}

/// Columns `single_task_record` decodes, with their joins.
const SINGLE_TASK_COLS: &str = "t.id as id, t.name as name, t.description as description, \
     v.service_name as service_name, coalesce(t.service_version, v.service_version) as service_version, \
     t.state as state, s.id as source_id, t.source_url as source_url, t.input as input, \
     t.output as output, t.config as config, t.schedule as schedule, \
     t.resource_order_id as resource_order_id, t.creator as creator, \
     t.created_at as created_at, t.updated_at as updated_at from tasks t \
     join services v on v.pk = t.service_pk left join video_sources s on s.pk = t.video_source_pk";

fn json_of(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn single_task_record(t: &AnyRow, project_id: &str) -> StoreResult<SingleTaskRecord> {
    let description: Option<String> = t.try_get("description")?;
    Ok(SingleTaskRecord {
        project_id: project_id.to_owned(),
        id: t.try_get("id")?,
        name: t.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
        description: description.filter(|d| !d.is_empty()),
        service_name: t.try_get("service_name")?,
        service_version: t.try_get("service_version")?,
        state: stored_state(t.try_get("state")?)?.as_str().to_owned(),
        video_source_id: t.try_get("source_id")?,
        source_url: t.try_get("source_url")?,
        input: json_of(t.try_get("input")?).unwrap_or(serde_json::Value::Null),
        output: json_of(t.try_get("output")?).unwrap_or(serde_json::Value::Null),
        config: json_of(t.try_get("config")?),
        schedule: json_of(t.try_get("schedule")?),
        resource_order_id: t.try_get("resource_order_id")?,
        creator: t.try_get("creator")?,
        created_at: Some(t.try_get("created_at")?),
        updated_at: Some(t.try_get("updated_at")?),
    })
}

/// A project's edge pools, services, groups, sources, batches with their
/// tasks, and single tasks.
async fn export_project(
    conn: &mut AnyConnection,
    out: &Sink,
    ppk: i64,
    pid: &str,
) -> StoreResult<()> {
    for r in sqlx::query(
        "select ep.pk as pk, ep.id as id, ep.name as name, ep.description as description, \
         ep.ief_service_instance_id as ief, ep.created_at as created_at, ep.updated_at as updated_at, \
         (select string_agg(n.node, ',' order by n.position) from edge_pool_nodes n \
         where n.pool_pk = ep.pk) as nodes from edge_pools ep where ep.project_pk = $1 order by ep.pk",
    )
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?
    {
        let description: String = r.try_get("description")?;
        out.send(DumpRecord::EdgePool(EdgePoolRecord {
            project_id: pid.to_owned(),
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            description: (!description.is_empty()).then_some(description),
            ief_service_instance_id: r.try_get("ief")?,
            nodes: split_ids(r.try_get("nodes")?),
            created_at: Some(r.try_get("created_at")?),
            updated_at: Some(r.try_get("updated_at")?),
        }))
        .await?;
    }
    for r in sqlx::query(&format!(
        "select {SERVICE_FIELDS}, v.stream_count as stream_count, v.deploy_config as deploy_config, \
         v.envs as envs{SERVICE_FROM} where v.project_pk = $1 order by v.pk"
    ))
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?
    {
        let s = service_from(&r)?;
        out.send(DumpRecord::Service(ServiceRecord {
            project_id: pid.to_owned(),
            id: Some(s.id),
            service_name: s.service_name,
            service_version: s.service_version,
            alg_name: s.alg_name,
            company: s.company,
            deploy_type: s.deploy_type.as_str().to_owned(),
            deployed: Some(s.deployed),
            created_at: Some(s.created_at),
            updated_at: Some(s.updated_at),
            description: (!s.description.is_empty()).then_some(s.description),
            pool_id: s.pool.map(|p| p.0),
            stream_count: r.try_get("stream_count")?,
            deploy_config: json_of(r.try_get("deploy_config")?),
            envs: json_of(r.try_get("envs")?),
        }))
        .await?;
    }
    for r in sqlx::query(&format!(
        "select {GROUP_COLS} where g.project_pk = $1 order by g.pk"
    ))
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?
    {
        let g = group_from(&r)?;
        out.send(DumpRecord::VideoGroup(VideoGroupRecord {
            project_id: pid.to_owned(),
            id: g.id,
            name: g.name,
            created_at: Some(g.created_at),
            updated_at: Some(g.updated_at),
            description: (!g.description.is_empty()).then_some(g.description),
            access_type: Some(g.access_type.as_str().to_owned()),
        }))
        .await?;
    }
    for r in sqlx::query(&format!(
        "select {SOURCE_COLS} where s.project_pk = $1 order by s.pk"
    ))
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?
    {
        let s = source_from(&r)?;
        out.send(DumpRecord::VideoSource(VideoSourceRecord {
            project_id: pid.to_owned(),
            id: s.id,
            name: s.name,
            url: s.url,
            group_ids: s.group_ids,
            created_at: Some(s.created_at),
            deleted: r.try_get::<i64, _>("deleted")? != 0,
            updated_at: Some(s.updated_at),
            access_type: Some(s.access_type.as_str().to_owned()),
            source_type: Some(s.source_type),
            type_config: Some(s.type_config),
            latitude: s.latitude,
            longitude: s.longitude,
            tags: s.tags,
        }))
        .await?;
    }
    let batches = sqlx::query(&format!(
        "select {BATCH_COLS} from batch_tasks b where b.project_pk = $1 order by b.pk"
    ))
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?;
    for b in &batches {
        let bpk: i64 = b.try_get("pk")?;
        let tasks = sqlx::query(&format!(
            "select {TASK_COLS} where t.batch_pk = $1 order by t.pk"
        ))
        .bind(bpk)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(task_record)
        .collect::<StoreResult<Vec<_>>>()?;
        out.send(DumpRecord::BatchTask(batch_record(b, pid, tasks)?))
            .await?;
    }
    for t in sqlx::query(&format!(
        "select {SINGLE_TASK_COLS} where t.project_pk = $1 and t.batch_pk is null order by t.pk"
    ))
    .bind(ppk)
    .fetch_all(&mut *conn)
    .await?
    {
        out.send(DumpRecord::Task(single_task_record(&t, pid)?))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl DumpStore for SqlStore {
    async fn begin_import(&self) -> StoreResult<Box<dyn Importer>> {
        super::import::begin_import(self).await
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn export(&self, out: mpsc::Sender<DumpRecord>) -> StoreResult<()> {
        let out = Sink(out);
        let mut tx = self.begin_read().await?;
        let conn: &mut AnyConnection = &mut tx;
        // The reader of the dump sets the pace.
        self.backend.allow_idle(&mut *conn).await?;
        let projects = sqlx::query("select pk, id, name, created_at from projects order by pk")
            .fetch_all(&mut *conn)
            .await?;
        for p in &projects {
            out.send(DumpRecord::Project(ProjectRecord {
                id: p.try_get("id")?,
                name: p.try_get("name")?,
                created_at: Some(p.try_get("created_at")?),
            }))
            .await?;
        }
        let users = sqlx::query(
            "select u.name as name, u.password_hash as password_hash, u.created_at as created_at, \
             (select string_agg(p.id, ',' order by p.pk) from user_projects up \
             join projects p on p.pk = up.project_pk where up.user_pk = u.pk) as project_ids \
             from users u order by u.pk",
        )
        .fetch_all(&mut *conn)
        .await?;
        for u in &users {
            out.send(DumpRecord::User(UserRecord {
                name: u.try_get("name")?,
                password_hash: u.try_get("password_hash")?,
                project_ids: split_ids(u.try_get("project_ids")?),
                created_at: Some(u.try_get("created_at")?),
            }))
            .await?;
        }
        for p in &projects {
            export_project(conn, &out, p.try_get("pk")?, &p.try_get::<String, _>("id")?).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

//! Algorithm services, and the row helpers that services, video groups and
//! video sources share (inserts, id lookups, the list query). Lists filter,
//! sort and page in SQL; the group and source operations are in `video.rs`.

use super::sql::{like_contains, Arg, Query};
use super::sql_store::{bound, SqlStore};
use super::{
    Deployment, Listed, Listing, NewService, NewVideoGroup, NewVideoSource, Service, ServiceFilter,
    ServiceSort, StoreError, StoreResult, VideoGroup, VideoSource,
};
use crate::domain::{alg_id_of, now_millis, DeployType};
use crate::store::prelude::*;
use crate::store::{conflict_if_unique, Entity};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Columns `service_from` decodes; they need `SERVICE_FROM`.
pub(super) const SERVICE_FIELDS: &str = "v.id as id, v.service_name as service_name, \
     v.service_version as service_version, v.alg_name as alg_name, v.company as company, \
     v.deploy_type as deploy_type, v.deployed as deployed, v.description as description, \
     v.created_at as created_at, v.updated_at as updated_at, ep.id as pool_id, \
     (select count(*) from workers w where w.lost = 0 and w.kind = 'edge' \
     and (w.pool = ep.name or w.name in \
     (select n.node from edge_pool_nodes n where n.pool_pk = ep.pk))) as pool_live";

/// The tables `SERVICE_FIELDS` reads.
pub(super) const SERVICE_FROM: &str =
    " from services v left join edge_pools ep on ep.pk = v.pool_pk";

pub(super) fn service_from(row: &AnyRow) -> StoreResult<Service> {
    let deploy: String = row.try_get("deploy_type")?;
    let pool_id: Option<String> = row.try_get("pool_id")?;
    let pool_live: i64 = row.try_get("pool_live")?;
    Ok(Service {
        id: row.try_get("id")?,
        service_name: row.try_get("service_name")?,
        service_version: row.try_get("service_version")?,
        alg_name: row.try_get("alg_name")?,
        company: row.try_get("company")?,
        deploy_type: DeployType::parse(&deploy).unwrap_or(DeployType::Cloud),
        deployed: row.try_get::<i64, _>("deployed")? != 0,
        description: row.try_get("description")?,
        pool: pool_id.map(|id| (id, pool_live > 0)),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Columns `group_from` decodes, from `video_groups g`.
pub(super) const GROUP_COLS: &str = "g.pk as pk, g.id as id, g.name as name, \
     g.description as description, g.access_type as access_type, g.created_at as created_at, \
     g.updated_at as updated_at, \
     (select count(*) from video_source_groups vsg join video_sources s on s.pk = vsg.source_pk \
     where vsg.group_pk = g.pk and s.deleted = 0) as num_sources, \
     (select count(*) from batch_task_groups bg where bg.group_pk = g.pk) as num_batch_tasks, \
     (select count(*) from tasks t join video_source_groups vsg on vsg.source_pk = t.video_source_pk \
     where vsg.group_pk = g.pk) as num_tasks, \
     (select string_agg(x.source_type, ',') from (select distinct s.source_type as source_type \
     from video_source_groups vsg join video_sources s on s.pk = vsg.source_pk \
     where vsg.group_pk = g.pk and s.deleted = 0) x) as source_types \
     from video_groups g";

pub(super) fn group_from(row: &AnyRow) -> StoreResult<VideoGroup> {
    let access: String = row.try_get("access_type")?;
    let types: Option<String> = row.try_get("source_types")?;
    let mut source_types: Vec<String> = types
        .map(|t| t.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    source_types.sort();
    Ok(VideoGroup {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        access_type: DeployType::parse(&access).unwrap_or(DeployType::Cloud),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        num_sources: row.try_get("num_sources")?,
        num_batch_tasks: row.try_get("num_batch_tasks")?,
        num_tasks: row.try_get("num_tasks")?,
        source_types,
    })
}

/// Columns `source_from` decodes, from `video_sources s`.
pub(super) const SOURCE_COLS: &str = "s.pk as pk, s.id as id, s.name as name, \
     s.access_type as access_type, s.source_type as source_type, s.type_config as type_config, \
     s.url as url, s.latitude as latitude, s.longitude as longitude, s.tags as tags, \
     s.created_at as created_at, s.updated_at as updated_at, s.deleted as deleted, \
     (select string_agg(g.id, ',' order by vsg.position) from video_source_groups vsg \
     join video_groups g on g.pk = vsg.group_pk where vsg.source_pk = s.pk) as group_ids, \
     (select count(*) from tasks t where t.video_source_pk = s.pk) as num_tasks \
     from video_sources s";

pub(super) fn source_from(row: &AnyRow) -> StoreResult<VideoSource> {
    let ids: Option<String> = row.try_get("group_ids")?;
    let access: String = row.try_get("access_type")?;
    let tags: String = row.try_get("tags")?;
    Ok(VideoSource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        access_type: DeployType::parse(&access).unwrap_or(DeployType::Cloud),
        source_type: row.try_get("source_type")?,
        type_config: row.try_get("type_config")?,
        url: row.try_get("url")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        group_ids: ids
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        num_tasks: row.try_get("num_tasks")?,
    })
}

pub(super) async fn insert_service(
    conn: &mut AnyConnection,
    project_pk: i64,
    s: &NewService,
) -> StoreResult<Service> {
    let dup: Option<i64> = sqlx::query_scalar(
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
        return Err(StoreError::conflict(Entity::Service, "service_version"));
    }
    let pk: i64 = sqlx::query_scalar(
        "insert into services (project_pk, id, service_name, service_version, alg_name, company, \
         deploy_type, deployed, description, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) returning pk",
    )
    .bind(project_pk)
    .bind(&s.id)
    .bind(&s.service_name)
    .bind(&s.service_version)
    .bind(&s.alg_name)
    .bind(&s.company)
    .bind(s.deploy_type.as_str())
    .bind(i64::from(s.deployed))
    .bind(&s.description)
    .bind(s.created_at)
    .fetch_one(&mut *conn)
    .await?;
    service_by_pk(conn, pk).await
}

async fn service_by_pk(conn: &mut AnyConnection, pk: i64) -> StoreResult<Service> {
    let row = sqlx::query(&format!(
        "select {SERVICE_FIELDS}{SERVICE_FROM} where v.pk = $1"
    ))
    .bind(pk)
    .fetch_one(&mut *conn)
    .await?;
    service_from(&row)
}

/// The service a path names: by its id, or by its algorithm id.
pub(super) async fn service_pk(
    conn: &mut AnyConnection,
    project_pk: i64,
    key: &str,
) -> StoreResult<Option<i64>> {
    let by_id: Option<i64> =
        sqlx::query_scalar("select pk from services where project_pk = $1 and id = $2")
            .bind(project_pk)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    if by_id.is_some() {
        return Ok(by_id);
    }
    let all = sqlx::query("select pk, id from services where project_pk = $1")
        .bind(project_pk)
        .fetch_all(&mut *conn)
        .await?;
    for r in &all {
        let id: String = r.try_get("id")?;
        if alg_id_of(&id) == key {
            return Ok(Some(r.try_get("pk")?));
        }
    }
    Ok(None)
}

pub(super) async fn insert_group(
    conn: &mut AnyConnection,
    project_pk: i64,
    g: &NewVideoGroup,
) -> StoreResult<i64> {
    let clash: Option<String> = sqlx::query_scalar(
        "select id from video_groups where project_pk = $1 and id = $2 \
         union all select id from video_groups where project_pk = $1 and name = $3 limit 1",
    )
    .bind(project_pk)
    .bind(&g.id)
    .bind(&g.name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(other) = clash {
        let param = if other == g.id {
            "id"
        } else {
            "video_group_name"
        };
        return Err(StoreError::conflict(Entity::VideoGroup, param));
    }
    let pk: i64 = sqlx::query_scalar(
        "insert into video_groups (project_pk, id, name, description, access_type, created_at, \
         updated_at) values ($1, $2, $3, $4, $5, $6, $6) returning pk",
    )
    .bind(project_pk)
    .bind(&g.id)
    .bind(&g.name)
    .bind(&g.description)
    .bind(g.access_type.as_str())
    .bind(g.created_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| conflict_if_unique(e, Entity::VideoGroup, "video_group_name"))?;
    Ok(pk)
}

pub(super) async fn group_pk(
    conn: &mut AnyConnection,
    project_pk: i64,
    id: &str,
) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("select pk from video_groups where project_pk = $1 and id = $2")
            .bind(project_pk)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// A source that is not deleted.
pub(super) async fn source_pk(
    conn: &mut AnyConnection,
    project_pk: i64,
    id: &str,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "select pk from video_sources where project_pk = $1 and id = $2 and deleted = 0",
    )
    .bind(project_pk)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The pks of `ids` (sources when `sources`, else groups), each once, in
/// order; an unknown one is `NotFound` naming `param`.
pub(super) async fn pks_of(
    conn: &mut AnyConnection,
    project_pk: i64,
    ids: &[String],
    sources: bool,
    param: &str,
) -> StoreResult<Vec<i64>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let pk = if sources {
            source_pk(conn, project_pk, id).await?
        } else {
            group_pk(conn, project_pk, id).await?
        };
        let what = if sources {
            Entity::VideoSource
        } else {
            Entity::VideoGroup
        };
        let pk = pk.ok_or_else(|| StoreError::not_found(what, param))?;
        if !out.contains(&pk) {
            out.push(pk);
        }
    }
    Ok(out)
}

/// Adds sources to a group, after its last member.
pub(super) async fn add_members(
    conn: &mut AnyConnection,
    group_pk: i64,
    sources: &[i64],
) -> StoreResult<()> {
    for spk in sources {
        sqlx::query(
            "insert into video_source_groups (source_pk, position, group_pk) \
             select $1, (select coalesce(max(position), -1) + 1 from video_source_groups \
             where source_pk = $1), $2 where not exists \
             (select 1 from video_source_groups where source_pk = $1 and group_pk = $2)",
        )
        .bind(*spk)
        .bind(group_pk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_source(
    conn: &mut AnyConnection,
    project_pk: i64,
    s: &NewVideoSource,
) -> StoreResult<()> {
    let exists: Option<i64> =
        sqlx::query_scalar("select pk from video_sources where project_pk = $1 and id = $2")
            .bind(project_pk)
            .bind(&s.id)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_some() {
        return Err(StoreError::conflict(Entity::VideoSource, "id"));
    }
    let group_pks = pks_of(conn, project_pk, &s.group_ids, false, "video_group_ids").await?;
    let spk: i64 = sqlx::query_scalar(
        "insert into video_sources (project_pk, id, name, url, access_type, source_type, \
         type_config, latitude, longitude, tags, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) returning pk",
    )
    .bind(project_pk)
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.url)
    .bind(s.access_type.as_str())
    .bind(&s.source_type)
    .bind(&s.type_config)
    .bind(&s.latitude)
    .bind(&s.longitude)
    .bind(serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into()))
    .bind(s.created_at)
    .fetch_one(&mut *conn)
    .await?;
    for gpk in group_pks {
        add_members(conn, gpk, &[spk]).await?;
    }
    Ok(())
}

/// `and lower(col) like '%x%'` for a case-insensitive literal substring.
pub(super) fn push_like(q: &mut Query, col: &str, needle: &str) {
    q.push(" and lower(")
        .push(col)
        .push(") like ")
        .bind(Arg::Text(like_contains(&needle.to_lowercase())))
        .push(" escape '\\'");
}

/// Appends `order by …` and the page to `q`, and runs it with a count of
/// every match and of every row of the project.
pub(super) async fn list<T>(
    conn: &mut AnyConnection,
    mut q: Query,
    count: Query,
    (total_sql, project_pk): (&str, i64),
    order: (&str, bool, &str),
    page: Option<super::Page>,
    decode: fn(&AnyRow) -> StoreResult<T>,
) -> StoreResult<Listed<T>> {
    let (col, descending, key) = order;
    let dir = if descending { "desc" } else { "asc" };
    q.push(" order by ")
        .push(col)
        .push(" ")
        .push(dir)
        .push(", ")
        .push(key)
        .push(" ")
        .push(dir);
    if let Some(p) = page {
        q.push(" limit ")
            .bind(Arg::Int(i64::try_from(p.limit).unwrap_or(i64::MAX)))
            .push(" offset ")
            .bind(Arg::Int(i64::try_from(p.offset).unwrap_or(i64::MAX)));
    }
    let matching: i64 = bound(&count).fetch_one(&mut *conn).await?.try_get("n")?;
    let total: i64 = sqlx::query_scalar(total_sql)
        .bind(project_pk)
        .fetch_one(&mut *conn)
        .await?;
    let items = bound(&q)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(decode)
        .collect::<StoreResult<Vec<T>>>()?;
    Ok(Listed {
        total: total as u64,
        count: matching as u64,
        items,
    })
}

pub(super) fn push_in(q: &mut Query, col: &str, items: &[String]) {
    if !items.is_empty() {
        q.push(" and ").push(col).push(" in ").bind_list(items);
    }
}

#[async_trait]
impl CatalogueStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_service(&self, project_pk: i64, s: &NewService) -> StoreResult<Service> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let out = insert_service(&mut tx, project_pk, s).await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_services(
        &self,
        project_pk: i64,
        filter: &ServiceFilter,
        listing: Listing<ServiceSort>,
    ) -> StoreResult<Listed<Service>> {
        let positional = self.backend.positional();
        let filters = |q: &mut Query| {
            q.push(" where v.project_pk = ").bind(Arg::Int(project_pk));
            if let Some(n) = &filter.name_like {
                push_like(q, "v.service_name", n);
            }
            if let Some(d) = filter.deployed {
                q.push(" and v.deployed = ").bind(Arg::Int(i64::from(d)));
            }
        };
        let mut q = Query::new(positional);
        q.push("select ").push(SERVICE_FIELDS).push(SERVICE_FROM);
        filters(&mut q);
        let mut count = Query::new(positional);
        count.push("select count(*) as n from services v");
        filters(&mut count);
        let col = match listing.sort {
            ServiceSort::CreatedAt => "v.created_at",
            ServiceSort::FunctionVersion => "v.service_version",
        };
        let mut tx = self.begin_read().await?;
        let out = list(
            &mut tx,
            q,
            count,
            (
                "select count(*) from services where project_pk = $1",
                project_pk,
            ),
            (col, listing.descending, "v.pk"),
            listing.page,
            service_from,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_service(&self, project_pk: i64, key: &str) -> StoreResult<Option<Service>> {
        let mut conn = self.pool.acquire().await?;
        match service_pk(&mut conn, project_pk, key).await? {
            Some(pk) => Ok(Some(service_by_pk(&mut conn, pk).await?)),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn deploy_service(
        &self,
        project_pk: i64,
        key: &str,
        d: &Deployment,
    ) -> StoreResult<Service> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let pk = service_pk(&mut tx, project_pk, key)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::Service, "alg_id"))?;
        let pool_pk: Option<i64> = match &d.pool_id {
            Some(id) => Some(
                sqlx::query_scalar("select pk from edge_pools where project_pk = $1 and id = $2")
                    .bind(project_pk)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::not_found(Entity::EdgePool, "pool_id"))?,
            ),
            None => None,
        };
        sqlx::query(
            "update services set deployed = 1, pool_pk = $1, stream_count = $2, deploy_config = $3, \
             envs = $4, updated_at = $5 where pk = $6",
        )
        .bind(pool_pk)
        .bind(d.stream_count)
        .bind(d.deploy_config.as_ref().map(|v| v.to_string()))
        .bind(d.envs.as_ref().map(|v| v.to_string()))
        .bind(now_millis())
        .bind(pk)
        .execute(&mut *tx)
        .await?;
        let s = service_by_pk(&mut tx, pk).await?;
        tx.commit().await?;
        Ok(s)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn undeploy_service(&self, project_pk: i64, key: &str) -> StoreResult<Service> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let pk = service_pk(&mut tx, project_pk, key)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::Service, "alg_id"))?;
        sqlx::query("update services set deployed = 0, updated_at = $1 where pk = $2")
            .bind(now_millis())
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        let s = service_by_pk(&mut tx, pk).await?;
        tx.commit().await?;
        Ok(s)
    }
}

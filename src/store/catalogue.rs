//! Algorithm services, video groups and video sources.

use super::sql_store::SqlStore;
use super::{NewService, Page, Service, StoreError, StoreResult, VideoGroup, VideoSource};
use crate::domain::field;
use crate::store::prelude::*;
use crate::store::Entity;
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Columns `service_from` decodes.
pub(super) const SERVICE_COLS: &str =
    "id, service_name, service_version, alg_name, company, deploy_type, deployed, created_at";

pub(super) fn service_from(row: &AnyRow) -> StoreResult<Service> {
    Ok(Service {
        id: row.try_get("id")?,
        service_name: row.try_get("service_name")?,
        service_version: row.try_get("service_version")?,
        alg_name: row.try_get("alg_name")?,
        company: row.try_get("company")?,
        deploy_type: row.try_get("deploy_type")?,
        deployed: row.try_get::<i64, _>("deployed")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

/// Columns `group_from` decodes.
pub(super) const GROUP_COLS: &str = "id, name, created_at";

pub(super) fn group_from(row: &AnyRow) -> StoreResult<VideoGroup> {
    Ok(VideoGroup {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Columns `source_from` decodes, from `video_sources s`.
pub(super) const SOURCE_COLS: &str = "s.id as id, s.name as name, s.url as url, \
     (select string_agg(g.id, ',' order by vsg.position) from video_source_groups vsg \
     join video_groups g on g.pk = vsg.group_pk where vsg.source_pk = s.pk) as group_ids, \
     s.created_at as created_at";

pub(super) fn source_from(row: &AnyRow) -> StoreResult<VideoSource> {
    let ids: Option<String> = row.try_get("group_ids")?;
    Ok(VideoSource {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        group_ids: ids
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn insert_service(
    conn: &mut AnyConnection,
    project_pk: i64,
    s: &NewService,
) -> StoreResult<Service> {
    field::check_id("id", &s.id)?;
    field::check_service_token("service_name", &s.service_name)?;
    field::check_service_token("service_version", &s.service_version)?;
    field::check_display_name("alg_name", &s.alg_name, 1, 64)?;
    field::check_display_name("company", &s.company, 1, 64)?;
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
    let row = sqlx::query(&format!(
        "insert into services (project_pk, id, service_name, service_version, alg_name, company, \
         deploy_type, deployed, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         returning {SERVICE_COLS}"
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

pub(super) async fn insert_group(
    conn: &mut AnyConnection,
    project_pk: i64,
    id: &str,
    name: &str,
    created_at: i64,
) -> StoreResult<VideoGroup> {
    field::check_id("id", id)?;
    field::check_display_name("name", name, 1, 64)?;
    let clash: Option<String> = sqlx::query_scalar(
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
        return Err(StoreError::Conflict {
            what: Entity::VideoGroup,
            param: param.into(),
        });
    }
    let row = sqlx::query(&format!(
        "insert into video_groups (project_pk, id, name, created_at) values ($1, $2, $3, $4) \
         returning {GROUP_COLS}"
    ))
    .bind(project_pk)
    .bind(id)
    .bind(name)
    .bind(created_at)
    .fetch_one(&mut *conn)
    .await?;
    group_from(&row)
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

async fn insert_source(
    conn: &mut AnyConnection,
    project_pk: i64,
    s: &VideoSource,
) -> StoreResult<VideoSource> {
    field::check_id("id", &s.id)?;
    field::check_display_name("name", &s.name, 1, 64)?;
    field::check_text("url", &s.url, 2048)?;
    if s.url.trim().is_empty() {
        return Err(field::FieldError::new("url", "url must not be empty").into());
    }
    let exists: Option<i64> =
        sqlx::query_scalar("select pk from video_sources where project_pk = $1 and id = $2")
            .bind(project_pk)
            .bind(&s.id)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_some() {
        return Err(StoreError::conflict(Entity::VideoSource, "id"));
    }
    let mut group_pks = Vec::with_capacity(s.group_ids.len());
    for gid in &s.group_ids {
        let gpk = group_pk(conn, project_pk, gid)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoGroup, "group_ids"))?;
        if group_pks.contains(&gpk) {
            return Err(field::FieldError::new(
                "group_ids",
                format!("group {gid:?} is listed twice"),
            )
            .into());
        }
        group_pks.push(gpk);
    }
    let spk: i64 = sqlx::query_scalar(
        "insert into video_sources (project_pk, id, name, url, created_at) \
         values ($1, $2, $3, $4, $5) returning pk",
    )
    .bind(project_pk)
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.url)
    .bind(s.created_at)
    .fetch_one(&mut *conn)
    .await?;
    for (pos, gpk) in group_pks.iter().enumerate() {
        sqlx::query(
            "insert into video_source_groups (source_pk, position, group_pk) values ($1, $2, $3)",
        )
        .bind(spk)
        .bind(pos as i64)
        .bind(*gpk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(s.clone())
}

/// One page of a project's rows: `count_sql` takes the project as `$1`,
/// `select_sql` also the limit and offset as `$2` and `$3`.
async fn paged<T>(
    conn: &mut AnyConnection,
    count_sql: &str,
    select_sql: &str,
    project_pk: i64,
    page: Page,
    decode: fn(&AnyRow) -> StoreResult<T>,
) -> StoreResult<(u64, Vec<T>)> {
    let count: i64 = sqlx::query_scalar(count_sql)
        .bind(project_pk)
        .fetch_one(&mut *conn)
        .await?;
    let rows = sqlx::query(select_sql)
        .bind(project_pk)
        .bind(i64::try_from(page.limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(page.offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    let items = rows.iter().map(decode).collect::<StoreResult<Vec<T>>>()?;
    Ok((count as u64, items))
}

#[async_trait]
impl CatalogueStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_service(&self, project_pk: i64, s: &NewService) -> StoreResult<Service> {
        let mut tx = self.begin_write().await?;
        let out = insert_service(&mut tx, project_pk, s).await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_services(&self, project_pk: i64, page: Page) -> StoreResult<(u64, Vec<Service>)> {
        let mut tx = self.begin_read().await?;
        let out = paged(
            &mut tx,
            "select count(*) from services where project_pk = $1",
            &format!(
                "select {SERVICE_COLS} from services where project_pk = $1 order by pk limit $2 offset $3"
            ),
            project_pk,
            page,
            service_from,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_service(&self, project_pk: i64, id: &str) -> StoreResult<Option<Service>> {
        let row = sqlx::query(&format!(
            "select {SERVICE_COLS} from services where project_pk = $1 and id = $2"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(service_from).transpose()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_video_group(
        &self,
        project_pk: i64,
        id: &str,
        name: &str,
        created_at: i64,
    ) -> StoreResult<VideoGroup> {
        let mut tx = self.begin_write().await?;
        let g = insert_group(&mut tx, project_pk, id, name, created_at).await?;
        tx.commit().await?;
        Ok(g)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_video_groups(
        &self,
        project_pk: i64,
        page: Page,
    ) -> StoreResult<(u64, Vec<VideoGroup>)> {
        let mut tx = self.begin_read().await?;
        let out = paged(
            &mut tx,
            "select count(*) from video_groups where project_pk = $1",
            &format!(
                "select {GROUP_COLS} from video_groups where project_pk = $1 order by pk limit $2 offset $3"
            ),
            project_pk,
            page,
            group_from,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_video_group(&self, project_pk: i64, id: &str) -> StoreResult<Option<VideoGroup>> {
        let row = sqlx::query(&format!(
            "select {GROUP_COLS} from video_groups where project_pk = $1 and id = $2"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from).transpose()
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_video_source(
        &self,
        project_pk: i64,
        s: &VideoSource,
    ) -> StoreResult<VideoSource> {
        let mut tx = self.begin_write().await?;
        let out = insert_source(&mut tx, project_pk, s).await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn delete_video_source(&self, project_pk: i64, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let spk = source_pk(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "source_id"))?;
        let used: Option<i64> =
            sqlx::query_scalar("select pk from tasks where video_source_pk = $1 limit 1")
                .bind(spk)
                .fetch_optional(&mut *tx)
                .await?;
        let sql = if used.is_some() {
            "update video_sources set deleted = 1 where pk = $1"
        } else {
            "delete from video_sources where pk = $1"
        };
        sqlx::query(sql).bind(spk).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_video_sources(
        &self,
        project_pk: i64,
        page: Page,
    ) -> StoreResult<(u64, Vec<VideoSource>)> {
        let mut tx = self.begin_read().await?;
        let out = paged(
            &mut tx,
            "select count(*) from video_sources where project_pk = $1 and deleted = 0",
            &format!(
                "select {SOURCE_COLS} from video_sources s where s.project_pk = $1 and s.deleted = 0 \
                 order by s.pk limit $2 offset $3"
            ),
            project_pk,
            page,
            source_from,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_video_source(
        &self,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<VideoSource>> {
        let row = sqlx::query(&format!(
            "select {SOURCE_COLS} from video_sources s where s.project_pk = $1 and s.id = $2 \
             and s.deleted = 0"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(source_from).transpose()
    }
}

//! Video groups and video sources: where tasks read their streams. Lists
//! filter, sort and page in SQL.

use super::catalogue::{
    add_members, group_from, group_pk, insert_group, insert_source, list, pks_of, push_in,
    push_like, source_from, source_pk, GROUP_COLS, SOURCE_COLS,
};
use super::sql::{like_contains, Arg, Query};
use super::sql_store::{bound, SqlStore};
use super::{
    GroupFilter, GroupSort, GroupUpdate, Listed, Listing, NewVideoGroup, NewVideoSource,
    SourceFilter, SourceList, SourceSort, SourceUpdate, StoreError, StoreResult, VideoGroup,
    VideoSource,
};
use crate::domain::{now_millis, DeployType};
use crate::store::prelude::*;
use crate::store::Entity;
use async_trait::async_trait;
use sqlx::AnyConnection;

fn kinds(k: &[DeployType]) -> Vec<String> {
    k.iter().map(|k| k.as_str().to_owned()).collect()
}

fn group_filters(q: &mut Query, project_pk: i64, f: &GroupFilter) {
    q.push(" where g.project_pk = ").bind(Arg::Int(project_pk));
    if let Some(n) = &f.name_like {
        push_like(q, "g.name", n);
    }
    push_in(q, "g.access_type", &kinds(&f.access_types));
    if f.has_task {
        q.push(" and exists (select 1 from batch_task_groups bg where bg.group_pk = g.pk)");
    }
    if !f.source_types.is_empty() {
        q.push(
            " and exists (select 1 from video_source_groups vsg join video_sources s \
             on s.pk = vsg.source_pk where vsg.group_pk = g.pk and s.deleted = 0",
        );
        push_in(q, "s.source_type", &f.source_types);
        q.push(")");
    }
}

fn source_filters(q: &mut Query, project_pk: i64, f: &SourceFilter) {
    q.push(" where s.project_pk = ")
        .bind(Arg::Int(project_pk))
        .push(" and s.deleted = 0");
    if let Some(n) = &f.name_like {
        push_like(q, "s.name", n);
    }
    if let Some(n) = &f.group_name_like {
        q.push(
            " and exists (select 1 from video_source_groups vsg join video_groups g \
             on g.pk = vsg.group_pk where vsg.source_pk = s.pk",
        );
        push_like(q, "g.name", n);
        q.push(")");
    }
    push_in(q, "s.source_type", &f.types);
    push_in(q, "s.access_type", &kinds(&f.access_types));
    if !f.group_ids.is_empty() {
        q.push(
            " and exists (select 1 from video_source_groups vsg join video_groups g \
             on g.pk = vsg.group_pk where vsg.source_pk = s.pk",
        );
        push_in(q, "g.id", &f.group_ids);
        q.push(")");
    }
    if let Some(t) = &f.tag {
        // Tags are stored as a JSON array of names without quotes.
        q.push(" and s.tags like ")
            .bind(Arg::Text(like_contains(&format!("\"{t}\""))))
            .push(" escape '\\'");
    }
}

impl SqlStore {
    async fn group_by_id(
        &self,
        conn: &mut AnyConnection,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<VideoGroup>> {
        let row = sqlx::query(&format!(
            "select {GROUP_COLS} where g.project_pk = $1 and g.id = $2"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(group_from).transpose()
    }

    async fn source_by_id(
        &self,
        conn: &mut AnyConnection,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<VideoSource>> {
        let row = sqlx::query(&format!(
            "select {SOURCE_COLS} where s.project_pk = $1 and s.id = $2 and s.deleted = 0"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(source_from).transpose()
    }

    /// The groups `ids` name, with their figures.
    async fn groups_named(
        &self,
        conn: &mut AnyConnection,
        project_pk: i64,
        ids: &[String],
    ) -> StoreResult<Vec<VideoGroup>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Query::new(self.backend.positional());
        q.push("select ")
            .push(GROUP_COLS)
            .push(" where g.project_pk = ")
            .bind(Arg::Int(project_pk))
            .push(" and g.id in ")
            .bind_list(ids);
        bound(&q)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(group_from)
            .collect()
    }
}

#[async_trait]
impl VideoStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_video_group(
        &self,
        project_pk: i64,
        g: &NewVideoGroup,
    ) -> StoreResult<VideoGroup> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let sources = pks_of(&mut tx, project_pk, &g.source_ids, true, "video_source_ids").await?;
        let gpk = insert_group(&mut tx, project_pk, g).await?;
        add_members(&mut tx, gpk, &sources).await?;
        let out = self
            .group_by_id(&mut tx, project_pk, &g.id)
            .await?
            .ok_or_else(|| StoreError::Internal("a group just inserted is gone".into()))?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_video_groups(
        &self,
        project_pk: i64,
        filter: &GroupFilter,
        listing: Listing<GroupSort>,
    ) -> StoreResult<Listed<VideoGroup>> {
        let positional = self.backend.positional();
        let mut q = Query::new(positional);
        q.push("select ").push(GROUP_COLS);
        group_filters(&mut q, project_pk, filter);
        let mut count = Query::new(positional);
        count.push("select count(*) as n from video_groups g");
        group_filters(&mut count, project_pk, filter);
        let col = match listing.sort {
            GroupSort::CreateAt => "created_at",
            GroupSort::ModifyAt => "updated_at",
            GroupSort::NumVideoSource => "num_sources",
            GroupSort::NumTask => "num_tasks",
        };
        let mut tx = self.begin_read().await?;
        let out = list(
            &mut tx,
            q,
            count,
            (
                "select count(*) from video_groups where project_pk = $1",
                project_pk,
            ),
            (col, listing.descending, "pk"),
            listing.page,
            group_from,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_video_group(&self, project_pk: i64, id: &str) -> StoreResult<Option<VideoGroup>> {
        let mut conn = self.pool.acquire().await?;
        self.group_by_id(&mut conn, project_pk, id).await
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn update_video_group(
        &self,
        project_pk: i64,
        id: &str,
        u: &GroupUpdate,
    ) -> StoreResult<VideoGroup> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let gpk = group_pk(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoGroup, "video_group_id"))?;
        if let Some(name) = &u.name {
            let clash: Option<i64> = sqlx::query_scalar(
                "select pk from video_groups where project_pk = $1 and name = $2 and pk <> $3",
            )
            .bind(project_pk)
            .bind(name)
            .bind(gpk)
            .fetch_optional(&mut *tx)
            .await?;
            if clash.is_some() {
                return Err(StoreError::conflict(Entity::VideoGroup, "video_group_name"));
            }
            sqlx::query("update video_groups set name = $1 where pk = $2")
                .bind(name)
                .bind(gpk)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(d) = &u.description {
            sqlx::query("update video_groups set description = $1 where pk = $2")
                .bind(d)
                .bind(gpk)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(ids) = &u.source_ids {
            let sources = pks_of(&mut tx, project_pk, ids, true, "video_source_ids").await?;
            sqlx::query("delete from video_source_groups where group_pk = $1")
                .bind(gpk)
                .execute(&mut *tx)
                .await?;
            add_members(&mut tx, gpk, &sources).await?;
        }
        sqlx::query("update video_groups set updated_at = $1 where pk = $2")
            .bind(now_millis())
            .bind(gpk)
            .execute(&mut *tx)
            .await?;
        // Batches list their groups' names: they must follow a rename.
        let batches: Vec<i64> =
            sqlx::query_scalar("select batch_pk from batch_task_groups where group_pk = $1")
                .bind(gpk)
                .fetch_all(&mut *tx)
                .await?;
        for b in &batches {
            self.record_change(&mut tx, project_pk, *b).await?;
        }
        let out = self
            .group_by_id(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoGroup, "video_group_id"))?;
        tx.commit().await?;
        for b in batches {
            self.after_write(project_pk, b).await;
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn delete_video_group(&self, project_pk: i64, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let gpk = group_pk(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoGroup, "video_group_id"))?;
        let used: Option<i64> = sqlx::query_scalar(
            "select batch_pk from batch_task_groups where group_pk = $1 limit 1",
        )
        .bind(gpk)
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_some() {
            return Err(StoreError::NotAllowed(
                "the video group is used by a batch task; update or delete the batch first".into(),
            ));
        }
        sqlx::query("delete from video_source_groups where group_pk = $1")
            .bind(gpk)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from video_groups where pk = $1")
            .bind(gpk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_video_source(
        &self,
        project_pk: i64,
        s: &NewVideoSource,
    ) -> StoreResult<VideoSource> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        insert_source(&mut tx, project_pk, s).await?;
        let out = self
            .source_by_id(&mut tx, project_pk, &s.id)
            .await?
            .ok_or_else(|| StoreError::Internal("a source just inserted is gone".into()))?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn update_video_source(
        &self,
        project_pk: i64,
        id: &str,
        u: &SourceUpdate,
    ) -> StoreResult<VideoSource> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let spk = source_pk(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "video_source_id"))?;
        let text = |v: &Option<String>| v.clone();
        for (col, v) in [
            ("name", text(&u.name)),
            ("latitude", text(&u.latitude)),
            ("longitude", text(&u.longitude)),
            ("type_config", u.type_config.as_ref().map(|t| t.0.clone())),
            ("url", u.type_config.as_ref().map(|t| t.1.clone())),
            (
                "tags",
                u.tags
                    .as_ref()
                    .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into())),
            ),
        ] {
            if let Some(v) = v {
                // `col` comes from the fixed list above.
                sqlx::query(&format!(
                    "update video_sources set {col} = $1 where pk = $2"
                ))
                .bind(v)
                .bind(spk)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("update video_sources set updated_at = $1 where pk = $2")
            .bind(now_millis())
            .bind(spk)
            .execute(&mut *tx)
            .await?;
        // A batch over exactly this source shows its name in the list.
        let batches: Vec<i64> = sqlx::query_scalar(
            "select distinct batch_pk from tasks where video_source_pk = $1 and batch_pk is not null",
        )
        .bind(spk)
        .fetch_all(&mut *tx)
        .await?;
        for b in &batches {
            self.record_change(&mut tx, project_pk, *b).await?;
        }
        let out = self
            .source_by_id(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "video_source_id"))?;
        tx.commit().await?;
        for b in batches {
            self.after_write(project_pk, b).await;
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn delete_video_source(&self, project_pk: i64, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let spk = source_pk(&mut tx, project_pk, id)
            .await?
            .ok_or_else(|| StoreError::not_found(Entity::VideoSource, "video_source_id"))?;
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
        filter: &SourceFilter,
        listing: Listing<SourceSort>,
    ) -> StoreResult<SourceList> {
        let positional = self.backend.positional();
        let mut q = Query::new(positional);
        q.push("select ").push(SOURCE_COLS);
        source_filters(&mut q, project_pk, filter);
        let mut count = Query::new(positional);
        count.push("select count(*) as n from video_sources s");
        source_filters(&mut count, project_pk, filter);
        let col = match listing.sort {
            SourceSort::CreateAt => "created_at",
            SourceSort::NumTask => "num_tasks",
            // No configuration templates are kept: every source has none.
            SourceSort::NumTemplate => "pk",
        };
        let mut tx = self.begin_read().await?;
        let sources = list(
            &mut tx,
            q,
            count,
            (
                "select count(*) from video_sources where project_pk = $1 and deleted = 0",
                project_pk,
            ),
            (col, listing.descending, "pk"),
            listing.page,
            source_from,
        )
        .await?;
        let mut ids: Vec<String> = sources
            .items
            .iter()
            .flat_map(|s| s.group_ids.iter().cloned())
            .collect();
        ids.sort();
        ids.dedup();
        let groups = self.groups_named(&mut tx, project_pk, &ids).await?;
        tx.commit().await?;
        Ok(SourceList { sources, groups })
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_video_source(
        &self,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<(VideoSource, Vec<VideoGroup>)>> {
        let mut tx = self.begin_read().await?;
        let Some(s) = self.source_by_id(&mut tx, project_pk, id).await? else {
            return Ok(None);
        };
        let groups = self.groups_named(&mut tx, project_pk, &s.group_ids).await?;
        tx.commit().await?;
        Ok(Some((s, groups)))
    }
}

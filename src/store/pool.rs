//! Edge pools: named sets of edge workers. A worker belongs to a pool when
//! the pool lists its name as a node, or when it joined with `--pool NAME`.

use super::sql::{like_contains, Arg, Query};
use super::sql_store::{bound, SqlStore};
use super::{
    EdgePool, Listed, Listing, NewEdgePool, PoolFilter, PoolNode, PoolSort, StoreError, StoreResult,
};
use crate::domain::DeployType;
use crate::store::prelude::*;
use crate::store::{conflict_if_unique, Entity};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Columns `pool_from` decodes (nodes are read apart), from `edge_pools ep`.
const POOL_COLS: &str = "ep.pk as pk, ep.id as id, ep.name as name, \
     ep.description as description, ep.ief_service_instance_id as ief_service_instance_id, \
     ep.created_at as created_at, ep.updated_at as updated_at from edge_pools ep";

/// `ep` is Running while one of its workers is live.
const POOL_LIVE: &str = "exists (select 1 from workers w where w.lost = 0 and w.kind = 'edge' \
     and (w.pool = ep.name \
     or w.name in (select n.node from edge_pool_nodes n where n.pool_pk = ep.pk)))";

fn pool_from(r: &AnyRow) -> StoreResult<(i64, EdgePool)> {
    Ok((
        r.try_get("pk")?,
        EdgePool {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            ief_service_instance_id: r.try_get("ief_service_instance_id")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            nodes: Vec::new(),
        },
    ))
}

/// The members of a pool: listed nodes (in order), then workers that joined
/// by name.
async fn nodes_of(
    conn: &mut AnyConnection,
    pool_pk: i64,
    pool_name: &str,
) -> StoreResult<Vec<PoolNode>> {
    let rows = sqlx::query(
        "select n.node as name, w.id as worker_id, w.kind as kind, w.slots as slots, \
         w.lost as lost from edge_pool_nodes n \
         left join workers w on w.name = n.node where n.pool_pk = $1 \
         union all select w.name as name, w.id as worker_id, w.kind as kind, w.slots as slots, \
         w.lost as lost from workers w where w.pool = $2 \
         and w.name not in (select node from edge_pool_nodes where pool_pk = $1)",
    )
    .bind(pool_pk)
    .bind(pool_name)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let worker_id: Option<String> = r.try_get("worker_id")?;
            let lost: Option<i64> = r.try_get("lost")?;
            let kind = r
                .try_get::<Option<String>, _>("kind")?
                .as_deref()
                .and_then(DeployType::parse);
            Ok(PoolNode {
                name: r.try_get("name")?,
                // Live as the scheduler sees it (not yet marked lost), as
                // `POOL_LIVE` counts; a cloud worker that shares a node's
                // name runs no edge task.
                live: worker_id.is_some() && lost == Some(0) && kind == Some(DeployType::Edge),
                worker_id,
                kind,
                slots: r.try_get::<Option<i64>, _>("slots")?.unwrap_or(0),
            })
        })
        .collect()
}

impl SqlStore {
    async fn pool_by_id(
        &self,
        conn: &mut AnyConnection,
        project_pk: i64,
        id: &str,
    ) -> StoreResult<Option<EdgePool>> {
        let row = sqlx::query(&format!(
            "select {POOL_COLS} where ep.project_pk = $1 and ep.id = $2"
        ))
        .bind(project_pk)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (pk, mut pool) = pool_from(&row)?;
        pool.nodes = nodes_of(conn, pk, &pool.name).await?;
        Ok(Some(pool))
    }
}

fn pool_filters(q: &mut Query, project_pk: i64, f: &PoolFilter) {
    q.push(" where ep.project_pk = ").bind(Arg::Int(project_pk));
    if let Some(n) = &f.name_like {
        q.push(" and lower(ep.name) like ")
            .bind(Arg::Text(like_contains(&n.to_lowercase())))
            .push(" escape '\\'");
    }
    match f.running {
        Some(true) => {
            q.push(" and ").push(POOL_LIVE);
        }
        Some(false) => {
            q.push(" and not ").push(POOL_LIVE);
        }
        None => {}
    }
}

#[async_trait]
impl PoolStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn create_edge_pool(&self, project_pk: i64, p: &NewEdgePool) -> StoreResult<EdgePool> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let clash: Option<i64> = sqlx::query_scalar(
            "select pk from edge_pools where project_pk = $1 and (name = $2 or id = $3)",
        )
        .bind(project_pk)
        .bind(&p.name)
        .bind(&p.id)
        .fetch_optional(&mut *tx)
        .await?;
        if clash.is_some() {
            return Err(StoreError::conflict(Entity::EdgePool, "name"));
        }
        let pk: i64 = sqlx::query_scalar(
            "insert into edge_pools (project_pk, id, name, description, ief_service_instance_id, \
             created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $6) returning pk",
        )
        .bind(project_pk)
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(&p.ief_service_instance_id)
        .bind(p.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_if_unique(e, Entity::EdgePool, "name"))?;
        for (pos, node) in p.nodes.iter().enumerate() {
            sqlx::query(
                "insert into edge_pool_nodes (pool_pk, position, node) values ($1, $2, $3)",
            )
            .bind(pk)
            .bind(pos as i64)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        }
        let out = self
            .pool_by_id(&mut tx, project_pk, &p.id)
            .await?
            .ok_or_else(|| StoreError::Internal("a pool just inserted is gone".into()))?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn list_edge_pools(
        &self,
        project_pk: i64,
        filter: &PoolFilter,
        listing: Listing<PoolSort>,
    ) -> StoreResult<Listed<EdgePool>> {
        let positional = self.backend.positional();
        let mut q = Query::new(positional);
        q.push("select ").push(POOL_COLS);
        pool_filters(&mut q, project_pk, filter);
        let dir = if listing.descending { "desc" } else { "asc" };
        let col = match listing.sort {
            PoolSort::CreatedAt => "created_at",
            PoolSort::UpdatedAt => "updated_at",
        };
        q.push(" order by ")
            .push(col)
            .push(" ")
            .push(dir)
            .push(", pk ")
            .push(dir);
        if let Some(p) = listing.page {
            q.push(" limit ")
                .bind(Arg::Int(i64::try_from(p.limit).unwrap_or(i64::MAX)))
                .push(" offset ")
                .bind(Arg::Int(i64::try_from(p.offset).unwrap_or(i64::MAX)));
        }
        let mut count = Query::new(positional);
        count.push("select count(*) as n from edge_pools ep");
        pool_filters(&mut count, project_pk, filter);
        let mut tx = self.begin_read().await?;
        let matching: i64 = bound(&count).fetch_one(&mut *tx).await?.try_get("n")?;
        let total: i64 =
            sqlx::query_scalar("select count(*) from edge_pools where project_pk = $1")
                .bind(project_pk)
                .fetch_one(&mut *tx)
                .await?;
        let rows = bound(&q).fetch_all(&mut *tx).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let (pk, mut pool) = pool_from(r)?;
            pool.nodes = nodes_of(&mut tx, pk, &pool.name).await?;
            items.push(pool);
        }
        tx.commit().await?;
        Ok(Listed {
            total: total as u64,
            count: matching as u64,
            items,
        })
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn find_edge_pool(&self, project_pk: i64, id: &str) -> StoreResult<Option<EdgePool>> {
        let mut tx = self.begin_read().await?;
        let out = self.pool_by_id(&mut tx, project_pk, id).await?;
        tx.commit().await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, level = "debug", fields(project_pk = project_pk))]
    async fn delete_edge_pool(&self, project_pk: i64, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_catalogue(project_pk).await?;
        let pk: i64 =
            sqlx::query_scalar("select pk from edge_pools where project_pk = $1 and id = $2")
                .bind(project_pk)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found(Entity::EdgePool, "id"))?;
        let used: Option<i64> = sqlx::query_scalar(
            "select pk from services where pool_pk = $1 and deployed = 1 limit 1",
        )
        .bind(pk)
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_some() {
            return Err(StoreError::NotAllowed(
                "an algorithm service is deployed onto the edge pool; stop its deployment first"
                    .into(),
            ));
        }
        sqlx::query("update services set pool_pk = null where pool_pk = $1")
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from edge_pool_nodes where pool_pk = $1")
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from edge_pools where pk = $1")
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

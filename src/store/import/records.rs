//! The records an import writes one at a time: single tasks (CreateTask),
//! and the few parents (projects, users, services, groups, edge pools) that
//! batches and sources refer to.

use super::*;

impl SqlImporter {
    /// A task of CreateTask: few, written at once, after the sources.
    pub(super) async fn put_single_task(
        &mut self,
        t: crate::domain::dump::SingleTaskRecord,
        now: i64,
    ) -> StoreResult<()> {
        let ppk = self.project(&t.project_id).await?;
        field::check_id("id", &t.id)?;
        let state = t.state.parse::<TaskState>().map_err(|_| {
            field::FieldError::new("state", format!("{:?} is not a task state", t.state))
        })?;
        let svc = self
            .service(ppk, &t.service_name, &t.service_version)
            .await?;
        let source_pk = match &t.video_source_id {
            Some(id) => Some(self.source(ppk, id).await?),
            None => None,
        };
        let created_at = t.created_at.unwrap_or(now);
        let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        sqlx::query(
            "insert into tasks (project_pk, id, video_source_pk, state, created_at, updated_at, \
             name, description, service_pk, task_type, service_version, input, output, config, \
             schedule, resource_order_id, creator, source_url, window_due) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(ppk)
        .bind(&t.id)
        .bind(source_pk)
        .bind(state.index() as i64)
        .bind(created_at)
        .bind(t.updated_at.unwrap_or(created_at))
        .bind(&t.name)
        .bind(t.description.unwrap_or_default())
        .bind(svc.pk)
        .bind(svc.task_type)
        .bind(&t.service_version)
        .bind(t.input.to_string())
        .bind(t.output.to_string())
        .bind(text(&t.config))
        .bind(text(&t.schedule))
        .bind(&t.resource_order_id)
        .bind(&t.creator)
        .bind(&t.source_url)
        .bind(t.schedule.as_ref().map(|_| 0i64))
        .execute(&mut **self.conn().await?)
        .await
        .map_err(|e| crate::store::conflict_if_unique(e, Entity::Task, "id"))?;
        Ok(())
    }

    /// Projects, users, services and groups: few, written at once.
    pub(super) async fn put_parent(&mut self, record: DumpRecord, now: i64) -> StoreResult<()> {
        match record {
            DumpRecord::Project(p) => {
                let row = insert_project(
                    self.conn().await?,
                    &p.id,
                    &p.name,
                    p.created_at.unwrap_or(now),
                )
                .await?;
                self.projects.insert(row.id, row.pk);
            }
            DumpRecord::User(u) => {
                insert_user(
                    self.conn().await?,
                    &u.name,
                    &u.password_hash,
                    &u.project_ids,
                    u.created_at.unwrap_or(now),
                )
                .await?;
            }
            DumpRecord::Service(s) => {
                let ppk = self.project(&s.project_id).await?;
                let deploy_type = DeployType::parse(&s.deploy_type).ok_or_else(|| {
                    field::FieldError::new("deploy_type", "deploy_type must be cloud or edge")
                })?;
                let id = match s.id {
                    Some(id) => id,
                    None => random_hex(16)?,
                };
                // Names registered before the VIAS pattern (dots allowed)
                // still import.
                field::check_service_ref("service_name", &s.service_name)?;
                field::check_service_token("service_version", &s.service_version)?;
                field::check_display_name("alg_name", &s.alg_name, 1, 64)?;
                field::check_display_name("company", &s.company, 1, 64)?;
                let created_at = s.created_at.unwrap_or(now);
                let svc = insert_service(
                    self.conn().await?,
                    ppk,
                    &NewService {
                        id,
                        service_name: s.service_name,
                        service_version: s.service_version,
                        alg_name: s.alg_name,
                        company: s.company,
                        deploy_type,
                        deployed: s.deployed.unwrap_or(true),
                        description: s.description.unwrap_or_default(),
                        created_at,
                    },
                )
                .await?;
                let pool_pk: Option<i64> = match &s.pool_id {
                    Some(p) => Some(
                        sqlx::query_scalar(
                            "select pk from edge_pools where project_pk = $1 and id = $2",
                        )
                        .bind(ppk)
                        .bind(p)
                        .fetch_optional(&mut **self.conn().await?)
                        .await?
                        .ok_or_else(|| StoreError::not_found(Entity::EdgePool, "pool_id"))?,
                    ),
                    None => None,
                };
                sqlx::query(
                    "update services set pool_pk = $1, stream_count = $2, deploy_config = $3, \
                     envs = $4, updated_at = $5 where project_pk = $6 and id = $7",
                )
                .bind(pool_pk)
                .bind(s.stream_count)
                .bind(s.deploy_config.map(|v| v.to_string()))
                .bind(s.envs.map(|v| v.to_string()))
                .bind(s.updated_at.unwrap_or(created_at))
                .bind(ppk)
                .bind(&svc.id)
                .execute(&mut **self.conn().await?)
                .await?;
            }
            DumpRecord::VideoGroup(g) => {
                let ppk = self.project(&g.project_id).await?;
                field::check_id("id", &g.id)?;
                field::check_display_name("name", &g.name, 1, 64)?;
                let access_type = match g.access_type.as_deref() {
                    None => DeployType::Cloud,
                    Some(a) => DeployType::parse(a).ok_or_else(|| {
                        field::FieldError::new("access_type", "access_type must be cloud or edge")
                    })?,
                };
                let created_at = g.created_at.unwrap_or(now);
                let gpk = insert_group(
                    self.conn().await?,
                    ppk,
                    &NewVideoGroup {
                        id: g.id,
                        name: g.name,
                        description: g.description.unwrap_or_default(),
                        access_type,
                        source_ids: Vec::new(),
                        created_at,
                    },
                )
                .await?;
                sqlx::query("update video_groups set updated_at = $1 where pk = $2")
                    .bind(g.updated_at.unwrap_or(created_at))
                    .bind(gpk)
                    .execute(&mut **self.conn().await?)
                    .await?;
            }
            DumpRecord::EdgePool(p) => {
                let ppk = self.project(&p.project_id).await?;
                field::check_id("id", &p.id)?;
                field::check_display_name("name", &p.name, 1, 64)?;
                let created_at = p.created_at.unwrap_or(now);
                let pk: i64 = sqlx::query_scalar(
                    "insert into edge_pools (project_pk, id, name, description, \
                     ief_service_instance_id, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7) returning pk",
                )
                .bind(ppk)
                .bind(&p.id)
                .bind(&p.name)
                .bind(p.description.unwrap_or_default())
                .bind(p.ief_service_instance_id)
                .bind(created_at)
                .bind(p.updated_at.unwrap_or(created_at))
                .fetch_one(&mut **self.conn().await?)
                .await
                .map_err(|e| crate::store::conflict_if_unique(e, Entity::EdgePool, "name"))?;
                for (pos, node) in p.nodes.iter().enumerate() {
                    sqlx::query(
                        "insert into edge_pool_nodes (pool_pk, position, node) values ($1, $2, $3)",
                    )
                    .bind(pk)
                    .bind(pos as i64)
                    .bind(node)
                    .execute(&mut **self.conn().await?)
                    .await?;
                }
            }
            DumpRecord::Task(t) => self.put_single_task(t, now).await?,
            DumpRecord::VideoSource(_) | DumpRecord::BatchTask(_) => {}
        }
        Ok(())
    }
}

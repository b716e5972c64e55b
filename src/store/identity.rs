//! Projects, users, tokens and access keys.

use super::sql_store::SqlStore;
use super::{
    AccessKeyInfo, AccessKeyRow, NewAccessKey, NewToken, Project, ProjectRef, StoreError,
    StoreResult, TokenInfo, TokenRow, UserRow,
};
use crate::domain::{field, now_millis};
use crate::store::prelude::*;
use crate::store::{conflict_if_unique, Entity};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Columns `project_from` decodes.
const PROJECT_COLS: &str = "pk, id, name";

fn project_from(row: &AnyRow) -> StoreResult<Project> {
    Ok(Project {
        pk: row.try_get("pk")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
    })
}

pub(super) async fn project_pk(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar("select pk from projects where id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Columns `access_key_from` decodes.
const ACCESS_KEY_COLS: &str =
    "pk, id, user_pk, secret_sealed, sealed_with, last_used_at, revoked_at";

fn access_key_from(row: &AnyRow) -> StoreResult<AccessKeyRow> {
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(AccessKeyRow {
        pk: row.try_get("pk")?,
        id: row.try_get("id")?,
        user_pk: row.try_get("user_pk")?,
        secret_sealed: row.try_get("secret_sealed")?,
        sealed_with: row.try_get("sealed_with")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked: revoked_at.is_some(),
    })
}

/// Columns `access_key_info_from` decodes (`k` access_keys, `u` users).
const ACCESS_KEY_INFO_COLS: &str = "k.id as id, u.name as user_name, k.created_at as created_at, \
     k.last_used_at as last_used_at, k.revoked_at as revoked_at";

fn access_key_info_from(row: &AnyRow) -> StoreResult<AccessKeyInfo> {
    Ok(AccessKeyInfo {
        id: row.try_get("id")?,
        user_name: row.try_get("user_name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

pub(super) async fn insert_project(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    created_at: i64,
) -> StoreResult<Project> {
    field::check_id("id", id)?;
    field::check_display_name("name", name, 1, 64)?;
    if project_pk(conn, id).await?.is_some() {
        return Err(StoreError::conflict(Entity::Project, "id"));
    }
    let row = sqlx::query(&format!(
        "insert into projects (id, name, created_at) values ($1, $2, $3) returning {PROJECT_COLS}"
    ))
    .bind(id)
    .bind(name)
    .bind(created_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| conflict_if_unique(e, Entity::Project, "name"))?;
    project_from(&row)
}

pub(super) async fn insert_user(
    conn: &mut AnyConnection,
    name: &str,
    password_hash: &str,
    project_ids: &[String],
    created_at: i64,
) -> StoreResult<()> {
    field::check_display_name("name", name, 1, 64)?;
    let exists: Option<i64> = sqlx::query_scalar("select pk from users where name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Err(StoreError::conflict(Entity::User, "name"));
    }
    let user_pk: i64 = sqlx::query_scalar(
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
            .ok_or_else(|| StoreError::not_found(Entity::Project, "project_ids"))?;
        sqlx::query(
            "insert into user_projects (user_pk, project_pk) values ($1, $2) on conflict do nothing",
        )
        .bind(user_pk)
        .bind(ppk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl IdentityStore for SqlStore {
    #[tracing::instrument(skip_all, level = "debug")]
    async fn create_project(&self, id: &str, name: &str, created_at: i64) -> StoreResult<Project> {
        let mut tx = self.begin_write().await?;
        let p = insert_project(&mut tx, id, name, created_at).await?;
        tx.commit().await?;
        Ok(p)
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn find_project(&self, r: &ProjectRef) -> StoreResult<Option<Project>> {
        let (by, v) = match r {
            ProjectRef::Id(v) => ("id", v),
            ProjectRef::Name(v) => ("name", v),
        };
        // `by` comes from the fixed pair above.
        let row = sqlx::query(&format!(
            "select {PROJECT_COLS} from projects where {by} = $1"
        ))
        .bind(v.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from).transpose()
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn count_projects(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("select count(*) from projects")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn bootstrap(&self, project: &str, user: &str, password_hash: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let n: i64 = sqlx::query_scalar("select count(*) from projects")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Ok(false);
        }
        let now = now_millis();
        // Two processes starting on an empty PostgreSQL database both see no
        // project; the second's insert waits for the first's commit and
        // then meets its row.
        match insert_project(&mut tx, project, project, now).await {
            Err(StoreError::Conflict { .. }) => return Ok(false),
            r => r.map(drop)?,
        }
        insert_user(&mut tx, user, password_hash, &[project.to_owned()], now).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        project_ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        insert_user(&mut tx, name, password_hash, project_ids, now_millis()).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn find_user(&self, name: &str) -> StoreResult<Option<UserRow>> {
        let row = sqlx::query("select pk, name, password_hash from users where name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some(UserRow {
                pk: r.try_get("pk")?,
                name: r.try_get("name")?,
                password_hash: r.try_get("password_hash")?,
            })),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, level = "debug", fields(user_pk = user_pk, project_pk = project_pk))]
    async fn user_has_project(&self, user_pk: i64, project_pk: i64) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from user_projects where user_pk = $1 and project_pk = $2",
        )
        .bind(user_pk)
        .bind(project_pk)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn create_token(&self, t: &NewToken) -> StoreResult<()> {
        sqlx::query(
            "insert into tokens (id, secret_hash, project_pk, user_pk, issued_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6)",
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

    #[tracing::instrument(skip_all, level = "debug")]
    async fn find_token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
        // A token may be revoked by any process: trust a cached row only
        // briefly.
        if let Some((t, read_at)) = self.tokens.read().ok().and_then(|m| m.get(id).cloned()) {
            if t.expires_at > now_millis() && read_at.elapsed() < super::TOKEN_RECHECK {
                return Ok(Some(t));
            }
        }
        let row = sqlx::query(
            "select p.pk as pk, p.id as id, p.name as name, t.secret_hash as secret_hash, \
             t.expires_at as expires_at from tokens t join projects p on p.pk = t.project_pk \
             where t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let t = TokenRow {
            project: project_from(&r)?,
            secret_hash: r.try_get("secret_hash")?,
            expires_at: r.try_get("expires_at")?,
        };
        if let Ok(mut m) = self.tokens.write() {
            if m.len() >= super::TOKEN_CACHE_MAX {
                m.clear();
            }
            m.insert(id.to_owned(), (t.clone(), std::time::Instant::now()));
        }
        Ok(Some(t))
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn list_tokens(&self) -> StoreResult<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "select t.id as id, p.id as project_id, u.name as user_name, t.issued_at as issued_at, \
             t.expires_at as expires_at from tokens t join projects p on p.pk = t.project_pk \
             left join users u on u.pk = t.user_pk where t.expires_at > $1 \
             order by t.issued_at, t.id",
        )
        .bind(now_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    project_id: r.try_get("project_id")?,
                    user_name: r.try_get("user_name")?,
                    issued_at: r.try_get("issued_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn delete_token(&self, id: &str) -> StoreResult<()> {
        let n = sqlx::query("delete from tokens where id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if let Ok(mut m) = self.tokens.write() {
            m.remove(id);
        }
        if n == 0 {
            return Err(StoreError::not_found(Entity::Token, "X-Subject-Token"));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn delete_user(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let pk: Option<i64> = sqlx::query_scalar("select pk from users where name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let pk = pk.ok_or_else(|| StoreError::not_found(Entity::User, "name"))?;
        // Spelled out rather than left to cascades, which SQLite applies
        // only with foreign keys on.
        for sql in [
            "delete from tokens where user_pk = $1",
            "delete from access_keys where user_pk = $1",
            "delete from user_projects where user_pk = $1",
            "delete from users where pk = $1",
        ] {
            sqlx::query(sql).bind(pk).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.forget_tokens();
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn set_user_password(&self, name: &str, password_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let pk: Option<i64> = sqlx::query_scalar("select pk from users where name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let pk = pk.ok_or_else(|| StoreError::not_found(Entity::User, "name"))?;
        sqlx::query("update users set password_hash = $1 where pk = $2")
            .bind(password_hash)
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from tokens where user_pk = $1")
            .bind(pk)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.forget_tokens();
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn create_access_key(&self, k: &NewAccessKey) -> StoreResult<()> {
        sqlx::query(
            "insert into access_keys (id, user_pk, secret_sealed, sealed_with, created_at) \
             values ($1, $2, $3, $4, $5)",
        )
        .bind(&k.id)
        .bind(k.user_pk)
        .bind(&k.secret_sealed)
        .bind(&k.sealed_with)
        .bind(k.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_if_unique(e, Entity::AccessKey, "id"))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn find_access_key(&self, id: &str) -> StoreResult<Option<AccessKeyRow>> {
        let row = sqlx::query(&format!(
            "select {ACCESS_KEY_COLS} from access_keys where id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(access_key_from).transpose()
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn list_access_keys(&self, user_name: Option<&str>) -> StoreResult<Vec<AccessKeyInfo>> {
        let rows = match user_name {
            Some(name) => {
                if self.find_user(name).await?.is_none() {
                    return Err(StoreError::not_found(Entity::User, "user"));
                }
                sqlx::query(&format!(
                    "select {ACCESS_KEY_INFO_COLS} from access_keys k \
                     join users u on u.pk = k.user_pk where u.name = $1 order by k.pk"
                ))
                .bind(name)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "select {ACCESS_KEY_INFO_COLS} from access_keys k \
                     join users u on u.pk = k.user_pk order by k.pk"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(access_key_info_from).collect()
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn delete_access_key(&self, id: &str, at: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("select pk from access_keys where id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found(Entity::AccessKey, "access_key"));
        }
        sqlx::query("update access_keys set revoked_at = $2 where id = $1 and revoked_at is null")
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, level = "debug")]
    async fn touch_access_key(&self, pk: i64, at: i64, since: i64) -> StoreResult<()> {
        sqlx::query(
            "update access_keys set last_used_at = $2 \
             where pk = $1 and (last_used_at is null or last_used_at < $3)",
        )
        .bind(pk)
        .bind(at)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

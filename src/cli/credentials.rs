//! The credential commands: users, tokens, worker credentials and access
//! keys; creating them, and taking them back.

use super::{project_pk, ttl};
use crate::domain::now_millis;
use crate::identity;
use crate::store::{self, Store};
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use std::io::{IsTerminal, Write};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCmd {
    /// Create a user. The password is read from stdin when stdin is not a
    /// terminal; otherwise one is generated and printed once.
    Create {
        name: String,
        /// Project the user may act in (repeatable).
        #[arg(long = "project", required = true)]
        projects: Vec<String>,
    },
    /// Change a user's password (from stdin when piped, else generated and
    /// printed once); the user's tokens are revoked.
    Passwd { name: String },
    /// Delete a user, with its tokens and access keys.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Issue a token for a project and print it alone on stdout.
    Issue {
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
    /// List unexpired tokens: id, project, user (`-` for CLI-issued),
    /// issued, expires; never a secret.
    List,
    /// Revoke a token by its id (the part between `tc1.` and the next
    /// dot): every server sharing the database refuses it within a second.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkersCmd {
    /// Create a worker credential; prints it alone on stdout, once.
    Add { name: String },
    /// List workers: id, name, type, slots, tasks held, live or lost.
    List,
    /// Revoke a worker credential (by worker id or name): the worker is
    /// refused at once and its tasks are rescheduled.
    Revoke { worker: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessKeyCmd {
    /// Create an access key for a user; prints `access_key: AK` and
    /// `secret_key: SK` on stdout, once (the SK cannot be shown again).
    Create {
        #[arg(long)]
        user: String,
    },
    /// List access keys: AK, user, created, last used, revoked (never a
    /// secret), tab-separated.
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an access key: requests signed with it are refused within a
    /// second by every server sharing the database.
    Delete { access_key: String },
}

/// A password from stdin when it is piped, else a generated one (and
/// whether it was generated, so it can be shown once).
fn read_password() -> Result<(String, bool)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok((identity::generate_password()?, true));
    }
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        Ok((identity::generate_password()?, true))
    } else {
        Ok((pw, false))
    }
}

fn no_user(name: &str) -> impl FnOnce(store::StoreError) -> anyhow::Error + '_ {
    move |e| match e {
        store::StoreError::NotFound { .. } => anyhow!("user {name:?} does not exist"),
        other => other.into(),
    }
}

/// RFC 3339 to the second, or `-`; milliseconds since the epoch for a time
/// RFC 3339 cannot write (after 9999-12-31).
fn time(t: Option<i64>) -> String {
    const LAST_MS: i64 = 253_402_300_799_999;
    match t {
        Some(ms) if ms > LAST_MS => format!("{ms}ms"),
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        )
        .to_string(),
        None => "-".to_owned(),
    }
}

pub(super) async fn user(store: &dyn Store, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Create { name, projects } => {
            let (password, generated) = read_password()?;
            let hash = identity::hash_password(&password)?;
            store.create_user(&name, &hash, &projects).await?;
            if generated {
                println!("{password}");
            }
            eprintln!("user {name:?} created");
            Ok(())
        }
        UserCmd::Passwd { name } => {
            let (password, generated) = read_password()?;
            let hash = identity::hash_password(&password)?;
            store
                .set_user_password(&name, &hash)
                .await
                .map_err(no_user(&name))?;
            if generated {
                println!("{password}");
            }
            eprintln!("password of {name:?} changed; its tokens are revoked");
            Ok(())
        }
        UserCmd::Delete { name } => {
            store.delete_user(&name).await.map_err(no_user(&name))?;
            eprintln!("user {name:?} deleted, with its tokens and access keys");
            Ok(())
        }
    }
}

pub(super) async fn token(store: &dyn Store, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Issue { project, ttl: t } => {
            let pk = project_pk(store, &project).await?;
            let issued = identity::issue_token(store, pk, None, ttl(&t)?).await?;
            println!("{}", issued.token);
            Ok(())
        }
        TokenCmd::List => {
            let mut out = std::io::stdout().lock();
            for t in store.list_tokens().await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.project_id,
                    t.user_name.as_deref().unwrap_or("-"),
                    time(Some(t.issued_at)),
                    time(Some(t.expires_at))
                )?;
            }
            out.flush()?;
            Ok(())
        }
        TokenCmd::Revoke { id } => {
            store.delete_token(&id).await.map_err(|e| match e {
                store::StoreError::NotFound { .. } => anyhow!("token {id:?} does not exist"),
                other => other.into(),
            })?;
            eprintln!("token {id} revoked");
            Ok(())
        }
    }
}

pub(super) async fn workers(store: &dyn Store, cmd: WorkersCmd) -> Result<()> {
    match cmd {
        WorkersCmd::Add { name } => {
            let w = identity::create_worker(store, &name).await?;
            println!("{}", w.credential);
            eprintln!("worker {name:?} ({}) created", w.id);
            Ok(())
        }
        WorkersCmd::List => {
            let now = now_millis();
            for w in store.list_workers().await? {
                let live = if w.is_live(now) { "live" } else { "lost" };
                println!(
                    "{}\t{}\t{}\t{}/{}\t{live}",
                    w.id, w.name, w.kind, w.held, w.slots
                );
            }
            Ok(())
        }
        WorkersCmd::Revoke { worker } => {
            store.revoke_worker(&worker).await.map_err(|e| match e {
                store::StoreError::NotFound { .. } => anyhow!("worker {worker:?} does not exist"),
                other => other.into(),
            })?;
            eprintln!("worker {worker:?} revoked; its tasks are rescheduled on the next tick");
            Ok(())
        }
    }
}

pub(super) async fn access_key(store: &dyn Store, cmd: AccessKeyCmd) -> Result<()> {
    use identity::access_key::{MasterKey, MASTER_KEY_ENV, MASTER_KEY_FILE};
    match cmd {
        AccessKeyCmd::Create { user } => {
            // Before a master key is made: a typo leaves no key file behind.
            if store.find_user(&user).await?.is_none() {
                bail!("user {user:?} does not exist");
            }
            let from_env = std::env::var(MASTER_KEY_ENV).is_ok_and(|v| !v.is_empty());
            let had_file = std::path::Path::new(MASTER_KEY_FILE).exists();
            let key =
                MasterKey::load(true)?.ok_or_else(|| anyhow!("no master key could be made"))?;
            if !from_env && !had_file {
                eprintln!(
                    "created the master key file ./{MASTER_KEY_FILE} (mode 0600): every serve \
                     sharing this database needs this key (the file, or its contents in \
                     {MASTER_KEY_ENV})"
                );
            }
            let issued = identity::access_key::create_access_key(store, &key, &user)
                .await
                .map_err(|e| match e {
                    identity::access_key::CreateError::Store(store::StoreError::NotFound {
                        ..
                    }) => anyhow!("user {user:?} does not exist"),
                    other => other.into(),
                })?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "access_key: {}\nsecret_key: {}",
                issued.access_key,
                issued.secret_key.as_str()
            )?;
            out.flush()?;
            eprintln!(
                "access key {} created for user {user:?}; the secret key is shown only this once",
                issued.access_key
            );
            Ok(())
        }
        AccessKeyCmd::List { user } => {
            let keys = store
                .list_access_keys(user.as_deref())
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound { .. } => {
                        anyhow!("user {:?} does not exist", user.as_deref().unwrap_or(""))
                    }
                    other => other.into(),
                })?;
            let time = |t: Option<i64>| match t {
                Some(ms) => humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
                )
                .to_string(),
                None => "-".to_owned(),
            };
            let mut out = std::io::stdout().lock();
            for k in keys {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.user_name,
                    time(Some(k.created_at)),
                    time(k.last_used_at),
                    time(k.revoked_at)
                )?;
            }
            out.flush()?;
            Ok(())
        }
        AccessKeyCmd::Delete { access_key } => {
            store
                .delete_access_key(&access_key, now_millis())
                .await
                .map_err(|e| match e {
                    store::StoreError::NotFound { .. } => {
                        anyhow!("access key {access_key:?} does not exist")
                    }
                    other => other.into(),
                })?;
            eprintln!("access key {access_key} revoked");
            Ok(())
        }
    }
}

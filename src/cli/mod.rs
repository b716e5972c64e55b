//! The `taskcenter` command line: serve, migrate, import, export and the
//! operator commands that create projects, users, services and tokens.

use crate::api::{self, AppState};
use crate::domain::dump::DumpRecord;
use crate::domain::{field, now_millis, random_hex};
use crate::identity;
use crate::protocol::WorkerKind;
use crate::store::{self, DeployType, NewService, ProjectRef, Store};
use crate::worker::executor::Priority;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod credentials;
use credentials::{AccessKeyCmd, TokenCmd, UserCmd, WorkersCmd};

#[derive(Debug, Parser)]
#[command(
    name = "taskcenter",
    version,
    about = "Self-hosted task center for video analytics (VIAS task-center API v2)"
)]
pub struct Cli {
    /// Database: a SQLite file path (or sqlite:PATH), or a postgres:// URL.
    #[arg(
        long,
        global = true,
        env = "TASKCENTER_DATABASE_URL",
        default_value = "taskcenter.db",
        hide_env_values = true
    )]
    database_url: String,

    /// Log lines on stderr: `text` for people, `json` (one object per line)
    /// for log shippers.
    #[arg(long, global = true, env = "TASKCENTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// The log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Load a dump (newline-delimited JSON) from FILE, or from stdin with `-`.
    Import { file: String },
    /// Write every project's data as a dump to stdout (or --output FILE).
    Export {
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Write a synthetic benchmark dataset (dump format) to stdout.
    Generate {
        /// About how many tasks (the largest project gets about this many).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        tasks: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Register algorithm services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Issue, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Run a worker agent: executes the tasks the scheduler places on it.
    Worker(WorkerArgs),
    /// Manage worker credentials.
    #[command(subcommand)]
    Workers(WorkersCmd),
    /// Manage access keys (AK/SK) that sign requests as Huawei's SDKs do.
    #[command(subcommand)]
    AccessKey(AccessKeyCmd),
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// The server, http://HOST:PORT; or several, separated by commas (the
    /// serve processes sharing one PostgreSQL database): the agent moves to
    /// the next when one cannot be reached or does not answer.
    #[arg(long, env = "TASKCENTER_SERVER")]
    server: String,
    /// The worker credential from `taskcenter workers add`.
    #[arg(long, env = "TASKCENTER_WORKER_TOKEN", hide_env_values = true)]
    token: String,
    /// How many tasks it runs at once.
    #[arg(long, default_value_t = 4)]
    slots: i64,
    /// Which tasks it takes: cloud or edge (the service's deploy type).
    #[arg(long = "type", default_value = "cloud", value_parser = parse_kind)]
    kind: WorkerKind,
    /// The edge pool it serves (by the pool's name), besides any pool that
    /// lists this worker's name among its nodes.
    #[arg(long)]
    pool: Option<String>,
    /// The executor, run once per task with the task in its environment
    /// (TASKCENTER_TASK_ID, TASKCENTER_SOURCE_URL, TASKCENTER_CONFIG, …).
    #[arg(long)]
    exec: String,
    /// Between SIGTERM and SIGKILL when a task is stopped.
    #[arg(long, default_value = "10s")]
    grace: String,
    /// The CPU priority of the executors: `normal` (the agent's own) or
    /// `idle` (SCHED_IDLE through `chrt --idle 0`: they yield the CPU to
    /// processes at normal priority, for hosts shared with serve; the agent
    /// itself keeps normal priority).
    #[arg(long, env = "TASKCENTER_EXECUTOR_PRIORITY", value_enum, default_value_t = Priority::Normal)]
    executor_priority: Priority,
    /// The CPU priority of the whole worker, agent and executors: `normal`
    /// or `idle` (SCHED_IDLE for every thread of the agent, through
    /// `chrt --all-tasks --idle`, inherited by every executor). For a host
    /// shared with serve, when serve's answers matter more than the pace of
    /// the analysis; the agent's heartbeats then wait for a spare moment of
    /// CPU too, so keep the lease well above what a busy host delays them.
    /// Makes `--executor-priority` moot.
    #[arg(long, env = "TASKCENTER_WORKER_PRIORITY", value_enum, default_value_t = Priority::Normal)]
    priority: Priority,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKCENTER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Lifetime of tokens from POST /v3/auth/tokens (e.g. 90s, 15m, 24h, 7d).
    #[arg(long, env = "TASKCENTER_TOKEN_TTL", default_value = "24h")]
    token_ttl: String,
    /// Where the batch-task list is answered from: `memory` (the read model,
    /// kept current from the database) or `database` (SQL on every call).
    #[arg(long, env = "TASKCENTER_LIST_SOURCE", value_enum, default_value_t = ListSource::Memory)]
    list_source: ListSource,
    /// A worker that has not synced for this long loses its tasks
    /// (`abnormal`, then rescheduled).
    #[arg(long, env = "TASKCENTER_LEASE", default_value = "15s")]
    lease: String,
    /// How often the scheduler ticks.
    #[arg(long, env = "TASKCENTER_TICK", default_value = "500ms")]
    tick: String,
    /// A pending task that finds no free slot for this long goes
    /// `lack_of_resources`.
    #[arg(long, env = "TASKCENTER_WAIT_LIMIT", default_value = "10m")]
    wait_limit: String,
    /// Do not run the scheduler in this process (another replica does).
    #[arg(long)]
    no_scheduler: bool,
    /// A connection must deliver a complete request head within this long
    /// of opening or of its previous response (closes slowloris trickles
    /// and idle keep-alive connections).
    #[arg(long, env = "TASKCENTER_HEADER_TIMEOUT", default_value = "10s")]
    header_timeout: String,
    /// A request body may pause this long between two of its parts (408).
    #[arg(long, env = "TASKCENTER_BODY_TIMEOUT", default_value = "30s")]
    body_timeout: String,
    /// Open connections at most; further ones get 503 at once. Capped below
    /// the process's open-file limit, which serve raises to its hard limit.
    #[arg(long, env = "TASKCENTER_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Serve `GET /metrics` without authentication on this address (keep it
    /// private: a loopback or an internal interface).
    #[arg(long, env = "TASKCENTER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve `GET /metrics` on the API address too, to requests bearing
    /// this token (`Authorization: Bearer …`).
    #[arg(long, env = "TASKCENTER_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

/// Where `serve` answers the batch-task list from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListSource {
    /// The in-memory read model, kept current from the database.
    Memory,
    /// SQL on every call (for comparison and diagnosis).
    Database,
}

#[derive(Debug, Subcommand)]
enum ProjectCmd {
    /// Create a project; prints its id.
    Create {
        name: String,
        /// Id to use (default: 32 random hex characters).
        #[arg(long)]
        id: Option<String>,
    },
    /// Freeze a project (arrears): its tasks go `freezing` → `frozen`.
    Freeze { id: String },
    /// Unfreeze a project: its frozen tasks go `recovering` → rescheduled.
    Unfreeze { id: String },
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
    /// Register an algorithm service in a project; prints its id.
    Add {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Display name of the algorithm (the list's `title` filter).
        #[arg(long)]
        alg_name: String,
        /// Vendor (the list's `manufacturer` filter).
        #[arg(long)]
        company: String,
        #[arg(long, default_value = "cloud")]
        deploy_type: String,
        /// Register it as not deployed.
        #[arg(long)]
        undeployed: bool,
        /// What it does (shown by ShowServiceDetail).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Mark a service version not deployed: its live tasks go
    /// `stopped_no_service`.
    Undeploy(ServiceVersion),
    /// Mark a service version deployed again.
    Deploy(ServiceVersion),
    /// Move every batch on a service version to another registered version;
    /// running tasks go `upgrading` → `running` on their workers.
    Upgrade {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

/// One version of a service in a project.
#[derive(Debug, Args)]
struct ServiceVersion {
    #[arg(long)]
    project: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
    };
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(cli))
}

async fn open(url: &str) -> Result<Arc<dyn Store>> {
    // An empty SQLite path opens a temporary database that vanishes at exit.
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.trim().is_empty() {
        bail!("the database URL is empty: name a SQLite file (the default is taskcenter.db) or a postgres:// URL");
    }
    let store = match store::open(url).await {
        Ok(store) => store,
        // SQLITE_CANTOPEN
        Err(e) if store::sqlite_primary_of(&e) == Some(14) => bail!(
            "could not open the database: {e} (SQLite writes its -wal and -shm files beside \
             {path}: is the file, its directory or its file system read-only?)"
        ),
        Err(e) => return Err(e).context("could not open the database"),
    };
    store
        .migrate()
        .await
        .context("could not apply migrations")?;
    Ok(store)
}

fn parse_kind(s: &str) -> Result<WorkerKind, String> {
    WorkerKind::parse(s).ok_or_else(|| "cloud or edge".to_owned())
}

/// Durations like `500ms`, `90s`, `15m`, `24h`, `7d` (or `1h 30m`); zero is
/// refused, since every duration here is a period or a lifetime.
pub(crate) fn ttl(s: &str) -> Result<Duration> {
    // A century is plenty for any lifetime or timeout, and keeps every
    // expiry a date that prints (RFC 3339 ends at year 9999).
    const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d > MAX => bail!("{s:?} is longer than 36500d"),
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => bail!("{s:?} is zero: every duration here is a period or a lifetime"),
        _ => bail!("{s:?} is not a duration like 500ms, 90s, 15m, 24h or 7d"),
    }
}

pub(crate) async fn project_pk(store: &dyn Store, id: &str) -> Result<i64> {
    Ok(store
        .find_project(&ProjectRef::Id(id.to_owned()))
        .await?
        .ok_or_else(|| anyhow!("project {id:?} does not exist"))?
        .pk)
}

async fn dispatch(cli: Cli) -> Result<()> {
    if let Command::Generate { tasks, seed } = cli.command {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let (records, tasks) = crate::datagen::generate(tasks, seed, &mut out)?;
        out.flush()?;
        eprintln!("generated {records} records, {tasks} tasks");
        return Ok(());
    }
    if let Command::Worker(a) = cli.command {
        if a.pool.is_some() && a.kind != WorkerKind::Edge {
            bail!("--pool needs --type edge: only edge workers serve edge pools");
        }
        // Under a whole worker at idle priority the executors inherit it:
        // no launcher is needed for them.
        let executor_priority = if a.priority == Priority::Idle {
            crate::worker::executor::idle_process()?;
            Priority::Normal
        } else {
            a.executor_priority
        };
        // The agent needs no database: it speaks to the server only.
        return crate::worker::run(crate::worker::WorkerConfig {
            server: a.server,
            credential: a.token,
            slots: a.slots,
            kind: a.kind,
            pool: a.pool,
            exec: a.exec,
            grace: ttl(&a.grace)?,
            priority: executor_priority,
        })
        .await;
    }
    let store = open(&cli.database_url).await?;
    match cli.command {
        Command::Serve(a) => serve(store, a).await,
        Command::Generate { .. } => Ok(()),
        Command::Migrate => {
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Import { file } => import(&*store, &file).await,
        Command::Export { output } => export(store, output).await,
        Command::Project(ProjectCmd::Create { name, id }) => {
            let id = match id {
                Some(id) => id,
                None => random_hex(16)?,
            };
            let p = store.create_project(&id, &name, now_millis()).await?;
            println!("{}", p.id);
            Ok(())
        }
        Command::Service(ServiceCmd::Add {
            project,
            name,
            version,
            alg_name,
            company,
            deploy_type,
            undeployed,
            description,
        }) => {
            let pk = project_pk(&*store, &project).await?;
            let deploy_type = DeployType::parse(&deploy_type)
                .ok_or_else(|| anyhow!("--deploy-type must be cloud or edge"))?;
            let check = |r: Result<(), field::FieldError>| {
                r.map_err(|e| anyhow!("--{}: {}", e.param.replace('_', "-"), e.detail))
            };
            check(field::check_service_name("name", &name))?;
            check(field::check_service_token("version", &version))?;
            check(field::check_display_name("alg_name", &alg_name, 1, 64))?;
            check(field::check_display_name("company", &company, 1, 64))?;
            check(field::check_text("description", &description, 500))?;
            // Valid names the list's filters cannot express: registered,
            // with a word on what they cost. (Length is no obstacle: the
            // 2-64 limit is on the whole parameter, so `A,` selects `A`.)
            for (filter, value) in [("title", &alg_name), ("manufacturer", &company)] {
                if let Some(bad) = value.chars().find(|c| !field::is_filter_char(*c)) {
                    eprintln!(
                        "warning: the batch list's `{filter}` filter cannot select this service: \
                         it takes only ^[a-zA-Z0-9\\u4e00-\\u9fa5,-_] and the name holds {bad:?}"
                    );
                }
            }
            let s = store
                .create_service(
                    pk,
                    &NewService {
                        id: random_hex(16)?,
                        service_name: name,
                        service_version: version,
                        alg_name,
                        company,
                        deploy_type,
                        deployed: !undeployed,
                        description,
                        created_at: now_millis(),
                    },
                )
                .await?;
            println!("{}", s.id);
            Ok(())
        }
        Command::Project(ProjectCmd::Freeze { id }) => freeze(&*store, &id, true).await,
        Command::Project(ProjectCmd::Unfreeze { id }) => freeze(&*store, &id, false).await,
        Command::Service(ServiceCmd::Undeploy(v)) => deploy(&*store, &v, false).await,
        Command::Service(ServiceCmd::Deploy(v)) => deploy(&*store, &v, true).await,
        Command::Service(ServiceCmd::Upgrade {
            project,
            name,
            from,
            to,
        }) => {
            if from == to {
                bail!("--from and --to name the same version: nothing to upgrade");
            }
            let pk = project_pk(&*store, &project).await?;
            let n = store.upgrade_service(pk, &name, &from, &to).await?;
            eprintln!("{n} batch task(s) moved from {name} {from} to {to}");
            Ok(())
        }
        Command::Worker(_) => Ok(()),
        Command::AccessKey(cmd) => credentials::access_key(&*store, cmd).await,
        Command::User(cmd) => credentials::user(&*store, cmd).await,
        Command::Workers(cmd) => credentials::workers(&*store, cmd).await,
        Command::Token(cmd) => credentials::token(&*store, cmd).await,
    }
}

async fn freeze(store: &dyn Store, id: &str, frozen: bool) -> Result<()> {
    let pk = project_pk(store, id).await?;
    store.set_project_frozen(pk, frozen).await?;
    if frozen {
        eprintln!("project {id:?} frozen; its tasks stop on the next ticks");
    } else {
        eprintln!("project {id:?} unfrozen; its frozen tasks recover on the next ticks");
    }
    Ok(())
}

async fn deploy(store: &dyn Store, v: &ServiceVersion, on: bool) -> Result<()> {
    let pk = project_pk(store, &v.project).await?;
    store
        .set_service_deployed(pk, &v.name, &v.version, on)
        .await?;
    let state = if on { "deployed" } else { "undeployed" };
    eprintln!("{} {} {state}", v.name, v.version);
    Ok(())
}

/// On an empty database: a `default` project and an `admin` user, so a new
/// user reaches an authenticated request at once.
async fn bootstrap(store: &dyn Store, listen: &str) -> Result<()> {
    if store.count_projects().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match std::env::var("TASKCENTER_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (identity::generate_password()?, true),
    };
    // Project and user in one transaction: a crash between them cannot
    // leave a database without its admin, and of several `serve` processes
    // starting on one empty database exactly one sets it up.
    if !store
        .bootstrap("default", "admin", &identity::hash_password(&password)?)
        .await?
    {
        return Ok(());
    }
    // A generated password never goes to a log stream: it is written to a
    // file only its owner can read, and shown only on a terminal.
    let file = if generated {
        write_new_private(ADMIN_PASSWORD_FILE, &format!("{password}\n"))
            .with_context(|| format!("could not write {ADMIN_PASSWORD_FILE}"))?
    } else {
        String::new()
    };
    let shown = if !generated {
        "the password in TASKCENTER_ADMIN_PASSWORD".to_owned()
    } else if std::io::stdout().is_terminal() {
        format!("password {password}, also in ./{file}")
    } else {
        format!("its password is in ./{file}, readable only by you")
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "New database: created project \"default\" and user \"admin\" ({shown}).\n\
         Get a token with either of:\n  \
         taskcenter token issue --project default\n  \
         curl -si http://{listen}/v3/auth/tokens -H 'Content-Type: application/json' -d '{{\"auth\":{{\"identity\":{{\"methods\":[\"password\"],\"password\":{{\"user\":{{\"name\":\"admin\",\"password\":\"PASSWORD\",\"domain\":{{\"name\":\"default\"}}}}}}}},\"scope\":{{\"project\":{{\"id\":\"default\"}}}}}}}}'"
    )?;
    out.flush()?;
    Ok(())
}

/// Where `serve` writes a generated first admin password.
pub const ADMIN_PASSWORD_FILE: &str = "taskcenter-admin-password";

/// Writes `text` to a new file that only its owner may read: `base`, or
/// `base.1`, `base.2`, … when it exists (another database's first start
/// in this directory wrote it, and its password must not be lost). The
/// name it used.
fn write_new_private(base: &str, text: &str) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    for n in 0..1000 {
        let name = if n == 0 {
            base.to_owned()
        } else {
            format!("{base}.{n}")
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&name)
        {
            Ok(mut f) => return f.write_all(text.as_bytes()).map(|()| name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{base}.1 to {base}.999 exist already"
    )))
}

/// Creates or truncates a file that only its owner may read or write.
fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it too (a device
    // such as /dev/null is left as it is).
    if f.metadata()?.is_file() {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

async fn serve(store: Arc<dyn Store>, a: ServeArgs) -> Result<()> {
    let token_ttl = ttl(&a.token_ttl)?;
    // The master key is read now if there is one (a malformed one stops the
    // start); otherwise when a signed request first needs it. A server
    // never makes one: it could not open secrets sealed before.
    let master = identity::access_key::MasterKey::load(false)
        .context("could not read the master key for access keys")?;
    match &master {
        Some(k) => tracing::info!(master_key_id = k.id(), "access keys: master key loaded"),
        None => tracing::info!("access keys: no master key yet (read when first needed)"),
    }
    bootstrap(&*store, &a.listen).await?;
    // A database that takes no writes would answer every change with 503:
    // say so now, once, instead.
    if let Err(e) = store.probe_write().await {
        if matches!(&e, store::StoreError::Db(d) if store::DbFault::of(d) == store::DbFault::ReadOnly)
        {
            bail!(
                "the database takes no writes (a read-only file or file system, or a read-only \
                 PostgreSQL server such as a standby); serve needs a writable database"
            );
        }
        return Err(e).context("could not write to the database");
    }
    store.start_change_feed();
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("could not listen on {}", a.listen))?;
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "taskcenter serving");
    let lease = ttl(&a.lease)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::scheduler::wake::watch_held(
        store.clone(),
        stop.subscribe(),
    ));
    let scheduler = if a.no_scheduler {
        None
    } else {
        let cfg = crate::scheduler::SchedulerConfig {
            interval: ttl(&a.tick)?,
            lease,
            tick: crate::scheduler::TickConfig {
                wait_limit_ms: i64::try_from(ttl(&a.wait_limit)?.as_millis()).unwrap_or(i64::MAX),
                ..Default::default()
            },
        };
        Some(crate::scheduler::Scheduler::new(store.clone(), cfg))
    };
    let placing = scheduler.as_ref().map(|s| s.config().tick);
    let scheduler = scheduler.map(|s| s.spawn(stopped));
    let state = AppState {
        placing,
        list_from_db: a.list_source == ListSource::Database,
        metrics_token: a.metrics_token.filter(|t| !t.is_empty()).map(Into::into),
        access_keys: Arc::new(identity::access_key::AccessKeys::new(master)),
        ..AppState::new(store, token_ttl, lease)
    };
    if let Some(addr) = &a.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr} for metrics"))?;
        tracing::info!(addr = %l.local_addr()?, "metrics serving");
        let st = state.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let st = st.clone();
                async move { api::metrics_reply(&st).await }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let app = api::app(state);
    let limits = api::server::Limits {
        header_timeout: ttl(&a.header_timeout)?,
        body_timeout: ttl(&a.body_timeout)?,
        max_connections: api::server::fit_connection_cap(a.max_connections as usize),
        ..Default::default()
    };
    if limits.max_connections < a.max_connections as usize {
        tracing::warn!(
            max_connections = limits.max_connections,
            "the open-file limit allows fewer connections than --max-connections"
        );
    }
    api::server::serve(listener, app.router, limits, shutdown_signal()).await?;
    // The scheduler finishes the tick it is in, then stops; serve waits.
    let _ = stop.send(true);
    if let Some(handle) = scheduler {
        if let Err(e) = handle.await {
            tracing::warn!(error = %e, "scheduler ended abnormally");
        }
    }
    tracing::info!("taskcenter stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Records of a dump, read and parsed on a thread of their own so the
/// parsing of what comes next overlaps the database writing what came
/// before (on PostgreSQL the two took turns, a fifth of a restore's time in
/// parsing). Records come in runs, each with its line; the first error ends
/// the stream.
fn dump_records(file: &str) -> tokio::sync::mpsc::Receiver<Result<Vec<(u64, DumpRecord)>>> {
    use std::io::BufRead;
    const RUN: usize = 64;
    let (send, recv) = tokio::sync::mpsc::channel(16);
    let file = file.to_owned();
    std::thread::spawn(move || {
        let reader: Box<dyn std::io::Read> = if file == "-" {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(&file) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    let _ = send
                        .blocking_send(Err(anyhow!(e).context(format!("could not open {file}"))));
                    return;
                }
            }
        };
        let reader = std::io::BufReader::with_capacity(1 << 20, reader);
        let mut run = Vec::with_capacity(RUN);
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let parsed = match line {
                Err(e) => Err(anyhow!(e).context(format!("line {line_no}: could not read"))),
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => serde_json::from_str::<DumpRecord>(&line)
                    .map_err(|e| anyhow!("line {line_no}: {e}")),
            };
            match parsed {
                Ok(rec) => run.push((line_no, rec)),
                Err(e) => {
                    // What parsed before the error goes first, so an error
                    // the loader finds in it is still the one reported.
                    if !run.is_empty() && send.blocking_send(Ok(std::mem::take(&mut run))).is_err()
                    {
                        return;
                    }
                    let _ = send.blocking_send(Err(e));
                    return;
                }
            }
            if run.len() == RUN && send.blocking_send(Ok(std::mem::take(&mut run))).is_err() {
                return;
            }
        }
        if !run.is_empty() {
            let _ = send.blocking_send(Ok(run));
        }
    });
    recv
}

async fn import(store: &dyn Store, file: &str) -> Result<()> {
    let mut records_in = dump_records(file);
    let mut importer = store.begin_import().await?;
    let (mut records, mut tasks) = (0u64, 0u64);
    let start = Instant::now();
    let mut last_report = Instant::now();
    while let Some(run) = records_in.recv().await {
        for (line_no, rec) in run? {
            let n = importer
                .put(line_no, rec)
                .await
                .map_err(describe_import_error)?;
            records += 1;
            tasks += n.tasks;
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "imported {records} records, {tasks} tasks ({:.0} tasks/s)",
                tasks as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    importer.commit().await.map_err(describe_import_error)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "import complete: {records} records, {tasks} tasks in {secs:.2}s ({:.0} tasks/s)",
        tasks as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn describe_import_error(e: store::ImportError) -> anyhow::Error {
    let line = e.line;
    let what = match e.error {
        store::StoreError::Invalid(field::FieldError { param, detail }) => {
            format!("{param}: {detail}")
        }
        store::StoreError::NotFound { what, param } => format!("{param}: {what} does not exist"),
        store::StoreError::Conflict { what, param } => format!("{param}: {what} already exists"),
        other => other.to_string(),
    };
    if line == 0 {
        anyhow!("import failed: {what}")
    } else {
        anyhow!("line {line}: {what}")
    }
}

async fn export(store: Arc<dyn Store>, output: Option<std::path::PathBuf>) -> Result<()> {
    let (send, mut recv) = tokio::sync::mpsc::channel::<DumpRecord>(1024);
    let producer = tokio::spawn(async move { store.export(send).await });
    let mut out: Box<dyn Write + Send> = match &output {
        // The dump holds password hashes: owner only.
        Some(p) => Box::new(
            create_private(p).with_context(|| format!("could not create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    while let Some(rec) = recv.recv().await {
        serde_json::to_writer(&mut out, &rec)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    match producer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("export failed: {e}"),
        Err(e) => bail!("export failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::ttl;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(ttl("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(ttl("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(ttl(" 15m ").unwrap(), Duration::from_secs(900));
        assert!(ttl("0s").unwrap_err().to_string().contains("is zero"));
        assert!(ttl("h").is_err());
        assert!(ttl("").is_err());
        assert!(ttl("120").is_err(), "a bare number has no unit");
        assert_eq!(ttl("36500d").unwrap(), Duration::from_secs(36_500 * 86_400));
        assert!(ttl("36501d").is_err());
        assert!(ttl("3000000d").is_err());
    }
}

//! The routes `taskcenter worker` speaks (not part of VIAS): register,
//! sync (heartbeat + long-poll for instructions) and report. Authenticated
//! by the worker's own credential in `Authorization: Bearer …`.

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use super::AppState;
use crate::domain::kind::DeployType;
use crate::domain::now_millis;
use crate::domain::transition::{Event, Outcome};
use crate::protocol::{
    Held, RegisterReply, RegisterRequest, Report, ReportBatch, ReportBatchReply, ReportReply,
    ReportRequest, SyncReply, SyncRequest,
};
use crate::store::lifecycle::{Applied, WorkerReport};
use crate::store::{Entity, StoreError};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use std::time::{Duration, Instant};

/// The worker a request's credential names; set by the auth middleware.
#[derive(Debug, Clone, Copy)]
pub struct WorkerAuthed(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for WorkerAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<WorkerAuthed>()
            .copied()
            .ok_or_else(|| {
                ApiError::WorkerUnauthenticated("the worker credential is missing".into())
            })
    }
}

/// A worker as `GET /v2/{project_id}/workers` shows it (our extension):
/// workers are shared by every project, so any project's token may read
/// them; credentials never appear.
#[derive(serde::Serialize)]
pub(super) struct WorkerDto {
    id: String,
    name: String,
    /// `cloud` or `edge`.
    #[serde(rename = "type")]
    kind: String,
    slots: i64,
    held: i64,
    /// `live` while its lease holds, else `lost`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    lease_expires_at: i64,
}

#[derive(serde::Serialize)]
pub(super) struct WorkerList {
    count: usize,
    workers: Vec<WorkerDto>,
}

/// `GET /v2/{project_id}/workers` (ours): every worker, its slots held of
/// total, live or lost, type and pool.
pub(super) async fn list(
    State(st): State<AppState>,
    super::extract::Authed(_): super::extract::Authed,
) -> ApiResult<Json<WorkerList>> {
    let now = now_millis();
    let workers: Vec<WorkerDto> = st
        .store
        .list_workers()
        .await?
        .into_iter()
        .map(|w| WorkerDto {
            state: if w.is_live(now) { "live" } else { "lost" },
            id: w.id,
            name: w.name,
            kind: w.kind,
            slots: w.slots,
            held: w.held,
            pool: w.pool,
            lease_expires_at: w.lease_expires_at,
        })
        .collect();
    Ok(Json(WorkerList {
        count: workers.len(),
        workers,
    }))
}

/// Longest a sync waits for instructions.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// How often a waiting sync looks again.
const WAIT_STEP: Duration = Duration::from_millis(200);

/// How much older than the sync request its running list may be (the time
/// it took to arrive, with room to spare).
const LIST_SLACK_MS: i64 = 2_000;

fn lease_ms(st: &AppState) -> i64 {
    i64::try_from(st.lease.as_millis()).unwrap_or(i64::MAX)
}

/// A worker revoked after its request was authenticated: refused as a
/// revoked credential is, so the agent stops rather than retrying.
fn revoked(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound {
            what: Entity::Worker,
            ..
        } => ApiError::WorkerUnauthenticated("the worker credential was revoked".into()),
        other => other.into(),
    }
}

pub async fn register(
    State(st): State<AppState>,
    WorkerAuthed(w): WorkerAuthed,
    ApiJson(b): ApiJson<RegisterRequest>,
) -> ApiResult<Json<RegisterReply>> {
    if !(1..=10_000).contains(&b.slots) {
        return Err(ApiError::Invalid {
            param: Some("slots".into()),
            detail: "slots is 1 to 10000".into(),
        });
    }
    if let Some(pool) = &b.pool {
        crate::domain::vias::check_pool_name("pool", pool)?;
        if b.kind != DeployType::Edge {
            return Err(ApiError::Invalid {
                param: Some("pool".into()),
                detail: "only an edge worker joins an edge pool".into(),
            });
        }
    }
    st.store
        .register_worker(
            w,
            b.kind,
            b.slots,
            b.pool.as_deref(),
            now_millis(),
            lease_ms(&st),
        )
        .await
        .map_err(revoked)?;
    Ok(Json(RegisterReply {
        lease_ms: lease_ms(&st),
        max_wait_ms: MAX_WAIT.as_millis() as i64,
    }))
}

/// Renews the lease and answers at once when there is something to do,
/// otherwise waits up to `wait_ms` (capped, and under the lease) for it.
pub async fn sync(
    State(st): State<AppState>,
    WorkerAuthed(w): WorkerAuthed,
    ApiJson(b): ApiJson<SyncRequest>,
) -> ApiResult<Json<SyncReply>> {
    if b.running.len() > 100_000 {
        return Err(ApiError::Invalid {
            param: Some("running".into()),
            detail: "too many running tasks".into(),
        });
    }
    let wait = Duration::from_millis(b.wait_ms)
        .min(MAX_WAIT)
        .min(st.lease / 2);
    let start = Instant::now();
    // The worker's list was taken before the request left, and grows older
    // while the sync waits: a task that went running since then is not
    // taken for lost (the agent starts the tasks a report's answer brings
    // meanwhile).
    let listed = now_millis().saturating_sub(LIST_SLACK_MS);
    let changed = crate::scheduler::wake::worker(w);
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let reply = st
            .store
            .sync_worker_listed(w, now_millis(), lease_ms(&st), &b.running, listed)
            .await
            .map_err(revoked)?;
        if !reply.is_empty() || start.elapsed() + WAIT_STEP > wait {
            return Ok(Json(reply));
        }
        // A committed move on one of its tasks wakes the sync: at once for
        // this process's moves, within a step for other processes' (see
        // `wake::watch_held`). Nothing else costs a waiting sync anything,
        // and a wait that ends unwoken found nothing new: the lease renewed
        // at its start still has at least half its length to run.
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait.saturating_sub(start.elapsed())) => {
                return Ok(Json(SyncReply::default()));
            }
        }
    }
}

/// A report as the store takes it; the error text clipped and cleaned.
fn worker_report(b: ReportRequest) -> WorkerReport {
    let event = match b.event {
        Report::Started => Event::Started,
        Report::SpawnFailed => Event::SpawnFailed,
        Report::Exited => Event::Exited,
        Report::Crashed => Event::Crashed,
        Report::Released => Event::Released,
        Report::Upgraded => Event::Upgraded,
    };
    let clip = |s: String| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(500)
            .collect::<String>()
    };
    WorkerReport {
        held: Held {
            task: b.task,
            attempt: b.attempt,
        },
        event,
        error: b
            .error_code
            .map(|c| (clip(c), clip(b.error_message.unwrap_or_default()))),
    }
}

/// `None`: the task was deleted meanwhile; nothing left to report on.
fn report_reply(applied: Option<Applied>) -> ReportReply {
    match applied {
        Some(Applied::Moved { to, .. }) => ReportReply {
            applied: true,
            state: match to {
                Outcome::To(s) => Some(s.as_upper()),
                Outcome::Gone => None,
            },
        },
        Some(Applied::Refused { state }) => ReportReply {
            applied: false,
            state: Some(state.as_upper()),
        },
        None => ReportReply {
            applied: false,
            state: None,
        },
    }
}

pub async fn report(
    State(st): State<AppState>,
    WorkerAuthed(w): WorkerAuthed,
    ApiJson(b): ApiJson<ReportRequest>,
) -> ApiResult<Json<ReportReply>> {
    let mut applied = st.store.report_tasks(w, &[worker_report(b)]).await?;
    Ok(Json(report_reply(applied.pop().flatten())))
}

/// Reports in their own transaction; the scheduler's loop places what they
/// freed.
async fn report_alone(
    st: &AppState,
    w: i64,
    reports: &[WorkerReport],
) -> ApiResult<Vec<Option<Applied>>> {
    let applied = st.store.report_tasks(w, reports).await?;
    if crate::scheduler::frees_slot(&applied) {
        crate::scheduler::wake::placement();
    }
    Ok(applied)
}

/// Most reports one request carries.
const MAX_REPORTS: usize = 1000;

/// Several reports at once, applied in order in one transaction (the worker
/// sends what piled up while its previous request was in flight).
pub async fn reports(
    State(st): State<AppState>,
    WorkerAuthed(w): WorkerAuthed,
    ApiJson(b): ApiJson<ReportBatch>,
) -> ApiResult<Json<ReportBatchReply>> {
    if b.reports.is_empty() || b.reports.len() > MAX_REPORTS {
        return Err(ApiError::Invalid {
            param: Some("reports".into()),
            detail: format!("reports holds 1 to {MAX_REPORTS} reports"),
        });
    }
    let reports: Vec<WorkerReport> = b.reports.into_iter().map(worker_report).collect();
    let (applied, assign) = match st.placing {
        // The slots filled at once, and this worker's new tasks in the
        // answer: no wait for the scheduler's next pass and the worker's
        // next sync. (Other workers' syncs are woken by the pass.)
        Some(cfg) => {
            use crate::scheduler::ReportedAndPlaced::{Done, PlacingFailed};
            match crate::scheduler::report_and_place(&*st.store, w, &reports, &cfg).await? {
                Done(applied, assign) => (applied, assign),
                // Nothing of it was kept. The reports go in alone, so a
                // pass that keeps failing (the scheduler's own passes log
                // it) never holds up a worker's reports; the scheduler
                // places later.
                PlacingFailed(e) => {
                    tracing::warn!(error = %e, "placing after reports failed; applying the reports alone");
                    (report_alone(&st, w, &reports).await?, Vec::new())
                }
            }
        }
        None => (report_alone(&st, w, &reports).await?, Vec::new()),
    };
    Ok(Json(ReportBatchReply {
        replies: applied.into_iter().map(report_reply).collect(),
        assign,
    }))
}

//! The algorithm center (services, their deployment) and the O&M center's
//! edge pools, mapped onto what taskcenter has: services registered by an
//! operator, deployed or not, optionally onto a pool of edge workers.

use super::catalogue::{listing, required, text};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Authed};
use super::AppState;
use crate::domain::query::QueryParams;
use crate::domain::{alg_id_of, now_millis, random_hex, vias, FieldError};
use crate::store::{
    Deployment, EdgePool, Listing, NewEdgePool, PoolFilter, PoolSort, Service, ServiceFilter,
    ServiceSort,
};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// `service_running` while deployed (`service_concerning` when deployed
/// onto a pool with no live worker), else `not_deployed`.
fn alg_status(s: &Service) -> &'static str {
    match (&s.pool, s.deployed) {
        (_, false) => "not_deployed",
        (Some((_, false)), true) => "service_concerning",
        _ => "service_running",
    }
}

/// ServicesListInfoDto.
#[derive(Serialize)]
pub(super) struct ServiceListItemDto {
    alg_id: String,
    service_id: String,
    service_name: String,
    package_id: String,
    package_name: String,
    company: String,
    alg_version: String,
    function_version: String,
    tags: Vec<String>,
    created_at: i64,
    alg_status: &'static str,
    deploy_type: &'static str,
    alg_class: &'static str,
    request_mode: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    /// Our extension: the display name (VIAS's `title`).
    alg_name: String,
}

impl From<Service> for ServiceListItemDto {
    fn from(s: Service) -> Self {
        ServiceListItemDto {
            alg_id: alg_id_of(&s.id),
            alg_status: alg_status(&s),
            package_id: s.id.clone(),
            package_name: s.service_name.clone(),
            service_id: s.id,
            service_name: s.service_name,
            company: s.company,
            alg_version: s.service_version.clone(),
            function_version: s.service_version,
            tags: Vec::new(),
            created_at: s.created_at,
            deploy_type: s.deploy_type.as_str(),
            alg_class: "self",
            request_mode: "async",
            description: s.description,
            alg_name: s.alg_name,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ServiceListReply {
    count: u64,
    service_list: Vec<ServiceListItemDto>,
    total: u64,
}

pub(super) async fn list_services(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ServiceListReply>> {
    let q = QueryParams::parse_with_lists(
        raw.as_deref(),
        &[
            "name_like",
            "is_paged",
            "page_size",
            "page_num",
            "order_by",
            "sort_name",
            "alg_status",
        ],
        &["alg_status"],
    )?;
    let listing = listing(
        &q,
        &[
            ("created_at", ServiceSort::CreatedAt),
            ("function_version", ServiceSort::FunctionVersion),
        ],
        10_000,
    )?;
    let statuses: Vec<&'static str> = q
        .all("alg_status")
        .iter()
        .map(|s| vias::one_of("alg_status", s, &vias::ALG_STATUSES))
        .collect::<Result<_, _>>()?;
    let filter = ServiceFilter {
        name_like: text("name_like", q.get("name_like").map(str::to_owned), 100)?
            .filter(|n| !n.is_empty()),
        deployed: None,
    };
    let l = if statuses.is_empty() {
        st.store.list_services(p.pk, &filter, listing).await?
    } else {
        // The status is derived (deployment and pool liveness): filter every
        // matching service, then cut the page, so `count` stays exact. A
        // project's services are a catalogue, not millions of rows.
        let every = Listing {
            page: None,
            ..listing
        };
        let mut l = st.store.list_services(p.pk, &filter, every).await?;
        l.items.retain(|s| statuses.contains(&alg_status(s)));
        l.count = l.items.len() as u64;
        if let Some(page) = listing.page {
            let skip = usize::try_from(page.offset).unwrap_or(usize::MAX);
            let take = usize::try_from(page.limit).unwrap_or(usize::MAX);
            l.items = l.items.into_iter().skip(skip).take(take).collect();
        }
        l
    };
    Ok(Json(ServiceListReply {
        count: l.count,
        service_list: l.items.into_iter().map(Into::into).collect(),
        total: l.total,
    }))
}

/// DeploymentConstraintsDto, as far as taskcenter has constraints.
#[derive(Serialize)]
pub(super) struct ConstraintsDto {
    request_mode: &'static str,
    input_types: Vec<&'static str>,
    output_types: Vec<&'static str>,
}

/// ShowServiceDetailResponse.
#[derive(Serialize)]
pub(super) struct ServiceDetailDto {
    service_id: String,
    service_name: String,
    function_version: String,
    release_flag: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    created_at: i64,
    updated_at: i64,
    release_at: i64,
    api: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_id: Option<String>,
    alg_name: String,
    alg_id: String,
    request_mode: &'static str,
    package_name: String,
    package_id: String,
    alg_version: String,
    alg_versions: Vec<String>,
    service_api_list: Vec<serde_json::Value>,
    deployment_constraints: ConstraintsDto,
    company: String,
    tags: Vec<String>,
    deploy_type: &'static str,
    alg_class: &'static str,
    alg_status: &'static str,
}

pub(super) async fn show_service(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ServiceDetailDto>> {
    let s = find(&st, p.pk, &id).await?;
    // The other versions of the same service.
    let all = st
        .store
        .list_services(
            p.pk,
            &ServiceFilter::default(),
            Listing {
                sort: ServiceSort::FunctionVersion,
                descending: false,
                page: None,
            },
        )
        .await?;
    let versions = all
        .items
        .iter()
        .filter(|o| o.service_name == s.service_name && o.id != s.id)
        .map(|o| o.service_version.clone())
        .collect();
    Ok(Json(ServiceDetailDto {
        alg_id: alg_id_of(&s.id),
        alg_status: alg_status(&s),
        api: format!(
            "/v2/{}/services/{}/tasks",
            p.id,
            percent_encoding::utf8_percent_encode(
                &s.service_name,
                percent_encoding::NON_ALPHANUMERIC
            )
        ),
        pool_id: s.pool.map(|p| p.0),
        package_name: s.service_name.clone(),
        package_id: s.id.clone(),
        service_id: s.id,
        service_name: s.service_name,
        function_version: s.service_version.clone(),
        alg_version: s.service_version,
        alg_versions: versions,
        release_flag: true,
        description: s.description,
        created_at: s.created_at,
        updated_at: s.updated_at,
        release_at: s.created_at,
        alg_name: s.alg_name,
        request_mode: "async",
        service_api_list: Vec::new(),
        deployment_constraints: ConstraintsDto {
            request_mode: "async",
            input_types: vec!["URL"],
            output_types: vec!["Webhook"],
        },
        company: s.company,
        tags: Vec::new(),
        deploy_type: s.deploy_type.as_str(),
        alg_class: "self",
    }))
}

async fn find(st: &AppState, project_pk: i64, key: &str) -> ApiResult<Service> {
    st.store
        .find_service(project_pk, key)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            param: Some("service_id".into()),
            detail: "algorithm service does not exist".into(),
        })
}

#[derive(Deserialize)]
pub(super) struct DeployBody {
    pool_id: Option<String>,
    stream_count: Option<i64>,
    deploy_config: Option<serde_json::Map<String, serde_json::Value>>,
    envs: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
pub(super) struct DeployReply {
    alg_name: String,
}

pub(super) async fn deploy_algorithm(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(alg_id): ApiPath,
    ApiJson(b): ApiJson<DeployBody>,
) -> ApiResult<Json<DeployReply>> {
    let stream_count = required(b.stream_count, "stream_count")?;
    if !(1..=10_000).contains(&stream_count) {
        return Err(FieldError::new("stream_count", "stream_count must be 1 to 10000").into());
    }
    if let Some(envs) = &b.envs {
        if envs.values().any(|v| !v.is_string()) {
            return Err(FieldError::new("envs", "envs maps names to strings").into());
        }
    }
    let s = find(&st, p.pk, &alg_id).await?;
    if let Some(pool) = &b.pool_id {
        crate::domain::field::check_id("pool_id", pool)?;
        if s.deploy_type != crate::domain::DeployType::Edge {
            // A valid request the service cannot take: it is a cloud service.
            return Err(ApiError::NotAllowed(
                "only an edge service deploys onto an edge pool".into(),
            ));
        }
    }
    let d = Deployment {
        pool_id: b.pool_id,
        stream_count,
        deploy_config: b.deploy_config.map(serde_json::Value::Object),
        envs: b.envs.map(serde_json::Value::Object),
    };
    let s = st.store.deploy_service(p.pk, &s.id, &d).await?;
    Ok(Json(DeployReply {
        alg_name: s.alg_name,
    }))
}

#[derive(Serialize)]
pub(super) struct StopDeployReply {
    alg_id: String,
}

pub(super) async fn stop_deploy_algorithm(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(alg_id): ApiPath,
) -> ApiResult<Json<StopDeployReply>> {
    let s = find(&st, p.pk, &alg_id).await?;
    st.store.undeploy_service(p.pk, &s.id).await?;
    Ok(Json(StopDeployReply { alg_id }))
}

/// EdgePoolListItemDto (and the head of ShowEdgePoolInfo).
#[derive(Serialize)]
pub(super) struct PoolDto {
    id: String,
    name: String,
    state: &'static str,
    project_id: String,
    workspace_id: String,
    created_at: i64,
    updated_at: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
}

/// EdgeNodeInfoDto: a worker of the pool.
#[derive(Serialize)]
pub(super) struct NodeDto {
    id: String,
    name: String,
    state: &'static str,
    enable_gpu: bool,
    enable_npu: bool,
    gpu_info: Vec<serde_json::Value>,
    npu_info: Vec<serde_json::Value>,
    /// Our extension: the worker's task slots.
    slots: i64,
}

#[derive(Serialize)]
pub(super) struct PoolDetailDto {
    #[serde(flatten)]
    pool: PoolDto,
    nodes: Vec<NodeDto>,
}

fn pool_dto(p: &EdgePool, project_id: &str) -> PoolDto {
    PoolDto {
        id: p.id.clone(),
        name: p.name.clone(),
        state: if p.running() { "Running" } else { "Abnormal" },
        project_id: project_id.to_owned(),
        workspace_id: project_id.to_owned(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        description: p.description.clone(),
    }
}

#[derive(Deserialize)]
pub(super) struct CreatePoolBody {
    name: Option<String>,
    description: Option<String>,
    ief_service_instance_id: Option<String>,
    nodes: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(super) struct CreatePoolReply {
    id: String,
}

pub(super) async fn create_edge_pool(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiJson(b): ApiJson<CreatePoolBody>,
) -> ApiResult<Response> {
    let name = required(b.name, "name")?;
    vias::check_pool_name("name", &name)?;
    let nodes = required(b.nodes, "nodes")?;
    if nodes.is_empty() || nodes.len() > 10 {
        return Err(FieldError::new("nodes", "nodes lists 1 to 10 worker names").into());
    }
    for (i, n) in nodes.iter().enumerate() {
        crate::domain::field::check_display_name("nodes", n, 1, 64)?;
        if nodes[..i].contains(n) {
            return Err(FieldError::new("nodes", format!("nodes names {n:?} twice")).into());
        }
    }
    let pool = NewEdgePool {
        id: random_hex(16).map_err(|e| ApiError::Internal(e.to_string()))?,
        name,
        description: text("description", b.description, 255)?.unwrap_or_default(),
        ief_service_instance_id: text("ief_service_instance_id", b.ief_service_instance_id, 255)?,
        nodes,
        created_at: now_millis(),
    };
    let pool = st.store.create_edge_pool(p.pk, &pool).await?;
    // VIAS documents 201 here, and 200 everywhere else.
    Ok((StatusCode::CREATED, Json(CreatePoolReply { id: pool.id })).into_response())
}

#[derive(Serialize)]
pub(super) struct PoolListReply {
    count: u64,
    edge_pools: Vec<PoolDto>,
}

pub(super) async fn list_edge_pools(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<PoolListReply>> {
    let q = QueryParams::parse(
        raw.as_deref(),
        &[
            "is_paged",
            "page_size",
            "page_num",
            "name_like",
            "order_by",
            "sort_name",
            "state",
        ],
    )?;
    // VIAS's ranges for this list differ from the others: page_size 1–1000.
    let paged = q.bool("is_paged", false)?;
    let size = q.int("page_size", 1, 1000, 10)?;
    let num = q.int("page_num", 1, 10_000, 1)?;
    let sort = match q.choice("sort_name", &["created_at", "updated_at"])? {
        Some(1) => PoolSort::UpdatedAt,
        _ => PoolSort::CreatedAt,
    };
    let descending = q.choice("order_by", &["asc", "desc"])? != Some(0);
    let name_like = match q.get("name_like") {
        Some(n) => {
            if n.is_empty()
                || n.len() > 30
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(
                    FieldError::new("name_like", "name_like must match ^[a-z0-9-]{1,30}$").into(),
                );
            }
            Some(n.to_owned())
        }
        None => None,
    };
    let running = match q.get("state") {
        Some("Running") => Some(true),
        Some("Abnormal") => Some(false),
        Some(_) => return Err(FieldError::new("state", "state is Running or Abnormal").into()),
        None => None,
    };
    let l = st
        .store
        .list_edge_pools(
            p.pk,
            &PoolFilter { name_like, running },
            Listing {
                sort,
                descending,
                page: paged.then_some(crate::store::Page {
                    offset: u64::from(num - 1) * u64::from(size),
                    limit: u64::from(size),
                }),
            },
        )
        .await?;
    Ok(Json(PoolListReply {
        count: l.count,
        edge_pools: l.items.iter().map(|x| pool_dto(x, &p.id)).collect(),
    }))
}

pub(super) async fn show_edge_pool(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<PoolDetailDto>> {
    let pool = st
        .store
        .find_edge_pool(p.pk, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            param: Some("id".into()),
            detail: "edge pool does not exist".into(),
        })?;
    Ok(Json(PoolDetailDto {
        pool: pool_dto(&pool, &p.id),
        nodes: pool
            .nodes
            .iter()
            .map(|n| NodeDto {
                id: n.worker_id.clone().unwrap_or_else(|| n.name.clone()),
                name: n.name.clone(),
                state: if n.live { "Running" } else { "Abnormal" },
                enable_gpu: false,
                enable_npu: false,
                gpu_info: Vec::new(),
                npu_info: Vec::new(),
                slots: n.slots,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
pub(super) struct DeletedReply {
    id: String,
}

pub(super) async fn delete_edge_pool(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<DeletedReply>> {
    st.store.delete_edge_pool(p.pk, &id).await?;
    Ok(Json(DeletedReply { id }))
}

//! Video groups, video sources and algorithm services: what batches are made of.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Authed};
use super::AppState;
use crate::domain::query::QueryParams;
use crate::domain::{field, now_millis, random_hex, FieldError};
use crate::store::{Page, Service, VideoGroup, VideoSource};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// `page_num` (1–10000, default 1) and `page_size` (1–1000, default 100) for
/// the catalogue lists, where VIAS documents no paging of its own.
fn page(raw: Option<&str>) -> Result<Page, FieldError> {
    let q = QueryParams::parse(raw, &["page_num", "page_size"])?;
    let num = q.int("page_num", 1, 10_000, 1)?;
    let size = q.int("page_size", 1, 1000, 100)?;
    Ok(Page {
        offset: u64::from(num - 1) * u64::from(size),
        limit: u64::from(size),
    })
}

fn new_id(given: Option<String>) -> ApiResult<String> {
    match given {
        Some(id) => {
            field::check_id("id", &id)?;
            Ok(id)
        }
        None => random_hex(16).map_err(|e| ApiError::Internal(e.to_string())),
    }
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, FieldError> {
    v.ok_or_else(|| FieldError::new(name, format!("{name} is required")))
}

#[derive(Serialize)]
pub(super) struct GroupDto {
    id: String,
    name: String,
    created_at: i64,
}

impl From<VideoGroup> for GroupDto {
    fn from(g: VideoGroup) -> Self {
        GroupDto {
            id: g.id,
            name: g.name,
            created_at: g.created_at,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CreateGroupBody {
    id: Option<String>,
    name: Option<String>,
}

pub(super) async fn create_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiJson(b): ApiJson<CreateGroupBody>,
) -> ApiResult<Json<GroupDto>> {
    let name = required(b.name, "name")?;
    let id = new_id(b.id)?;
    let g = st
        .store
        .create_video_group(p.pk, &id, &name, now_millis())
        .await?;
    Ok(Json(g.into()))
}

#[derive(Serialize)]
pub(super) struct GroupList {
    count: u64,
    groups: Vec<GroupDto>,
}

pub(super) async fn list_video_groups(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<GroupList>> {
    let (count, groups) = st
        .store
        .list_video_groups(p.pk, page(raw.as_deref())?)
        .await?;
    Ok(Json(GroupList {
        count,
        groups: groups.into_iter().map(Into::into).collect(),
    }))
}

pub(super) async fn delete_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<serde_json::Value>> {
    st.store.delete_video_source(p.pk, &id).await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

pub(super) async fn show_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<GroupDto>> {
    let g = st
        .store
        .find_video_group(p.pk, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            param: Some("id".into()),
            detail: "video group does not exist".into(),
        })?;
    Ok(Json(g.into()))
}

#[derive(Serialize)]
pub(super) struct SourceDto {
    id: String,
    name: String,
    url: String,
    group_ids: Vec<String>,
    created_at: i64,
}

impl From<VideoSource> for SourceDto {
    fn from(s: VideoSource) -> Self {
        SourceDto {
            id: s.id,
            name: s.name,
            url: s.url,
            group_ids: s.group_ids,
            created_at: s.created_at,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CreateSourceBody {
    id: Option<String>,
    name: Option<String>,
    url: Option<String>,
    group_ids: Option<Vec<String>>,
}

pub(super) async fn create_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiJson(b): ApiJson<CreateSourceBody>,
) -> ApiResult<Json<SourceDto>> {
    let name = required(b.name, "name")?;
    let url = required(b.url, "url")?;
    let group_ids = b.group_ids.unwrap_or_default();
    if group_ids.len() > 100 {
        return Err(FieldError::new("group_ids", "group_ids must list at most 100 groups").into());
    }
    for g in &group_ids {
        field::check_id("group_ids", g)?;
    }
    let id = new_id(b.id)?;
    let s = st
        .store
        .create_video_source(
            p.pk,
            &VideoSource {
                id,
                name,
                url,
                group_ids,
                created_at: now_millis(),
            },
        )
        .await?;
    Ok(Json(s.into()))
}

#[derive(Serialize)]
pub(super) struct SourceList {
    count: u64,
    sources: Vec<SourceDto>,
}

pub(super) async fn list_video_sources(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<SourceList>> {
    let (count, sources) = st
        .store
        .list_video_sources(p.pk, page(raw.as_deref())?)
        .await?;
    Ok(Json(SourceList {
        count,
        sources: sources.into_iter().map(Into::into).collect(),
    }))
}

pub(super) async fn show_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SourceDto>> {
    let s = st
        .store
        .find_video_source(p.pk, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            param: Some("id".into()),
            detail: "video source does not exist".into(),
        })?;
    Ok(Json(s.into()))
}

#[derive(Serialize)]
pub(super) struct ServiceDto {
    id: String,
    service_name: String,
    service_version: String,
    alg_name: String,
    company: String,
    deploy_type: String,
    status: &'static str,
    created_at: i64,
}

impl From<Service> for ServiceDto {
    fn from(s: Service) -> Self {
        ServiceDto {
            id: s.id,
            service_name: s.service_name,
            service_version: s.service_version,
            alg_name: s.alg_name,
            company: s.company,
            deploy_type: s.deploy_type,
            status: if s.deployed { "deployed" } else { "undeployed" },
            created_at: s.created_at,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ServiceList {
    count: u64,
    services: Vec<ServiceDto>,
}

pub(super) async fn list_services(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ServiceList>> {
    let (count, services) = st.store.list_services(p.pk, page(raw.as_deref())?).await?;
    Ok(Json(ServiceList {
        count,
        services: services.into_iter().map(Into::into).collect(),
    }))
}

pub(super) async fn show_service(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<ServiceDto>> {
    let s = st
        .store
        .find_service(p.pk, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            param: Some("id".into()),
            detail: "algorithm service does not exist".into(),
        })?;
    Ok(Json(s.into()))
}

//! The video center: video sources and video groups, with VIAS's fields.

use super::catalogue::{ids, listing, new_id, required, text};
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, Authed, OptionalJson};
use super::AppState;
use crate::domain::query::QueryParams;
use crate::domain::vias::{self, SOURCE_TYPES, SOURCE_TYPE_FILTERS};
use crate::domain::{now_millis, DeployType, FieldError};
use crate::store::{
    GroupFilter, GroupSort, GroupUpdate, NewVideoGroup, NewVideoSource, SourceFilter, SourceSort,
    SourceUpdate, VideoGroup, VideoSource,
};
use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Sources and groups reached: taskcenter sets no quota of its own.
const QUOTA: u64 = 1_000_000;

fn access_type(param: &str, v: &str) -> Result<DeployType, FieldError> {
    DeployType::parse(v)
        .ok_or_else(|| FieldError::new(param, format!("{param} must be cloud or edge")))
}

/// taskcenter does not probe streams: every source reports online.
#[derive(Serialize)]
pub(super) struct StatusDto {
    status: &'static str,
    name: &'static str,
    level: &'static str,
}

const ONLINE: StatusDto = StatusDto {
    status: "ONLINE",
    name: "online",
    level: "1",
};

#[derive(Serialize)]
pub(super) struct GroupStatusDto {
    num_online: i64,
    num_exception: i64,
    num_offline: i64,
}

/// VideoGroupInfoDto: ShowVideoGroupDetail, and a source's `video_packages`.
#[derive(Serialize)]
pub(super) struct GroupInfoDto {
    video_group_id: String,
    video_group_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    access_type: &'static str,
    create_at: i64,
    modify_at: i64,
    num_video_source: i64,
    group_status: GroupStatusDto,
    num_batch_task: i64,
}

impl From<VideoGroup> for GroupInfoDto {
    fn from(g: VideoGroup) -> Self {
        GroupInfoDto {
            video_group_id: g.id,
            video_group_name: g.name,
            description: g.description,
            access_type: g.access_type.as_str(),
            create_at: g.created_at,
            modify_at: g.updated_at,
            num_video_source: g.num_sources,
            group_status: GroupStatusDto {
                num_online: g.num_sources,
                num_exception: 0,
                num_offline: 0,
            },
            num_batch_task: g.num_batch_tasks,
        }
    }
}

/// VideoGroupListInfoDto: ListVideoGroups' items.
#[derive(Serialize)]
pub(super) struct GroupListItemDto {
    video_group_id: String,
    video_group_name: String,
    num_video_source: i64,
    group_status: GroupStatusDto,
    access_type: &'static str,
    create_at: i64,
    modify_at: i64,
    num_batch_task: i64,
    /// The types of its sources, comma-joined.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    source_type: Option<String>,
}

impl From<VideoGroup> for GroupListItemDto {
    fn from(g: VideoGroup) -> Self {
        GroupListItemDto {
            source_type: (!g.source_types.is_empty()).then(|| g.source_types.join(",")),
            video_group_id: g.id,
            video_group_name: g.name,
            num_video_source: g.num_sources,
            group_status: GroupStatusDto {
                num_online: g.num_sources,
                num_exception: 0,
                num_offline: 0,
            },
            access_type: g.access_type.as_str(),
            create_at: g.created_at,
            modify_at: g.updated_at,
            num_batch_task: g.num_batch_tasks,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CreateGroupBody {
    video_group_name: Option<String>,
    description: Option<String>,
    access_type: Option<String>,
    video_source_ids: Option<Vec<String>>,
    /// Our extension: a client-chosen id.
    id: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CreateGroupReply {
    video_group_id: String,
}

pub(super) async fn create_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiJson(b): ApiJson<CreateGroupBody>,
) -> ApiResult<Json<CreateGroupReply>> {
    let name = required(b.video_group_name, "video_group_name")?;
    vias::check_group_name("video_group_name", &name)?;
    let access = access_type("access_type", &required(b.access_type, "access_type")?)?;
    let g = NewVideoGroup {
        id: new_id(b.id, "groups")?,
        name,
        description: text("description", b.description, 100)?.unwrap_or_default(),
        access_type: access,
        source_ids: ids("video_source_ids", b.video_source_ids, 1000)?,
        created_at: now_millis(),
    };
    let g = st.store.create_video_group(p.pk, &g).await?;
    Ok(Json(CreateGroupReply {
        video_group_id: g.id,
    }))
}

#[derive(Serialize)]
pub(super) struct GroupListReply {
    video_group_number: u64,
    total_number: u64,
    quota_number: u64,
    video_group_list: Vec<GroupListItemDto>,
}

pub(super) async fn list_video_groups(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<GroupListReply>> {
    let q = QueryParams::parse_with_lists(
        raw.as_deref(),
        &[
            "sort_name",
            "order_by",
            "is_paged",
            "page_size",
            "page_num",
            "name",
            "status",
            "access_type",
            "has_task",
            "type",
        ],
        &["access_type", "type"],
    )?;
    let listing = listing(
        &q,
        &[
            ("create_at", GroupSort::CreateAt),
            ("modify_at", GroupSort::ModifyAt),
            ("num_video_source", GroupSort::NumVideoSource),
            ("num_task", GroupSort::NumTask),
        ],
        100_000,
    )?;
    let name = text("name", q.get("name").map(str::to_owned), 20)?.filter(|n| !n.is_empty());
    // Every source is online (level 1): levels 2 and 9 match nothing.
    let none = match q.choice("status", &["1", "2", "9"])? {
        Some(0) | None => false,
        Some(_) => true,
    };
    let filter = GroupFilter {
        name_like: name,
        access_types: q
            .all("access_type")
            .iter()
            .map(|a| access_type("access_type", a))
            .collect::<Result<_, _>>()?,
        has_task: q.bool("has_task", false)?,
        source_types: q
            .all("type")
            .iter()
            .map(|t| vias::one_of("type", t, &SOURCE_TYPES).map(str::to_owned))
            .collect::<Result<_, _>>()?,
    };
    let mut l = st.store.list_video_groups(p.pk, &filter, listing).await?;
    if none {
        l.count = 0;
        l.items.clear();
    }
    Ok(Json(GroupListReply {
        video_group_number: l.count,
        total_number: l.total,
        quota_number: QUOTA,
        video_group_list: l.items.into_iter().map(Into::into).collect(),
    }))
}

fn group_not_found() -> ApiError {
    ApiError::NotFound {
        param: Some("video_group_id".into()),
        detail: "video group does not exist".into(),
    }
}

pub(super) async fn show_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<GroupInfoDto>> {
    let g = st
        .store
        .find_video_group(p.pk, &id)
        .await?
        .ok_or_else(group_not_found)?;
    Ok(Json(g.into()))
}

#[derive(Deserialize, Default)]
pub(super) struct UpdateGroupBody {
    video_group_name: Option<String>,
    description: Option<String>,
    video_source_ids: Option<Vec<String>>,
}

/// The reply of UpdateVideoGroup and the deletes: VIAS's SDK keeps it as
/// raw text; it is the object's id.
#[derive(Serialize)]
pub(super) struct IdReply {
    id: String,
}

pub(super) async fn update_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
    OptionalJson(b): OptionalJson<UpdateGroupBody>,
) -> ApiResult<Json<IdReply>> {
    let b = b.unwrap_or_default();
    if let Some(n) = &b.video_group_name {
        vias::check_group_rename("video_group_name", n)?;
    }
    let source_ids = match b.video_source_ids {
        Some(v) => Some(ids("video_source_ids", Some(v), 1000)?),
        None => None,
    };
    let u = GroupUpdate {
        name: b.video_group_name,
        description: text("description", b.description, 100)?,
        source_ids,
    };
    st.store.update_video_group(p.pk, &id, &u).await?;
    Ok(Json(IdReply { id }))
}

pub(super) async fn delete_video_group(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<IdReply>> {
    st.store.delete_video_group(p.pk, &id).await?;
    Ok(Json(IdReply { id }))
}

/// The fields a source's list item and detail share.
#[derive(Serialize)]
pub(super) struct SourceFields {
    video_source_name: String,
    status: StatusDto,
    access_type: &'static str,
    #[serde(rename = "type")]
    source_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<String>,
    create_at: i64,
    type_config: String,
    video_packages: Vec<GroupInfoDto>,
    tag: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    stream_path: String,
    scene_recommend: Vec<String>,
    video_source_quality: Vec<String>,
}

fn source_fields(s: VideoSource, groups: &[VideoGroup]) -> SourceFields {
    let packages = s
        .group_ids
        .iter()
        .filter_map(|id| groups.iter().find(|g| g.id == *id))
        .map(|g| GroupInfoDto::from(g.clone()))
        .collect();
    SourceFields {
        video_source_name: s.name,
        status: ONLINE,
        access_type: s.access_type.as_str(),
        source_type: s.source_type,
        latitude: s.latitude,
        longitude: s.longitude,
        create_at: s.created_at,
        type_config: s.type_config,
        video_packages: packages,
        tag: s.tags,
        stream_path: s.url,
        scene_recommend: Vec::new(),
        video_source_quality: Vec::new(),
    }
}

/// ListVideoSourceInfoDto.
#[derive(Serialize)]
pub(super) struct SourceListItemDto {
    video_source_id: String,
    num_tasks: i64,
    num_service_config_templates: i64,
    #[serde(flatten)]
    fields: SourceFields,
}

/// VideoSourceDetail (it carries no id).
#[derive(Serialize)]
pub(super) struct SourceDetailDto {
    #[serde(flatten)]
    fields: SourceFields,
    service_config_templates: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct CreateSourceBody {
    video_source_name: Option<String>,
    access_type: Option<String>,
    #[serde(rename = "type")]
    source_type: Option<String>,
    latitude: Option<String>,
    longitude: Option<String>,
    video_group_ids: Option<Vec<String>>,
    type_config: Option<String>,
    tag: Option<Vec<String>>,
    /// Our extensions: a client-chosen id, and a stream URL that stands for
    /// `type` `url` with a URL `type_config`.
    id: Option<String>,
    url: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CreateSourceReply {
    video_source_id: String,
}

/// A `type_config` and the stream URL in it (empty for sources that name
/// no URL, such as cameras).
fn config_and_url(type_config: &str) -> Result<(String, String), FieldError> {
    vias::check_type_config("type_config", type_config)?;
    let url = vias::url_in_type_config(type_config).unwrap_or_default();
    if url.chars().count() > 2048 {
        return Err(FieldError::new(
            "type_config",
            "the stream URL is longer than 2048 characters",
        ));
    }
    Ok((type_config.to_owned(), url))
}

fn coordinates(
    lat: Option<String>,
    lon: Option<String>,
) -> Result<(Option<String>, Option<String>), FieldError> {
    if let Some(v) = &lat {
        vias::check_coordinate("latitude", v, 90.0)?;
    }
    if let Some(v) = &lon {
        vias::check_coordinate("longitude", v, 180.0)?;
    }
    Ok((lat, lon))
}

pub(super) async fn create_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiJson(b): ApiJson<CreateSourceBody>,
) -> ApiResult<Json<CreateSourceReply>> {
    let name = required(b.video_source_name, "video_source_name")?;
    vias::check_source_name("video_source_name", &name)?;
    let access = access_type("access_type", &required(b.access_type, "access_type")?)?;
    // A url is checked even when type_config makes it unused.
    if let Some(u) = &b.url {
        crate::domain::field::check_text("url", u, 2048)?;
        if u.trim().is_empty() {
            return Err(FieldError::new("url", "url must not be empty").into());
        }
    }
    let (type_config, url) = match (b.type_config, b.url) {
        (Some(tc), _) => config_and_url(&tc)?,
        (None, Some(u)) => (vias::url_type_config(&u), u),
        (None, None) => {
            return Err(FieldError::new("type_config", "type_config is required").into())
        }
    };
    let source_type = match b.source_type {
        Some(t) => vias::one_of("type", &t, &SOURCE_TYPES)?.to_owned(),
        None if !url.is_empty() => "url".to_owned(),
        None => return Err(FieldError::new("type", "type is required").into()),
    };
    let tags = b.tag.unwrap_or_default();
    vias::check_tags("tag", &tags)?;
    let (latitude, longitude) = coordinates(b.latitude, b.longitude)?;
    let s = NewVideoSource {
        id: new_id(b.id, "sources")?,
        name,
        access_type: access,
        source_type,
        type_config,
        url,
        latitude,
        longitude,
        tags,
        group_ids: ids("video_group_ids", b.video_group_ids, 100)?,
        created_at: now_millis(),
    };
    let s = st.store.create_video_source(p.pk, &s).await?;
    Ok(Json(CreateSourceReply {
        video_source_id: s.id,
    }))
}

#[derive(Serialize)]
pub(super) struct SourceListReply {
    video_source_number: u64,
    total_number: u64,
    quota_number: u64,
    video_source_list: Vec<SourceListItemDto>,
}

pub(super) async fn list_video_sources(
    State(st): State<AppState>,
    Authed(p): Authed,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<SourceListReply>> {
    let q = QueryParams::parse_with_lists(
        raw.as_deref(),
        &[
            "scope",
            "scope_name",
            "status",
            "type",
            "video_group_id",
            "sort_name",
            "order_by",
            "is_paged",
            "page_size",
            "page_num",
            "access_type",
            "platform_name",
            "tag",
        ],
        &["status", "type", "video_group_id", "access_type"],
    )?;
    let listing = listing(
        &q,
        &[
            ("create_at", SourceSort::CreateAt),
            ("num_task", SourceSort::NumTask),
            ("num_template", SourceSort::NumTemplate),
        ],
        100_000,
    )?;
    let scope = text("scope", q.get("scope").map(str::to_owned), 255)?.filter(|s| !s.is_empty());
    let by_group = q.choice("scope_name", &["source_name", "group_name"])? == Some(1);
    text(
        "platform_name",
        q.get("platform_name").map(str::to_owned),
        100,
    )?;
    let tag = text("tag", q.get("tag").map(str::to_owned), 255)?.filter(|t| !t.is_empty());
    let statuses = q.all("status");
    for s in &statuses {
        vias::one_of("status", s, &["1", "2", "9"])?;
    }
    let group_ids = q.all("video_group_id");
    for g in &group_ids {
        crate::domain::field::check_id("video_group_id", g)?;
    }
    let filter = SourceFilter {
        name_like: scope.clone().filter(|_| !by_group),
        group_name_like: scope.filter(|_| by_group),
        types: q
            .all("type")
            .iter()
            .map(|t| vias::one_of("type", t, &SOURCE_TYPE_FILTERS).map(str::to_owned))
            .collect::<Result<_, _>>()?,
        group_ids,
        access_types: q
            .all("access_type")
            .iter()
            .map(|a| access_type("access_type", a))
            .collect::<Result<_, _>>()?,
        tag,
    };
    let mut l = st.store.list_video_sources(p.pk, &filter, listing).await?;
    // Every source is online (level 1).
    if !statuses.is_empty() && !statuses.iter().any(|s| s == "1") {
        l.sources.count = 0;
        l.sources.items.clear();
    }
    let groups = l.groups;
    Ok(Json(SourceListReply {
        video_source_number: l.sources.count,
        total_number: l.sources.total,
        quota_number: QUOTA,
        video_source_list: l
            .sources
            .items
            .into_iter()
            .map(|s| SourceListItemDto {
                video_source_id: s.id.clone(),
                num_tasks: s.num_tasks,
                num_service_config_templates: 0,
                fields: source_fields(s, &groups),
            })
            .collect(),
    }))
}

fn source_not_found() -> ApiError {
    ApiError::NotFound {
        param: Some("video_source_id".into()),
        detail: "video source does not exist".into(),
    }
}

pub(super) async fn show_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<SourceDetailDto>> {
    let (s, groups) = st
        .store
        .find_video_source(p.pk, &id)
        .await?
        .ok_or_else(source_not_found)?;
    Ok(Json(SourceDetailDto {
        fields: source_fields(s, &groups),
        service_config_templates: Vec::new(),
    }))
}

#[derive(Deserialize)]
pub(super) struct UpdateSourceBody {
    video_source_name: Option<String>,
    latitude: Option<String>,
    longitude: Option<String>,
    type_config: Option<String>,
    tag: Option<Vec<String>>,
}

pub(super) async fn update_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
    ApiJson(b): ApiJson<UpdateSourceBody>,
) -> ApiResult<Json<SourceDetailDto>> {
    if let Some(n) = &b.video_source_name {
        vias::check_source_name("video_source_name", n)?;
    }
    if let Some(t) = &b.tag {
        vias::check_tags("tag", t)?;
    }
    let (latitude, longitude) = coordinates(b.latitude, b.longitude)?;
    let u = SourceUpdate {
        name: b.video_source_name,
        latitude,
        longitude,
        type_config: b.type_config.as_deref().map(config_and_url).transpose()?,
        tags: b.tag,
    };
    st.store.update_video_source(p.pk, &id, &u).await?;
    let (s, groups) = st
        .store
        .find_video_source(p.pk, &id)
        .await?
        .ok_or_else(source_not_found)?;
    Ok(Json(SourceDetailDto {
        fields: source_fields(s, &groups),
        service_config_templates: Vec::new(),
    }))
}

pub(super) async fn delete_video_source(
    State(st): State<AppState>,
    Authed(p): Authed,
    ApiPath(id): ApiPath,
) -> ApiResult<Json<IdReply>> {
    st.store.delete_video_source(p.pk, &id).await?;
    Ok(Json(IdReply { id }))
}

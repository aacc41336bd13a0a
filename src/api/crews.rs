//! /api/v1/crews (their agents: `agents`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, PageParams, Path, Query, Validate};
use super::settings::Limits;
use super::state::AppState;
use crate::domain::ids::Kind;
use crate::domain::kinds::Runtime;
use crate::domain::named::Named as _;
use crate::domain::types::Crew;
use crate::domain::{DomainError, Result, validate};
use crate::store::crews::{self, CrewPatch, NewCrew};
use crate::store::roster;
use crewship_wire::requests::{CreateCrew, PatchCrew};

/// A crew named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CrewPath {
    /// The crew's id or slug.
    pub crew: String,
}

/// Where a new crew's agents run: `local` unless it says.
fn runtime(b: &CreateCrew) -> Result<Runtime> {
    Ok(b.runtime.as_deref().map_or(Ok(Runtime::Local), |r| Runtime::parse_field("runtime", r))?)
}

impl Validate for CreateCrew {
    fn validate(&self, _: &Limits) -> Result<()> {
        validate::slug(&self.slug, Kind::Crew)?;
        validate::name(&self.name)?;
        validate::at_least_one("max_concurrent_agents", self.max_concurrent_agents.unwrap_or(2))?;
        if runtime(self)? == Runtime::Docker {
            roster::require_image(self.image.as_deref())?;
        }
        Ok(())
    }
}

/// Create a crew.
#[utoipa::path(post, path = "/crews", tag = "crews", request_body = CreateCrew, responses(
    (status = 201, description = "The new crew", body = Crew),
    (status = 409, description = "A live crew has this slug"),
))]
pub async fn create(
    State(app): State<AppState>,
    JsonBody(b): JsonBody<CreateCrew>,
) -> ApiResult<(StatusCode, Json<Crew>)> {
    let runtime = runtime(&b)?;
    let max = b.max_concurrent_agents.unwrap_or(2);
    let new = NewCrew { slug: b.slug, name: b.name, max_concurrent_agents: max, runtime, image: b.image };
    let crew = app.store.write(move |tx| roster::create_crew(tx, new)).await?;
    app.crew_containers.crew_created(&crew).await;
    Ok((StatusCode::CREATED, Json(crew.to_api())))
}

/// With `include_deleted=true`, deleted ones too.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true` to list deleted ones too.
    #[param(value_type = Option<bool>)]
    include_deleted: Option<String>,
}

impl ListQuery {
    pub(super) fn deleted(&self) -> Result<bool> {
        match self.include_deleted.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(DomainError::invalid("include_deleted must be true or false")),
        }
    }
}

/// List crews, oldest first.
#[utoipa::path(get, path = "/crews", tag = "crews", params(PageParams, ListQuery), responses(
    (status = 200, description = "A page of crews", body = Listing<Crew>),
))]
pub async fn list(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Listing<Crew>>> {
    let page = page.request()?;
    let deleted = q.deleted()?;
    Ok(Json(app.store.read(move |c| crews::list(c, deleted, page)).await?.into()))
}

/// Get a crew, deleted ones included.
#[utoipa::path(get, path = "/crews/{crew}", tag = "crews", params(CrewPath), responses(
    (status = 200, description = "The crew", body = Crew),
))]
pub async fn get(State(app): State<AppState>, Path(CrewPath { crew: key }): Path<CrewPath>) -> ApiResult<Json<Crew>> {
    Ok(Json(app.store.read(move |c| crews::resolve(c, &key)).await?.to_api()))
}

impl Validate for PatchCrew {
    fn validate(&self, _: &Limits) -> Result<()> {
        if let Some(n) = &self.name {
            validate::name(n)?;
        }
        if let Some(m) = self.max_concurrent_agents {
            validate::at_least_one("max_concurrent_agents", m)?;
        }
        Ok(())
    }
}

/// Change a live crew; a docker crew's new image replaces its container.
#[utoipa::path(patch, path = "/crews/{crew}", tag = "crews", params(CrewPath), request_body = PatchCrew, responses(
    (status = 200, description = "The crew as changed", body = Crew),
    (status = 409, description = "Its agents are running, so its image cannot change yet"),
))]
pub async fn patch(
    State(app): State<AppState>,
    Path(CrewPath { crew: key }): Path<CrewPath>,
    JsonBody(b): JsonBody<PatchCrew>,
) -> ApiResult<Json<Crew>> {
    let patch = CrewPatch { name: b.name, max_concurrent_agents: b.max_concurrent_agents, image: b.image };
    let (crew, new_image) = app.store.write(move |tx| roster::update_crew(tx, &key, patch)).await?;
    if new_image {
        app.crew_containers.image_changed(&crew).await;
    }
    Ok(Json(crew.to_api()))
}

/// Delete a crew (softly): it stops taking work, its waiting
/// assignments are cancelled, running ones finish, history stays.
#[utoipa::path(delete, path = "/crews/{crew}", tag = "crews", params(CrewPath), responses(
    (status = 200, description = "The crew, deleted", body = Crew),
))]
pub async fn delete(
    State(app): State<AppState>,
    Path(CrewPath { crew: key }): Path<CrewPath>,
) -> ApiResult<Json<Crew>> {
    let crew = app.store.write(move |tx| roster::delete_crew(tx, &key)).await?;
    app.crew_containers.crew_deleted(&crew).await;
    Ok(Json(crew.to_api()))
}

//! /api/v1/crews/{crew}/agents: a crew's agents.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::crews::{CrewPath, ListQuery};
use super::error::ApiResult;
use super::extract::{JsonBody, Listing, PageParams, Path, Query, Validate};
use super::settings::Limits;
use super::state::AppState;
use crate::domain::ids::Kind;
use crate::domain::kinds::Role;
use crate::domain::named::Named as _;
use crate::domain::types::Agent;
use crate::domain::{DomainError, Result, validate};
use crate::store::agents::{self, AgentPatch, NewAgent};
use crate::store::crews;
use crate::store::roster;
use crewship_wire::requests::{CreateAgent, PatchAgent};

/// An agent named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    /// The crew's id or slug.
    crew: String,
    /// The agent's id or slug, within the crew.
    agent: String,
}

fn role(role: Option<&str>) -> Result<Option<Role>> {
    Ok(role.map(|r| Role::parse_field("role", r)).transpose()?)
}

impl Validate for CreateAgent {
    fn validate(&self, _: &Limits) -> Result<()> {
        validate::slug(&self.slug, Kind::Agent)?;
        validate::name(&self.name)?;
        role(self.role.as_deref())?;
        check_command(&self.command)?;
        check_env(self.env.as_ref().unwrap_or(&BTreeMap::new()))?;
        validate::at_least_one("timeout_seconds", self.timeout_seconds.unwrap_or(1800))
    }
}

fn check_command(command: &[String]) -> Result<()> {
    match command.first() {
        Some(program) if !program.is_empty() => {}
        _ => {
            return Err(DomainError::invalid("command must be a non-empty argv array"));
        }
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err(DomainError::invalid("command arguments must not contain NUL"));
    }
    Ok(())
}

fn check_env(env: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(DomainError::invalid(format!("env name {k:?} is not a valid variable name")));
        }
        if k.starts_with("CREWSHIP_") {
            return Err(DomainError::invalid(format!("env name {k:?} is reserved for crewshipd")));
        }
    }
    Ok(())
}

/// Add an agent to a live crew.
#[utoipa::path(post, path = "/crews/{crew}/agents", tag = "agents", params(CrewPath), request_body = CreateAgent, responses(
    (status = 201, description = "The new agent", body = Agent),
    (status = 409, description = "The crew has a live agent with this slug, or already a lead"),
))]
pub async fn create_agent(
    State(app): State<AppState>,
    Path(CrewPath { crew: crew_key }): Path<CrewPath>,
    JsonBody(b): JsonBody<CreateAgent>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let role = role(b.role.as_deref())?.unwrap_or(Role::Agent);
    let (env, timeout_seconds) = (b.env.unwrap_or_default(), b.timeout_seconds.unwrap_or(1800));
    let new = NewAgent { slug: b.slug, name: b.name, role, command: b.command, env, timeout_seconds };
    let agent = app.store.write(move |tx| roster::add_agent(tx, &crew_key, new)).await?;
    Ok((StatusCode::CREATED, Json(agent.to_api())))
}

/// List a crew's agents, oldest first.
#[utoipa::path(get, path = "/crews/{crew}/agents", tag = "agents", params(CrewPath, PageParams, ListQuery), responses(
    (status = 200, description = "A page of agents", body = Listing<Agent>),
))]
pub async fn list_agents(
    State(app): State<AppState>,
    Path(CrewPath { crew: crew_key }): Path<CrewPath>,
    Query(page): Query<PageParams>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Listing<Agent>>> {
    let page = page.request()?;
    let deleted = q.deleted()?;
    Ok(Json(app.store.read(move |c| agents::list(c, &crews::resolve(c, &crew_key)?, deleted, page)).await?.into()))
}

/// Get an agent, deleted ones included.
#[utoipa::path(get, path = "/crews/{crew}/agents/{agent}", tag = "agents", params(AgentPath), responses(
    (status = 200, description = "The agent", body = Agent),
))]
pub async fn get_agent(
    State(app): State<AppState>,
    Path(AgentPath { crew: crew_key, agent: agent_key }): Path<AgentPath>,
) -> ApiResult<Json<Agent>> {
    let agent = app.store.read(move |c| agents::resolve(c, &crews::resolve(c, &crew_key)?, &agent_key)).await?;
    Ok(Json(agent.to_api()))
}

impl Validate for PatchAgent {
    fn validate(&self, _: &Limits) -> Result<()> {
        if let Some(n) = &self.name {
            validate::name(n)?;
        }
        role(self.role.as_deref())?;
        if let Some(c) = &self.command {
            check_command(c)?;
        }
        if let Some(e) = &self.env {
            check_env(e)?;
        }
        if let Some(t) = self.timeout_seconds {
            validate::at_least_one("timeout_seconds", t)?;
        }
        Ok(())
    }
}

/// Change a live agent; runs started later use the change.
#[utoipa::path(patch, path = "/crews/{crew}/agents/{agent}", tag = "agents", params(AgentPath), request_body = PatchAgent, responses(
    (status = 200, description = "The agent as changed", body = Agent),
    (status = 409, description = "The crew already has a lead"),
))]
pub async fn patch_agent(
    State(app): State<AppState>,
    Path(AgentPath { crew: crew_key, agent: agent_key }): Path<AgentPath>,
    JsonBody(b): JsonBody<PatchAgent>,
) -> ApiResult<Json<Agent>> {
    let role = role(b.role.as_deref())?;
    let patch = AgentPatch { name: b.name, role, command: b.command, env: b.env, timeout_seconds: b.timeout_seconds };
    let agent = app.store.write(move |tx| roster::update_agent(tx, &crew_key, &agent_key, patch)).await?;
    Ok(Json(agent.to_api()))
}

/// Delete an agent (softly): its waiting assignments are cancelled.
#[utoipa::path(delete, path = "/crews/{crew}/agents/{agent}", tag = "agents", params(AgentPath), responses(
    (status = 200, description = "The agent, deleted", body = Agent),
))]
pub async fn delete_agent(
    State(app): State<AppState>,
    Path(AgentPath { crew: crew_key, agent: agent_key }): Path<AgentPath>,
) -> ApiResult<Json<Agent>> {
    let agent = app.store.write(move |tx| roster::delete_agent(tx, &crew_key, &agent_key)).await?;
    Ok(Json(agent.to_api()))
}

//! Agents of a crew.

use std::collections::BTreeMap;

use super::crews::CrewRow;
use super::page::{self, Page, PageRequest};
use super::sql::{Db, Row, args};
use super::tx::Tx;
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Role;
use crate::domain::types::Agent;
use crate::domain::{DomainError, Result, time};

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: i64,
    pub crew_id: i64,
    pub crew_slug: String,
    pub slug: String,
    pub name: String,
    pub role: Role,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

const SELECT: &str = "SELECT a.id, a.crew_id, c.slug, a.slug, a.name, a.role, a.command, a.env,
        a.timeout_seconds, a.created_at, a.updated_at, a.deleted_at
     FROM agents a JOIN crews c ON c.id = a.crew_id";

fn from_row(r: &Row<'_>) -> Result<AgentRow> {
    Ok(AgentRow {
        id: r.get(0)?,
        crew_id: r.get(1)?,
        crew_slug: r.get(2)?,
        slug: r.get(3)?,
        name: r.get(4)?,
        role: r.named(5)?,
        command: r.json(6)?,
        env: r.json(7)?,
        timeout_seconds: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        deleted_at: r.get(11)?,
    })
}

impl AgentRow {
    pub fn public_id(&self) -> String {
        ids::format(Kind::Agent, self.id)
    }

    pub fn to_api(&self) -> Agent {
        Agent {
            id: self.public_id(),
            crew: self.crew_slug.clone(),
            crew_id: ids::format(Kind::Crew, self.crew_id),
            slug: self.slug.clone(),
            name: self.name.clone(),
            role: self.role,
            command: self.command.clone(),
            env: self.env.clone(),
            timeout_seconds: self.timeout_seconds,
            created_at: time::rfc3339(self.created_at),
            updated_at: time::rfc3339(self.updated_at),
            deleted_at: time::rfc3339_opt(self.deleted_at),
        }
    }

    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }
}

pub fn by_id(db: &Db<'_>, id: i64) -> Result<Option<AgentRow>> {
    db.query_opt(&format!("{SELECT} WHERE a.id = ?1"), args![id], from_row)
}

/// An agent of `crew`, named by id (live or deleted) or live slug.
pub fn resolve(db: &Db<'_>, crew: &CrewRow, key: &str) -> Result<AgentRow> {
    let found = match ids::parse(Kind::Agent, key) {
        Some(id) => by_id(db, id)?.filter(|a| a.crew_id == crew.id),
        None => db.query_opt(
            &format!("{SELECT} WHERE a.crew_id = ?1 AND a.slug = ?2 AND a.deleted_at IS NULL"),
            args![crew.id, key],
            from_row,
        )?,
    };
    found.ok_or_else(|| DomainError::not_found("agent", key))
}

/// An agent named in a request body: it must exist and be live (422 if not,
/// as the body, not the path, is wrong).
pub fn resolve_for_work(db: &Db<'_>, crew: &CrewRow, key: &str) -> Result<AgentRow> {
    match resolve(db, crew, key) {
        Ok(a) if a.is_live() => Ok(a),
        Ok(_) | Err(DomainError::NotFound { .. }) => {
            Err(DomainError::invalid(format!("unknown agent {key:?} in crew {:?}", crew.slug)))
        }
        Err(e) => Err(e),
    }
}

/// An agent named by id alone, or by slug within an optional crew.
pub fn resolve_loose(db: &Db<'_>, crew: Option<&CrewRow>, key: &str) -> Result<AgentRow> {
    match (ids::parse(Kind::Agent, key), crew) {
        (Some(id), _) => by_id(db, id)?
            .filter(|a| crew.is_none_or(|c| c.id == a.crew_id))
            .ok_or_else(|| DomainError::invalid(format!("unknown agent {key:?}"))),
        (None, Some(crew)) => resolve_for_work(db, crew, key),
        (None, None) => {
            Err(DomainError::invalid(format!("agent {key:?} is a slug: name its crew too, or use the agent's id")))
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub slug: String,
    pub name: String,
    pub role: Role,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: i64,
}

fn live_lead(db: &Db<'_>, crew_id: i64) -> Result<Option<String>> {
    db.query_opt(
        "SELECT slug FROM agents WHERE crew_id = ?1 AND role = 'lead' AND deleted_at IS NULL",
        args![crew_id],
        |r| r.get(0),
    )
}

pub fn insert(tx: &mut Tx<'_>, crew: &CrewRow, new: NewAgent) -> Result<AgentRow> {
    let taken: bool = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM agents WHERE crew_id = ?1 AND slug = ?2 AND deleted_at IS NULL)",
        args![crew.id, new.slug],
        |r| r.get(0),
    )?;
    if taken {
        return Err(DomainError::conflict(format!(
            "crew {:?} already has an agent with slug {:?}",
            crew.slug, new.slug
        )));
    }
    if new.role == Role::Lead
        && let Some(lead) = live_lead(tx, crew.id)?
    {
        return Err(DomainError::conflict(format!("crew {:?} already has a lead: {lead:?}", crew.slug)));
    }
    let id = tx.insert(
        "INSERT INTO agents (crew_id, slug, name, role, command, env, timeout_seconds, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        "id",
        args![
            crew.id,
            new.slug,
            new.name,
            new.role.as_str(),
            serde_json::to_string(&new.command)?,
            serde_json::to_string(&new.env)?,
            new.timeout_seconds,
            tx.now
        ],
    )?;
    by_id(tx, id)?.ok_or_else(|| DomainError::vanished("agent"))
}

#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub timeout_seconds: Option<i64>,
}

pub fn update(tx: &mut Tx<'_>, agent: AgentRow, patch: AgentPatch) -> Result<AgentRow> {
    if !agent.is_live() {
        return Err(DomainError::not_found("agent", agent.public_id()));
    }
    let role = patch.role.unwrap_or(agent.role);
    if role == Role::Lead
        && agent.role != Role::Lead
        && let Some(lead) = live_lead(tx, agent.crew_id)?
    {
        return Err(DomainError::conflict(format!("crew {:?} already has a lead: {lead:?}", agent.crew_slug)));
    }
    tx.execute(
        "UPDATE agents SET name = ?2, role = ?3, command = ?4, env = ?5, timeout_seconds = ?6, updated_at = ?7
         WHERE id = ?1",
        args![
            agent.id,
            patch.name.unwrap_or(agent.name),
            role.as_str(),
            serde_json::to_string(&patch.command.unwrap_or(agent.command))?,
            serde_json::to_string(&patch.env.unwrap_or(agent.env))?,
            patch.timeout_seconds.unwrap_or(agent.timeout_seconds),
            tx.now
        ],
    )?;
    by_id(tx, agent.id)?.ok_or_else(|| DomainError::vanished("agent"))
}

pub fn mark_deleted(tx: &mut Tx<'_>, agent_id: i64) -> Result<()> {
    tx.execute(
        "UPDATE agents SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
        args![agent_id, tx.now],
    )?;
    Ok(())
}

pub fn list(db: &Db<'_>, crew: &CrewRow, include_deleted: bool, page: PageRequest) -> Result<Page<Agent>> {
    let rows = db.query(
        &format!("{SELECT} WHERE a.crew_id = ?1 AND a.id > ?2 AND (?3 OR a.deleted_at IS NULL) ORDER BY a.id LIMIT ?4"),
        args![crew.id, page.after.unwrap_or(0), include_deleted, page.limit + 1],
        |r| from_row(r).map(|a| (a.id, a.to_api())),
    )?;
    Ok(page::build(rows, page.limit))
}

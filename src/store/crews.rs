//! Crews.

use super::page::{self, Page, PageRequest};
use super::sql::{Db, Row, args};
use super::tx::Tx;
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Runtime;
use crate::domain::types::Crew;
use crate::domain::{DomainError, Result, time};

#[derive(Debug, Clone)]
pub struct CrewRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub max_concurrent_agents: i64,
    pub runtime: Runtime,
    pub image: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

const COLUMNS: &str = "id, slug, name, max_concurrent_agents, runtime, image, created_at, updated_at, deleted_at";

fn from_row(r: &Row<'_>) -> Result<CrewRow> {
    Ok(CrewRow {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        max_concurrent_agents: r.get(3)?,
        runtime: r.named(4)?,
        image: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        deleted_at: r.get(8)?,
    })
}

impl CrewRow {
    pub fn public_id(&self) -> String {
        ids::format(Kind::Crew, self.id)
    }

    pub fn to_api(&self) -> Crew {
        Crew {
            id: self.public_id(),
            slug: self.slug.clone(),
            name: self.name.clone(),
            max_concurrent_agents: self.max_concurrent_agents,
            runtime: self.runtime,
            image: self.image.clone(),
            created_at: time::rfc3339(self.created_at),
            updated_at: time::rfc3339(self.updated_at),
            deleted_at: time::rfc3339_opt(self.deleted_at),
        }
    }

    pub fn is_live(&self) -> bool {
        self.deleted_at.is_none()
    }

    /// Its agents run in the crew's container (runtime `docker`), not as
    /// local processes.
    pub fn runs_in_container(&self) -> bool {
        self.runtime == Runtime::Docker
    }
}

#[derive(Debug, Clone)]
pub struct NewCrew {
    pub slug: String,
    pub name: String,
    pub max_concurrent_agents: i64,
    pub runtime: Runtime,
    pub image: Option<String>,
}

pub fn by_id(db: &Db<'_>, id: i64) -> Result<Option<CrewRow>> {
    db.query_opt(&format!("SELECT {COLUMNS} FROM crews WHERE id = ?1"), args![id], from_row)
}

/// Live crews whose agents run in containers, created before `before`.
pub fn live_in_containers(db: &Db<'_>, before: i64) -> Result<Vec<CrewRow>> {
    db.query(
        &format!(
            "SELECT {COLUMNS} FROM crews WHERE deleted_at IS NULL AND runtime = ?1 AND created_at < ?2 ORDER BY id"
        ),
        args![Runtime::Docker.as_str(), before],
        from_row,
    )
}

/// A crew named by id (live or deleted) or by the slug of a live crew.
pub fn resolve(db: &Db<'_>, key: &str) -> Result<CrewRow> {
    let found = match ids::parse(Kind::Crew, key) {
        Some(id) => by_id(db, id)?,
        None => db.query_opt(
            &format!("SELECT {COLUMNS} FROM crews WHERE slug = ?1 AND deleted_at IS NULL"),
            args![key],
            from_row,
        )?,
    };
    found.ok_or_else(|| DomainError::not_found("crew", key))
}

/// Like `resolve`, for filters over history: a slug may also name the most
/// recently deleted crew that had it.
pub fn resolve_any(db: &Db<'_>, key: &str) -> Result<CrewRow> {
    match resolve(db, key) {
        Err(DomainError::NotFound { .. }) if ids::parse(Kind::Crew, key).is_none() => db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM crews WHERE slug = ?1 ORDER BY id DESC LIMIT 1"),
                args![key],
                from_row,
            )?
            .ok_or_else(|| DomainError::not_found("crew", key)),
        other => other,
    }
}

/// A crew that can take work.
pub fn resolve_live(db: &Db<'_>, key: &str) -> Result<CrewRow> {
    let crew = resolve(db, key)?;
    if !crew.is_live() {
        return Err(DomainError::not_found("crew", key));
    }
    Ok(crew)
}

fn slug_taken(db: &Db<'_>, slug: &str) -> Result<bool> {
    db.query_one("SELECT EXISTS (SELECT 1 FROM crews WHERE slug = ?1 AND deleted_at IS NULL)", args![slug], |r| {
        r.get(0)
    })
}

pub fn insert(tx: &mut Tx<'_>, new: NewCrew) -> Result<CrewRow> {
    if slug_taken(tx, &new.slug)? {
        return Err(DomainError::conflict(format!("a crew with slug {:?} already exists", new.slug)));
    }
    let id = tx.insert(
        "INSERT INTO crews (slug, name, max_concurrent_agents, runtime, image, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        "id",
        args![new.slug, new.name, new.max_concurrent_agents, new.runtime.as_str(), new.image, tx.now],
    )?;
    tx.execute("INSERT INTO crew_counts (crew_id) VALUES (?1)", args![id])?;
    by_id(tx, id)?.ok_or_else(|| DomainError::vanished("crew"))
}

#[derive(Debug, Clone, Default)]
pub struct CrewPatch {
    pub name: Option<String>,
    pub max_concurrent_agents: Option<i64>,
    pub image: Option<Option<String>>,
}

pub fn update(tx: &mut Tx<'_>, crew: CrewRow, patch: CrewPatch) -> Result<CrewRow> {
    tx.execute(
        "UPDATE crews SET name = ?2, max_concurrent_agents = ?3, image = ?4, updated_at = ?5 WHERE id = ?1",
        args![
            crew.id,
            patch.name.unwrap_or(crew.name),
            patch.max_concurrent_agents.unwrap_or(crew.max_concurrent_agents),
            patch.image.unwrap_or(crew.image),
            tx.now
        ],
    )?;
    by_id(tx, crew.id)?.ok_or_else(|| DomainError::vanished("crew"))
}

/// Soft delete: the crew stops taking work; the caller cancels its queue.
pub fn mark_deleted(tx: &mut Tx<'_>, crew_id: i64) -> Result<()> {
    tx.execute(
        "UPDATE crews SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
        args![crew_id, tx.now],
    )?;
    Ok(())
}

/// Live crews whose agents run in a container.
pub fn count_in_containers(db: &Db<'_>) -> Result<i64> {
    db.query_one("SELECT COUNT(*) FROM crews WHERE runtime = 'docker' AND deleted_at IS NULL", args![], |r| r.get(0))
}

pub fn list(db: &Db<'_>, include_deleted: bool, page: PageRequest) -> Result<Page<Crew>> {
    let rows = db.query(
        &format!(
            "SELECT {COLUMNS} FROM crews
             WHERE id > ?1 AND (?2 OR deleted_at IS NULL)
             ORDER BY id LIMIT ?3"
        ),
        args![page.after.unwrap_or(0), include_deleted, page.limit + 1],
        |r| from_row(r).map(|c| (c.id, c.to_api())),
    )?;
    Ok(page::build(rows, page.limit))
}

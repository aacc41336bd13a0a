//! Crews and agents a caller names in what it sends (not in the path): an
//! unknown name there is a 422 (the body is wrong), not a 404 (the path is
//! fine).

use super::journal::Named;
use super::sql::Db;
use super::{agents, crews};
use crate::domain::{DomainError, Result};

pub fn crew(db: &Db<'_>, key: &str) -> Result<crews::CrewRow> {
    match crews::resolve_live(db, key) {
        Err(DomainError::NotFound { .. }) => Err(DomainError::invalid(format!("unknown crew {key:?}"))),
        other => other,
    }
}

/// A crew in a filter: it may be deleted, since history is being read.
pub fn crew_in_history(db: &Db<'_>, key: &str) -> Result<i64> {
    match crews::resolve_any(db, key) {
        Err(DomainError::NotFound { .. }) => Err(DomainError::invalid(format!("unknown crew {key:?}"))),
        other => other.map(|c| c.id),
    }
}

/// The optional crew and agent of a run or journal entry; an agent given
/// alone implies its crew.
pub fn scope(db: &Db<'_>, crew_key: Option<&str>, agent_key: Option<&str>) -> Result<(Option<Named>, Option<Named>)> {
    let crew = crew_key.map(|k| crew(db, k)).transpose()?;
    let agent = agent_key.map(|k| agents::resolve_loose(db, crew.as_ref(), k)).transpose()?;
    let crew = match (crew, &agent) {
        (Some(c), _) => Some(Named { id: c.id, slug: c.slug }),
        (None, Some(a)) => Some(Named { id: a.crew_id, slug: a.crew_slug.clone() }),
        (None, None) => None,
    };
    Ok((crew, agent.map(|a| Named { id: a.id, slug: a.slug })))
}

//! Crews and their agents as callers change them: each change is one
//! operation that writes its rows, journals it and tells `crew:<slug>`
//! subscribers, all in the caller's transaction.

use serde::Serialize;

use super::agents::{self, AgentPatch, AgentRow, NewAgent};
use super::assignments::{self, Owner};
use super::counters;
use super::crews::{self, CrewPatch, CrewRow, NewCrew};
use super::journal::{self, Named, NewEntry};
use super::tx::Tx;
use crate::domain::event::{Change, Event, EventKind};
use crate::domain::{DomainError, Result};

/// Journals a crew or agent change and tells `crew:<slug>` subscribers.
fn changed(tx: &mut Tx<'_>, crew: &CrewRow, kind: EventKind, data: &impl Serialize) -> Result<()> {
    journal::append(
        tx,
        NewEntry {
            crew: Some(Named { id: crew.id, slug: crew.slug.clone() }),
            ..NewEntry::of(kind, format!("{kind}: {}", crew.slug))
        },
    )?;
    tx.emit(Event::new(kind, Some(crew.slug.clone()), data));
    Ok(())
}

/// A crew whose agents run in containers needs an image to run them in.
pub fn require_image(image: Option<&str>) -> Result<()> {
    match image {
        Some(i) if !i.trim().is_empty() => Ok(()),
        _ => Err(DomainError::invalid("a crew with runtime docker needs an image")),
    }
}

pub fn create_crew(tx: &mut Tx<'_>, new: NewCrew) -> Result<CrewRow> {
    let crew = crews::insert(tx, new)?;
    changed(tx, &crew, EventKind::Crew(Change::Created), &crew.to_api())?;
    Ok(crew)
}

/// A live crew as changed, and whether its container's image changed (the
/// caller replaces the container). The image cannot change while its
/// agents run: replacing the container would kill them.
pub fn update_crew(tx: &mut Tx<'_>, key: &str, patch: CrewPatch) -> Result<(CrewRow, bool)> {
    let before = crews::resolve_live(tx, key)?;
    let old_image = before.image.clone();
    let crew = crews::update(tx, before, patch)?;
    let new_image = crew.runs_in_container() && crew.image != old_image;
    if new_image {
        require_image(crew.image.as_deref())?;
        let running = counters::crew_running(tx, crew.id)?;
        if running > 0 {
            return Err(DomainError::conflict(format!(
                "crew {:?} has {running} running agent(s); change its image once they are done",
                crew.slug
            )));
        }
    }
    changed(tx, &crew, EventKind::Crew(Change::Updated), &crew.to_api())?;
    Ok((crew, new_image))
}

/// Deletes a live crew (softly): it stops taking work and its waiting
/// assignments are cancelled; running ones finish.
pub fn delete_crew(tx: &mut Tx<'_>, key: &str) -> Result<CrewRow> {
    let crew = crews::resolve_live(tx, key)?;
    crews::mark_deleted(tx, crew.id)?;
    assignments::cancel_waiting(tx, Owner::Crew(crew.id), "crew deleted")?;
    let crew = crews::by_id(tx, crew.id)?.ok_or_else(|| DomainError::vanished("crew"))?;
    changed(tx, &crew, EventKind::Crew(Change::Deleted), &crew.to_api())?;
    Ok(crew)
}

/// Adds an agent to the live crew `crew_key` names.
pub fn add_agent(tx: &mut Tx<'_>, crew_key: &str, new: NewAgent) -> Result<AgentRow> {
    let crew = crews::resolve_live(tx, crew_key)?;
    let agent = agents::insert(tx, &crew, new)?;
    changed(tx, &crew, EventKind::Agent(Change::Created), &agent.to_api())?;
    Ok(agent)
}

pub fn update_agent(tx: &mut Tx<'_>, crew_key: &str, agent_key: &str, patch: AgentPatch) -> Result<AgentRow> {
    let crew = crews::resolve_live(tx, crew_key)?;
    let agent = agents::update(tx, agents::resolve(tx, &crew, agent_key)?, patch)?;
    changed(tx, &crew, EventKind::Agent(Change::Updated), &agent.to_api())?;
    Ok(agent)
}

/// Deletes a live agent (softly): its waiting assignments are cancelled.
pub fn delete_agent(tx: &mut Tx<'_>, crew_key: &str, agent_key: &str) -> Result<AgentRow> {
    let crew = crews::resolve_live(tx, crew_key)?;
    let agent = agents::resolve(tx, &crew, agent_key)?;
    if !agent.is_live() {
        return Err(DomainError::not_found("agent", agent_key));
    }
    agents::mark_deleted(tx, agent.id)?;
    assignments::cancel_waiting(tx, Owner::Agent(agent.id), "agent deleted")?;
    let agent = agents::by_id(tx, agent.id)?.ok_or_else(|| DomainError::vanished("agent"))?;
    changed(tx, &crew, EventKind::Agent(Change::Deleted), &agent.to_api())?;
    Ok(agent)
}

//! Crew containers over a crew's life: started when a docker crew is
//! created (or on request), stopped on request, removed with the crew,
//! found again by label when the daemon starts. Each change is journaled
//! and keeps the stats collector's registry in step.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use super::docker::{Engine, Found};
use super::registry::Registry;
use crate::domain::kinds::Severity;
use crate::domain::{DomainError, Result};
use crate::store::Store;
use crate::store::crews::{self, CrewRow};
use crate::store::journal::{self, Named, NewEntry};
pub use crewship_wire::answers::ContainerState;

#[derive(Clone)]
pub struct CrewContainers {
    engine: Engine,
    registry: Arc<Registry>,
    store: Store,
    /// Crews created before this (epoch ms) are found again by `adopt`;
    /// later ones get their container from `crew_created`, never from both.
    adopt_before: i64,
}

fn require_docker(crew: &CrewRow) -> Result<()> {
    if crew.runs_in_container() {
        Ok(())
    } else {
        Err(DomainError::conflict(format!("crew {} has runtime {}: it has no container", crew.slug, crew.runtime)))
    }
}

impl CrewContainers {
    pub fn new(engine: Engine, registry: Arc<Registry>, store: Store) -> CrewContainers {
        CrewContainers { engine, registry, store, adopt_before: crate::domain::time::now_ms() }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn state(&self, crew: &CrewRow, container_id: String, running: bool) -> ContainerState {
        ContainerState { container_id, crew: crew.slug.clone(), name: self.engine.container_name(crew), running }
    }

    /// Brings up the crew's container on this node unless it runs here
    /// already (tracked): before a run of the crew's work, on whichever
    /// node claimed it.
    pub async fn ensure(&self, crew: &CrewRow) -> Result<()> {
        if self.registry.tracks(&crew.slug) {
            return Ok(());
        }
        let gate = self.engine.gate(crew.id);
        let _alone = gate.write().await;
        if !self.registry.tracks(&crew.slug) {
            self.start(crew).await?;
        }
        Ok(())
    }

    async fn find(&self, crew: &CrewRow) -> Result<Option<Found>> {
        Ok(self.engine.list(Some(&crew.public_id())).await?.into_iter().next())
    }

    /// Starts the crew's container, creating it if there is none, and
    /// tracks it. A running one is only tracked.
    pub async fn start(&self, crew: &CrewRow) -> Result<ContainerState> {
        require_docker(crew)?;
        let found = self.find(crew).await?;
        self.bring_up(crew, found).await
    }

    async fn bring_up(&self, crew: &CrewRow, found: Option<Found>) -> Result<ContainerState> {
        let (id, running) = match found {
            Some(f) => (f.id, f.running),
            None => (self.engine.create(crew).await?, false),
        };
        if !running {
            self.engine.start(&id).await?;
            let payload = json!({ "container_id": id, "name": self.engine.container_name(crew), "image": crew.image });
            self.journal(
                crew,
                "container.started",
                Severity::Info,
                format!("container of crew {} started", crew.slug),
                payload,
            )
            .await;
        }
        self.registry.track(&id, &crew.slug);
        Ok(self.state(crew, id, true))
    }

    /// Stops the crew's container and stops tracking it: a container
    /// stopped on purpose is not one that stopped answering.
    pub async fn stop(&self, crew: &CrewRow) -> Result<ContainerState> {
        require_docker(crew)?;
        let found = self
            .find(crew)
            .await?
            .ok_or_else(|| DomainError::not_found("container", self.engine.container_name(crew)))?;
        if found.running {
            self.engine.stop(&found.id).await?;
            self.stopped(crew, &found.id, false).await;
        }
        self.registry.untrack(&found.id);
        Ok(self.state(crew, found.id, false))
    }

    async fn remove(&self, crew: &CrewRow) -> Result<()> {
        if let Some(found) = self.find(crew).await? {
            if found.running {
                self.engine.stop(&found.id).await?;
            }
            self.engine.remove(&found.id).await?;
            self.registry.untrack(&found.id);
            self.stopped(crew, &found.id, true).await;
        }
        Ok(())
    }

    /// After a crew is committed. A container that cannot start is logged
    /// and journaled (`container.error`); the crew exists all the same.
    pub async fn crew_created(&self, crew: &CrewRow) {
        if crew.runs_in_container()
            && let Err(e) = self.start(crew).await
        {
            self.failed(crew, "start", &e).await;
        }
    }

    /// After a docker crew's image changed: its container is replaced by
    /// one from the new image, once runs still in the old one are done
    /// (none, unless one started just now). Errors are journaled.
    pub async fn image_changed(&self, crew: &CrewRow) {
        let gate = self.engine.gate(crew.id);
        let _alone = gate.write().await;
        let replaced = async {
            self.remove(crew).await?;
            self.start(crew).await
        };
        if let Err(e) = replaced.await {
            self.failed(crew, "replace", &e).await;
        }
    }

    /// After a crew is deleted: its container goes too.
    pub async fn crew_deleted(&self, crew: &CrewRow) {
        if crew.runs_in_container()
            && let Err(e) = self.remove(crew).await
        {
            self.failed(crew, "remove", &e).await;
        }
    }

    /// At start-up: finds this node's containers of live docker crews
    /// again by their labels, starts the stopped ones and tracks them all.
    /// (A crew whose work this node runs and that has none here gets one
    /// before the run.) Errors about one crew are journaled; an engine that
    /// cannot list containers is an error, worth trying again later.
    pub async fn adopt(&self) -> Result<usize> {
        let before = self.adopt_before;
        let crews = self.store.read(move |c| crews::live_in_containers(c, before)).await?;
        if crews.is_empty() {
            return Ok(0);
        }
        let mut found: HashMap<String, Found> =
            self.engine.list(None).await?.into_iter().map(|f| (f.crew_id.clone(), f)).collect();
        let mut adopted = 0;
        for crew in crews {
            let Some(f) = found.remove(&crew.public_id()) else { continue };
            match self.bring_up(&crew, Some(f)).await {
                Ok(_) => adopted += 1,
                Err(e) => self.failed(&crew, "start", &e).await,
            }
        }
        Ok(adopted)
    }

    async fn stopped(&self, crew: &CrewRow, container_id: &str, removed: bool) {
        let payload =
            json!({ "container_id": container_id, "name": self.engine.container_name(crew), "removed": removed });
        let what = if removed { "stopped and removed" } else { "stopped" };
        self.journal(
            crew,
            "container.stopped",
            Severity::Info,
            format!("container of crew {} {what}", crew.slug),
            payload,
        )
        .await;
    }

    async fn failed(&self, crew: &CrewRow, action: &str, e: &DomainError) {
        tracing::warn!(crew = crew.slug, action, error = %e, "crew container");
        let payload = json!({ "name": self.engine.container_name(crew), "action": action, "error": e.to_string() });
        let summary = format!("cannot {action} the container of crew {}: {e}", crew.slug);
        self.journal(crew, "container.error", Severity::Error, summary, payload).await;
    }

    async fn journal(
        &self,
        crew: &CrewRow,
        entry_type: &str,
        severity: Severity,
        summary: String,
        payload: serde_json::Value,
    ) {
        let entry = NewEntry {
            severity,
            crew: Some(Named { id: crew.id, slug: crew.slug.clone() }),
            payload,
            ..NewEntry::info(entry_type, summary)
        };
        if let Err(e) = self.store.write(move |tx| journal::append(tx, entry).map(drop)).await {
            tracing::error!(crew = crew.slug, entry_type, error = %e, "could not journal a container change");
        }
    }
}

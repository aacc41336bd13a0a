//! The Docker Engine client: one container per docker crew, found again by
//! its labels, plus one-shot stats. Every engine error becomes a
//! `DomainError` here, so callers never see bollard's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerStatsResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::sync::{Mutex, RwLock};

use crate::domain::{DomainError, Result};
use crate::store::crews::CrewRow;
use crate::sync::lock;

const LABEL_CREW: &str = "crewship.crew";
const LABEL_CREW_ID: &str = "crewship.crew_id";
/// The node whose container it is: one container per crew per node that
/// runs its work, so nodes sharing an engine never share a container.
const LABEL_NODE: &str = "crewship.node";

/// Seconds an engine request may take to answer (its headers; streams such
/// as an exec's output may last longer).
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// How long start-up waits for the engine before going on without it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds `docker stop` waits for the container to exit before killing it.
const STOP_TIMEOUT_SECS: i32 = 10;

/// What `POST /images/create` wants for `image`: the name, and the tag to
/// pull (`latest` when none is given; the engine would pull every tag). A
/// digest reference goes whole.
fn pull_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let after_registry = image.rfind('/').map_or(0, |i| i + 1);
    match image[after_registry..].rfind(':') {
        Some(i) => (&image[..after_registry + i], Some(&image[after_registry + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// A crew container as the engine reports it.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    /// The `crewship.crew_id` label.
    pub crew_id: String,
    pub running: bool,
}

/// A client for the engine at `DOCKER_HOST`. Cheap to clone. It connects
/// lazily and retries on later calls, so an engine that comes up after the
/// daemon is still used.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    /// This node's id: in every container's name and labels.
    node: String,
    client: Mutex<Option<Docker>>,
    gates: std::sync::Mutex<HashMap<i64, Arc<RwLock<()>>>>,
}

impl Engine {
    /// Connects to the engine at `host` (`unix://…`). An unreachable engine
    /// is a warning, not an error: crews with runtime local keep working.
    pub async fn connect(host: &str, node: &str) -> Engine {
        let inner = Inner {
            host: host.to_string(),
            node: node.to_string(),
            client: Mutex::new(None),
            gates: Default::default(),
        };
        let engine = Engine { inner: Arc::new(inner) };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, engine.client())
            .await
            .unwrap_or_else(|_| Err(engine.unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))));
        match connected {
            Ok(docker) => {
                tracing::info!(docker_host = host, api_version = %docker.client_version(), "docker engine connected");
            }
            Err(e) => tracing::warn!(
                docker_host = host,
                error = %e,
                "docker engine unreachable: crews with runtime docker cannot run until it is"
            ),
        }
        engine
    }

    /// The gate of a crew's container: runs in it hold it shared, and
    /// replacing the container holds it alone, so no run starts in a
    /// container about to go.
    pub fn gate(&self, crew_id: i64) -> Arc<RwLock<()>> {
        lock(&self.inner.gates).entry(crew_id).or_default().clone()
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> DomainError {
        DomainError::Unavailable(format!("docker engine at {} is unreachable: {reason}", self.inner.host))
    }

    /// The connected client, connecting (and negotiating the API version)
    /// if no earlier call did.
    pub async fn client(&self) -> Result<Docker> {
        let mut client = self.inner.client.lock().await;
        if let Some(docker) = client.as_ref() {
            return Ok(docker.clone());
        }
        let Some(path) = self.inner.host.strip_prefix("unix://") else {
            return Err(self.unreachable("only unix:// sockets are supported in DOCKER_HOST"));
        };
        let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| self.unreachable(e))?;
        // Never ask for an API version newer than the engine's; this is
        // also the first call that proves the engine answers.
        let docker = docker.negotiate_version().await.map_err(|e| self.unreachable(e))?;
        *client = Some(docker.clone());
        Ok(docker)
    }

    /// Whether the engine answers now (`/_ping`).
    pub async fn ping(&self) -> Result<()> {
        let docker = self.client().await?;
        docker.ping().await.map(drop).map_err(|e| self.unreachable(e))
    }

    /// Maps an engine error about `what` (a container or exec) into the
    /// domain's error.
    pub fn error(&self, what: &'static str, key: &str, e: BollardError) -> DomainError {
        match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => DomainError::not_found(what, key),
            BollardError::DockerResponseServerError { status_code: 409, message } => DomainError::Conflict(message),
            BollardError::DockerResponseServerError { status_code, message } if status_code >= 500 => {
                DomainError::Unavailable(format!("docker engine: {message}"))
            }
            BollardError::DockerResponseServerError { message, .. } => {
                DomainError::internal(format!("docker engine refused a request about {what} {key}: {message}"))
            }
            other => self.unreachable(other),
        }
    }

    /// `crewship-<crew slug>-<crew id>-<node>`: unique per crew and node,
    /// and readable in `docker ps`.
    pub fn container_name(&self, crew: &CrewRow) -> String {
        format!("crewship-{}-{}-{}", crew.slug, crew.public_id(), self.inner.node)
    }

    /// This node's crew containers (running or not), optionally only
    /// `crew_id`'s.
    pub async fn list(&self, crew_id: Option<&str>) -> Result<Vec<Found>> {
        let docker = self.client().await?;
        let label = match crew_id {
            Some(id) => format!("{LABEL_CREW_ID}={id}"),
            None => LABEL_CREW_ID.to_string(),
        };
        let filters = HashMap::from([("label", vec![label, format!("{LABEL_NODE}={}", self.inner.node)])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let listed = docker.list_containers(Some(options)).await.map_err(|e| self.error("container", "list", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let crew_id = c.labels.as_ref()?.get(LABEL_CREW_ID)?.clone();
                let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
                Some(Found { id: c.id?, crew_id, running })
            })
            .collect())
    }

    /// Creates the crew's container (not started). It idles so agents can
    /// be exec'd into it; init reaps their orphans and makes stop prompt.
    pub async fn create(&self, crew: &CrewRow) -> Result<String> {
        let docker = self.client().await?;
        let name = self.container_name(crew);
        let image = crew.image.clone().unwrap_or_default();
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(vec!["sleep".into()]),
            cmd: Some(vec!["infinity".into()]),
            labels: Some(HashMap::from([
                (LABEL_CREW.to_string(), crew.slug.clone()),
                (LABEL_CREW_ID.to_string(), crew.public_id()),
                (LABEL_NODE.to_string(), self.inner.node.clone()),
            ])),
            host_config: Some(HostConfig { init: Some(true), ..HostConfig::default() }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let create = || docker.create_container(Some(options.clone()), body.clone());
        let failed =
            |why: String| DomainError::invalid(format!("cannot create container {name} from image {image:?}: {why}"));
        let created = match create().await {
            // The only 404 of create: the image is not there. Pull it, as
            // `docker run` would, and try once more.
            Err(BollardError::DockerResponseServerError { status_code: 404, message }) => {
                self.pull(&docker, &image).await.map_err(|e| failed(format!("{message}; pulling it failed: {e}")))?;
                create().await
            }
            first => first,
        };
        match created {
            Ok(created) => Ok(created.id),
            Err(BollardError::DockerResponseServerError { status_code: 404, message }) => Err(failed(message)),
            Err(e) => Err(self.error("container", &name, e)),
        }
    }

    /// Pulls a public image (no registry credentials); the error says why
    /// the engine could not.
    async fn pull(&self, docker: &Docker, image: &str) -> std::result::Result<(), String> {
        let (name, tag) = pull_reference(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(name);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        let mut progress = docker.create_image(Some(options.build()), None, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| match e {
                BollardError::DockerStreamError { error } => error,
                BollardError::DockerResponseServerError { message, .. } => message,
                other => self.unreachable(other).to_string(),
            })?;
        }
        tracing::info!(image, "pulled image");
        Ok(())
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        docker.start_container(id, None).await.map_err(|e| self.error("container", id, e))
    }

    /// Stops a container; one already stopped is fine.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        let options = StopContainerOptionsBuilder::new().t(STOP_TIMEOUT_SECS).build();
        docker.stop_container(id, Some(options)).await.map_err(|e| self.error("container", id, e))
    }

    /// Removes a stopped container; one already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(self.error("container", id, e)),
        }
    }

    /// One stats reading, taken at once (`one-shot`: no second reading
    /// for precpu, so no second of waiting).
    pub async fn stats(&self, id: &str) -> Result<ContainerStatsResponse> {
        let docker = self.client().await?;
        let options = StatsOptionsBuilder::new().stream(false).one_shot(true).build();
        let mut stream = docker.stats(id, Some(options));
        match stream.next().await {
            Some(Ok(stats)) => Ok(stats),
            Some(Err(e)) => Err(self.error("container", id, e)),
            None => Err(DomainError::Unavailable(format!("docker engine sent no stats for container {id}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pull_reference;

    #[test]
    fn pull_references_name_a_single_tag() {
        assert_eq!(pull_reference("alpine"), ("alpine", Some("latest")));
        assert_eq!(pull_reference("alpine:3.20"), ("alpine", Some("3.20")));
        assert_eq!(pull_reference("registry.local:5000/team/tool"), ("registry.local:5000/team/tool", Some("latest")));
        assert_eq!(pull_reference("registry.local:5000/team/tool:v2"), ("registry.local:5000/team/tool", Some("v2")));
        assert_eq!(pull_reference("alpine@sha256:0123abcd"), ("alpine@sha256:0123abcd", None));
    }
}

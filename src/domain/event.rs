//! What every committed state change publishes to its subscribers: a kind
//! (matched by the workers, named on the wire), the crew it concerns, and
//! the entity as clients see it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::named::named_enum;
use super::status::{AssignmentStatus, PipelineRunStatus, RunStatus};

named_enum!(
    /// The channels of API.md; `crew:<slug>` is derived from `Event::crew`.
    Channel {
        Assignments => "assignments",
        Runs => "runs",
        Journal => "journal",
        Containers => "containers",
        PipelineRuns => "pipeline_runs",
    }
);

named_enum!(
    /// What happened to a crew or an agent.
    Change {
        Created => "created",
        Updated => "updated",
        Deleted => "deleted",
    }
);

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The assignment (by row id) reached `status`.
    Assignment {
        id: i64,
        status: AssignmentStatus,
    },
    Run(RunStatus),
    PipelineRun(PipelineRunStatus),
    JournalEntry,
    Crew(Change),
    Agent(Change),
    ContainerSample,
    /// Events may have been lost (the fleet's event feed broke): every
    /// client should fetch what it shows again.
    Resync,
}

impl EventKind {
    /// The channel it is delivered on (crew and agent changes have none:
    /// only `crew:<slug>` subscribers see them).
    pub fn channel(self) -> Option<Channel> {
        match self {
            EventKind::Assignment { .. } => Some(Channel::Assignments),
            EventKind::Run(_) => Some(Channel::Runs),
            EventKind::PipelineRun(_) => Some(Channel::PipelineRuns),
            EventKind::JournalEntry => Some(Channel::Journal),
            EventKind::ContainerSample => Some(Channel::Containers),
            EventKind::Crew(_) | EventKind::Agent(_) | EventKind::Resync => None,
        }
    }
}

/// The wire name: `assignment.queued`, `run.started`, `journal.entry`, ….
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventKind::Assignment { status, .. } => write!(f, "assignment.{}", status.as_str()),
            EventKind::Run(status) => write!(f, "run.{}", status.event()),
            EventKind::PipelineRun(status) => write!(f, "pipeline_run.{}", status.as_str()),
            EventKind::JournalEntry => f.write_str("journal.entry"),
            EventKind::Crew(change) => write!(f, "crew.{}", change.as_str()),
            EventKind::Agent(change) => write!(f, "agent.{}", change.as_str()),
            EventKind::ContainerSample => f.write_str("container.sample"),
            EventKind::Resync => f.write_str("resync"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The crew's slug, for `crew:<slug>` subscribers.
    pub crew: Option<String>,
    pub data: Value,
    /// When the change happened (epoch ms).
    pub ts: i64,
}

impl Event {
    pub fn new(kind: EventKind, crew: Option<String>, data: &impl Serialize) -> Event {
        Event { kind, crew, data: serde_json::to_value(data).unwrap_or(Value::Null), ts: super::time::now_ms() }
    }

    pub fn channel(&self) -> Option<Channel> {
        self.kind.channel()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::named::Named;

    #[test]
    fn wire_names() {
        let queued = EventKind::Assignment { id: 1, status: AssignmentStatus::Queued };
        assert_eq!(queued.to_string(), "assignment.queued");
        assert_eq!(EventKind::Run(RunStatus::Running).to_string(), "run.started");
        assert_eq!(EventKind::Run(RunStatus::Timeout).to_string(), "run.timeout");
        assert_eq!(EventKind::PipelineRun(PipelineRunStatus::DryRun).to_string(), "pipeline_run.dry_run");
        assert_eq!(EventKind::Crew(Change::Updated).to_string(), "crew.updated");
        assert_eq!(EventKind::Agent(Change::Updated).channel(), None);
        assert_eq!(Channel::parse("pipeline_runs"), Some(Channel::PipelineRuns));
        assert_eq!(Channel::ALL.len(), 5);
    }
}

//! What every committed state change publishes to the hub.

use serde::Serialize;
use serde_json::Value;

/// The channels of API.md; `crew:<slug>` is derived from `Event::crew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Assignments,
    Runs,
    Journal,
    Containers,
    PipelineRuns,
}

impl Channel {
    pub const ALL: [Channel; 5] =
        [Channel::Assignments, Channel::Runs, Channel::Journal, Channel::Containers, Channel::PipelineRuns];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Assignments => "assignments",
            Channel::Runs => "runs",
            Channel::Journal => "journal",
            Channel::Containers => "containers",
            Channel::PipelineRuns => "pipeline_runs",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    /// e.g. `assignment.queued`, `run.completed`, `journal.entry`.
    pub kind: String,
    /// None: only `crew:<slug>` subscribers see it (crew and agent changes).
    pub channel: Option<Channel>,
    /// The crew's slug, for `crew:<slug>` subscribers.
    pub crew: Option<String>,
    pub data: Value,
    /// When the change happened (epoch ms).
    pub ts: i64,
}

impl Event {
    pub fn new(kind: impl Into<String>, channel: Channel, crew: Option<String>, data: &impl Serialize) -> Event {
        Event::on(kind, Some(channel), crew, data)
    }

    /// An event on `channel` (None: only `crew:<slug>` subscribers see it).
    pub fn on(kind: impl Into<String>, channel: Option<Channel>, crew: Option<String>, data: &impl Serialize) -> Event {
        Event {
            kind: kind.into(),
            channel,
            crew,
            data: serde_json::to_value(data).unwrap_or(Value::Null),
            ts: super::time::now_ms(),
        }
    }
}

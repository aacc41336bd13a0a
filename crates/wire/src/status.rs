//! State machines for assignments, runs and pipeline runs. Every legal
//! transition is listed here and nowhere else.

use crate::named_enum;

named_enum!(AssignmentStatus {
    Pending => "pending",
    Queued => "queued",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

named_enum!(RunStatus {
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
    Timeout => "timeout",
});

named_enum!(PipelineRunStatus {
    Queued => "queued",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
    DryRun => "dry_run",
    Interrupted => "interrupted",
});

named_enum!(StepStatus {
    Pending => "pending",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
    Skipped => "skipped",
});

/// A move a state machine does not allow: "`kind` cannot go from a to b".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalMove(pub String);

impl std::fmt::Display for IllegalMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IllegalMove {}

fn illegal(kind: &str, from: &str, to: &str) -> IllegalMove {
    IllegalMove(format!("{kind} cannot go from {from} to {to}"))
}

impl AssignmentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Legal moves. `Running -> Queued` is the restart-recovery requeue.
    pub fn check_transition(self, to: Self) -> Result<(), IllegalMove> {
        use AssignmentStatus::*;
        let ok = matches!(
            (self, to),
            (Pending, Queued | Cancelled)
                | (Queued, Running | Cancelled)
                | (Running, Completed | Failed | Cancelled | Queued)
        );
        if ok { Ok(()) } else { Err(illegal("assignment", self.as_str(), to.as_str())) }
    }
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }

    /// The lifecycle event counted on /metrics, and named by its
    /// `run.<event>` journal entries and events.
    pub fn event(self) -> &'static str {
        match self {
            Self::Running => "started",
            other => other.as_str(),
        }
    }

    pub fn check_transition(self, to: Self) -> Result<(), IllegalMove> {
        if self == Self::Running && to.is_terminal() { Ok(()) } else { Err(illegal("run", self.as_str(), to.as_str())) }
    }
}

impl PipelineRunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    pub fn check_transition(self, to: Self) -> Result<(), IllegalMove> {
        use PipelineRunStatus::*;
        let ok = matches!(
            (self, to),
            (Queued, Running | Cancelled | Interrupted) | (Running, Completed | Failed | Cancelled | Interrupted)
        );
        if ok { Ok(()) } else { Err(illegal("pipeline run", self.as_str(), to.as_str())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_machine() {
        use AssignmentStatus::*;
        let legal = [
            (Pending, Queued),
            (Pending, Cancelled),
            (Queued, Running),
            (Queued, Cancelled),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelled),
            (Running, Queued),
        ];
        use crate::named::Named;
        for from in AssignmentStatus::ALL {
            for to in AssignmentStatus::ALL {
                assert_eq!(from.check_transition(*to).is_ok(), legal.contains(&(*from, *to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn run_machine_allows_one_terminal_step() {
        use crate::named::Named;
        for to in RunStatus::ALL {
            assert_eq!(RunStatus::Running.check_transition(*to).is_ok(), to.is_terminal());
            assert!(RunStatus::Completed.check_transition(*to).is_err());
        }
        assert_eq!(RunStatus::Running.event(), "started");
    }

    #[test]
    fn pipeline_machine() {
        use PipelineRunStatus::*;
        assert!(Queued.check_transition(Running).is_ok());
        assert!(Running.check_transition(Interrupted).is_ok());
        assert!(DryRun.check_transition(Running).is_err());
        assert!(Completed.check_transition(Failed).is_err());
        assert_eq!(PipelineRunStatus::parse("dry_run"), Some(DryRun));
    }
}

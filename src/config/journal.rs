//! Journal archiving and retention.

use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, duration, positive, positive_duration};

pub const ARCHIVE_AFTER: Setting = Setting {
    var: "CREWSHIP_JOURNAL_ARCHIVE_AFTER",
    flag: None,
    default: Shown::Value("30d"),
    help: "journal entries older than this move to the archive (the newest entry always stays live, so ids are \
           never reused)",
};
pub const RETENTION: Setting = Setting {
    var: "CREWSHIP_JOURNAL_RETENTION",
    flag: None,
    default: Shown::Value("365d"),
    help: "archived entries older than this are deleted",
};
pub const ARCHIVE_INTERVAL: Setting = Setting {
    var: "CREWSHIP_JOURNAL_ARCHIVE_INTERVAL",
    flag: None,
    default: Shown::Value("10m"),
    help: "how often the archiver sweeps",
};
pub const ARCHIVE_BATCH: Setting = Setting {
    var: "CREWSHIP_JOURNAL_ARCHIVE_BATCH",
    flag: None,
    default: Shown::Value("1000"),
    help: "rows per archiving transaction",
};

#[derive(Debug, Clone)]
pub struct Journal {
    pub archive_after: Duration,
    pub retention: Duration,
    pub interval: Duration,
    pub batch: usize,
}

impl Journal {
    pub(super) fn read(src: &Source<'_>) -> Result<Journal, ConfigError> {
        Ok(Journal {
            archive_after: src.get(&ARCHIVE_AFTER, duration)?,
            retention: src.get(&RETENTION, duration)?,
            interval: src.get(&ARCHIVE_INTERVAL, positive_duration)?,
            batch: src.get(&ARCHIVE_BATCH, positive)?,
        })
    }
}

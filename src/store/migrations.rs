//! The schema's versions: every migration this binary knows, in order, by
//! version and name. Each backend holds the SQL of each under the same
//! version and name, applies what a database lacks, records it in
//! `schema_migrations`, and refuses a database newer than this list.

use super::sql::{Db, args};
use crate::domain::Result;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
}

/// Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 20261125220000, name: "initial" },
    Migration { version: 20261126020000, name: "queue_depth_from_assignments" },
    Migration { version: 20261201100000, name: "hardening" },
    Migration { version: 20261202090000, name: "striped_counters" },
    Migration { version: 20261203090000, name: "fleet" },
    Migration { version: 20261204090000, name: "crew_running_from_index" },
    Migration { version: 20261205090000, name: "oldest_queued" },
    Migration { version: 20261206090000, name: "trace_context" },
    Migration { version: 20261207090000, name: "runs_by_crew" },
];

pub fn latest_known() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The message for a database migrated by a newer crewshipd.
pub(super) fn too_new(unknown: i64) -> String {
    format!(
        "the database has schema migration {unknown}, which this crewshipd does not know (it knows up to {}); run a \
         newer crewshipd",
        latest_known()
    )
}

/// The highest applied version that this binary knows: in a fleet, a node
/// still running old code after a newer one migrated shows an older
/// version than its peers.
pub fn current(db: &Db<'_>) -> Result<i64> {
    db.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE version <= ?1",
        args![latest_known()],
        |r| r.get(0),
    )
}

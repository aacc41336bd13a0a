//! The fleet's nodes and their leases, read against the database's clock
//! (`Db::now_ms`), so the nodes of a fleet agree on who has expired. A node
//! owns the runs it claimed under its current epoch while its lease holds;
//! a live node takes back the runs of an expired one exactly once (the
//! node's row is locked while it does).

use super::sql::{Db, RowLock, args};
use crate::domain::Result;
use crate::domain::kinds::LeaseState;
use crate::domain::time;
use crate::domain::types::Node;

/// A node and the epoch it claims under: what fences a run's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub id: String,
    pub epoch: i64,
}

#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub migration_version: i64,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub lease_until: i64,
}

impl NodeRow {
    pub fn to_api(&self, now: i64) -> Node {
        Node {
            id: self.id.clone(),
            hostname: self.hostname.clone(),
            version: self.version.clone(),
            migration_version: self.migration_version,
            started_at: time::rfc3339(self.started_at),
            heartbeat_at: time::rfc3339(self.heartbeat_at),
            state: if self.lease_until > now { LeaseState::Live } else { LeaseState::Expired },
        }
    }
}

const SELECT: &str =
    "SELECT n.id, n.hostname, n.version, n.migration_version, n.started_at, n.heartbeat_at, n.lease_until FROM nodes n";

fn from_row(r: &super::sql::Row<'_>) -> Result<NodeRow> {
    Ok(NodeRow {
        id: r.get(0)?,
        hostname: r.get(1)?,
        version: r.get(2)?,
        migration_version: r.get(3)?,
        started_at: r.get(4)?,
        heartbeat_at: r.get(5)?,
        lease_until: r.get(6)?,
    })
}

/// Who a node says it is when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub migration_version: i64,
    pub lease_ms: i64,
}

/// Registers the node, or registers it again under the next epoch (which
/// fences whatever its earlier epochs claimed); returns the epoch.
pub fn register(db: &Db<'_>, r: &Registration) -> Result<i64> {
    let now = db.now_ms();
    db.execute(
        &format!(
            "INSERT INTO nodes (id, hostname, version, migration_version, epoch, started_at, heartbeat_at, \
             lease_until) VALUES (?1, ?2, ?3, ?4, 1, {now}, {now}, {now} + ?5)
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
                 migration_version = excluded.migration_version, epoch = nodes.epoch + 1,
                 started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                 lease_until = excluded.lease_until, recovered_at = NULL"
        ),
        args![r.id, r.hostname, r.version, r.migration_version, r.lease_ms],
    )?;
    db.query_one("SELECT epoch FROM nodes WHERE id = ?1", args![r.id], |row| row.get(0))
}

/// Extends the node's lease if it still holds it: false when it expired
/// or a later epoch took over (the node is fenced).
pub fn renew(db: &Db<'_>, node: &NodeRef, lease_ms: i64) -> Result<bool> {
    let now = db.now_ms();
    let n = db.execute(
        &format!(
            "UPDATE nodes SET heartbeat_at = {now}, lease_until = {now} + ?3
             WHERE id = ?1 AND epoch = ?2 AND lease_until > {now} AND recovered_at IS NULL"
        ),
        args![node.id, node.epoch, lease_ms],
    )?;
    Ok(n == 1)
}

/// Whether `node` still owns what it claimed under its epoch; holds its
/// row against a recovery (which takes it with `Update`) until the
/// transaction ends. The node's own heartbeat, a plain update, does not
/// wait for it: a busy node still renews its lease in time.
pub fn owns(db: &Db<'_>, node: &NodeRef) -> Result<bool> {
    let now = db.now_ms();
    let lock = db.locking(RowLock::KeyShare, "n");
    let row = db.query_opt(
        &format!("SELECT n.epoch FROM nodes n WHERE n.id = ?1 AND n.epoch = ?2 AND n.lease_until > {now}{lock}"),
        args![node.id, node.epoch],
        |r| r.get::<i64>(0),
    )?;
    Ok(row.is_some())
}

/// Expired nodes whose runs nobody has taken back yet, locked; those
/// another node is taking back now are left out.
pub fn to_recover(db: &Db<'_>) -> Result<Vec<NodeRow>> {
    let now = db.now_ms();
    let lock = db.locking(RowLock::SkipLocked, "n");
    db.query(
        &format!("{SELECT} WHERE n.lease_until <= {now} AND n.recovered_at IS NULL ORDER BY n.id{lock}"),
        args![],
        from_row,
    )
}

pub fn mark_recovered(db: &Db<'_>, id: &str) -> Result<()> {
    let now = db.now_ms();
    db.execute(&format!("UPDATE nodes SET recovered_at = {now} WHERE id = ?1"), args![id]).map(drop)
}

/// Forgets expired nodes whose runs were taken back more than
/// `after_ms` ago: the fleet keeps no record of a node it will never see
/// again (one that comes back registers afresh). Returns how many.
pub fn forget_recovered(db: &Db<'_>, after_ms: i64) -> Result<usize> {
    let now = db.now_ms();
    db.execute(
        &format!(
            "DELETE FROM nodes WHERE recovered_at IS NOT NULL AND recovered_at <= {now} - ?1 AND lease_until <= {now}"
        ),
        args![after_ms],
    )
}

/// Every node but `id`, gone for good: where one node is all there can
/// be (SQLite), after their runs were taken back.
pub fn forget_others(db: &Db<'_>, id: &str) -> Result<()> {
    db.execute("DELETE FROM nodes WHERE id <> ?1", args![id]).map(drop)
}

/// Every node, and the database's clock to judge their leases by.
pub fn list(db: &Db<'_>) -> Result<(Vec<NodeRow>, i64)> {
    let now: i64 = db.query_one(&format!("SELECT {}", db.now_ms()), args![], |r| r.get(0))?;
    Ok((db.query(&format!("{SELECT} ORDER BY n.started_at, n.id"), args![], from_row)?, now))
}

/// (live, expired) nodes, for /metrics.
pub fn counts(db: &Db<'_>) -> Result<(i64, i64)> {
    let now = db.now_ms();
    db.query_one(
        &format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN lease_until > {now} THEN 1 ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN lease_until > {now} THEN 0 ELSE 1 END), 0) AS BIGINT) FROM nodes"
        ),
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

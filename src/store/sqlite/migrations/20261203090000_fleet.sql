-- A fleet of nodes on one database (on SQLite, always one node). A node's
-- id is kept in its data directory; each start bumps its epoch, and the
-- lease it renews says how long the fleet leaves its runs alone.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    migration_version INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    -- Set once a live node has taken back the runs of this node's last
    -- epoch (its lease expired); cleared when it registers again.
    recovered_at INTEGER
);

-- Who executes an assignment and its run (the run also under which epoch:
-- its terminal write is fenced by it), and who drives a pipeline run.
ALTER TABLE assignments ADD COLUMN node TEXT;
ALTER TABLE runs ADD COLUMN node TEXT;
ALTER TABLE runs ADD COLUMN node_epoch INTEGER;
ALTER TABLE pipeline_runs ADD COLUMN node TEXT;
CREATE INDEX runs_node ON runs (node, status) WHERE status = 'running';

-- Committed events, for the other nodes of a fleet (PostgreSQL sends each
-- one's seq with NOTIFY; SQLite's one node never writes here).
CREATE TABLE fleet_events (
    seq INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX fleet_events_ts ON fleet_events (ts);

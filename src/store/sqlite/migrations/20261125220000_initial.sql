-- Crews own agents; both are soft-deleted so history stays readable.
CREATE TABLE crews (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    max_concurrent_agents INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    image TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX crews_live_slug ON crews (slug) WHERE deleted_at IS NULL;

CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    crew_id INTEGER NOT NULL REFERENCES crews (id),
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    command TEXT NOT NULL,
    env TEXT NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX agents_live_slug ON agents (crew_id, slug) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX agents_live_lead ON agents (crew_id) WHERE role = 'lead' AND deleted_at IS NULL;

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    crew_id INTEGER NOT NULL REFERENCES crews (id),
    agent_id INTEGER NOT NULL REFERENCES agents (id),
    assigned_by INTEGER REFERENCES agents (id),
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    queued_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    result_summary TEXT,
    error_message TEXT,
    run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    pipeline_run_id INTEGER
);
-- The dispatcher's FIFO: queued work of a crew in queued-time order.
CREATE INDEX assignments_queue ON assignments (crew_id, queued_at, id) WHERE status = 'queued';
CREATE INDEX assignments_status ON assignments (status, id);
CREATE INDEX assignments_crew ON assignments (crew_id, id);

CREATE TABLE runs (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    crew_id INTEGER REFERENCES crews (id),
    agent_id INTEGER REFERENCES agents (id),
    assignment_id INTEGER REFERENCES assignments (id),
    trigger TEXT,
    managed INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    error TEXT,
    exit_code INTEGER,
    -- The process group crewshipd started for the run, so a restarted
    -- daemon can stop what a dead one left behind.
    pid INTEGER
);
CREATE INDEX runs_status ON runs (status) WHERE status = 'running';

CREATE TABLE run_outputs (
    run_pk INTEGER PRIMARY KEY REFERENCES runs (pk),
    output TEXT NOT NULL
);

-- The journal: live entries, and the archive they move to. Ids are kept
-- across the move, so one id order spans both.
CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    entry_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    crew_id INTEGER,
    agent_id INTEGER,
    trace_id TEXT,
    summary TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX journal_ts ON journal (ts);
CREATE INDEX journal_trace ON journal (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX journal_crew ON journal (crew_id, id) WHERE crew_id IS NOT NULL;

CREATE TABLE journal_archive (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    entry_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    crew_id INTEGER,
    agent_id INTEGER,
    trace_id TEXT,
    summary TEXT NOT NULL,
    payload TEXT NOT NULL,
    archived_at INTEGER NOT NULL
);
CREATE INDEX journal_archive_ts ON journal_archive (ts);
CREATE INDEX journal_archive_trace ON journal_archive (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX journal_archive_crew ON journal_archive (crew_id, id) WHERE crew_id IS NOT NULL;

CREATE TABLE pipelines (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    max_concurrent_runs INTEGER NOT NULL,
    steps TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX pipelines_live_slug ON pipelines (slug) WHERE deleted_at IS NULL;

CREATE TABLE pipeline_runs (
    id INTEGER PRIMARY KEY,
    pipeline_id INTEGER NOT NULL REFERENCES pipelines (id),
    status TEXT NOT NULL,
    inputs TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    reason TEXT
);
CREATE INDEX pipeline_runs_pipeline ON pipeline_runs (pipeline_id, status);
CREATE INDEX pipeline_runs_status ON pipeline_runs (status, id);

CREATE TABLE pipeline_run_steps (
    pipeline_run_id INTEGER NOT NULL REFERENCES pipeline_runs (id),
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    crew_id INTEGER NOT NULL REFERENCES crews (id),
    agent_id INTEGER NOT NULL REFERENCES agents (id),
    task TEXT,
    status TEXT NOT NULL,
    assignment_id INTEGER REFERENCES assignments (id),
    output TEXT,
    PRIMARY KEY (pipeline_run_id, idx)
) WITHOUT ROWID;

-- The paymaster's ledger. `series` is the metric label the call counts
-- under, fixed when the call is written.
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    provider TEXT NOT NULL,
    series TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    billing_mode TEXT NOT NULL,
    priced INTEGER NOT NULL,
    crew_id INTEGER,
    agent_id INTEGER,
    run_id TEXT
);
CREATE INDEX llm_calls_ts ON llm_calls (ts);

-- Maintained counters: changed only in the transaction of the write they
-- count, read by /metrics in O(1).
CREATE TABLE counters (
    family TEXT NOT NULL,
    label TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (family, label)
) WITHOUT ROWID;

CREATE TABLE crew_counts (
    crew_id INTEGER PRIMARY KEY REFERENCES crews (id),
    queued INTEGER NOT NULL DEFAULT 0,
    running INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX crew_counts_queued ON crew_counts (queued);

CREATE TABLE llm_series (
    label TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    cost_nanos INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

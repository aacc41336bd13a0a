-- A run's callback token (its SHA-256; the token itself is only in the
-- run's environment) and the cgroup its processes run in, so a restarted
-- daemon can end what a dead one left behind.
ALTER TABLE runs ADD COLUMN token_hash TEXT;
ALTER TABLE runs ADD COLUMN cgroup TEXT;

-- Token totals per LLM series, maintained with the call like its cost, so
-- that every total (and every sum over calls) is bounded and checked.
ALTER TABLE llm_series ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN cache_creation_tokens INTEGER NOT NULL DEFAULT 0;
UPDATE llm_series SET
    input_tokens = (SELECT COALESCE(SUM(input_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    output_tokens = (SELECT COALESCE(SUM(output_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    cached_input_tokens =
        (SELECT COALESCE(SUM(cached_input_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    cache_creation_tokens =
        (SELECT COALESCE(SUM(cache_creation_tokens), 0) FROM llm_calls WHERE series = llm_series.label);

-- One row that /readyz rewrites to prove a write can still commit.
CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);

-- As on SQLite: run tokens (their SHA-256) and cgroups, token totals per
-- LLM series, and the readiness probe's row.
ALTER TABLE runs ADD COLUMN token_hash TEXT;
ALTER TABLE runs ADD COLUMN cgroup TEXT;

ALTER TABLE llm_series ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN cached_input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE llm_series ADD COLUMN cache_creation_tokens BIGINT NOT NULL DEFAULT 0;
UPDATE llm_series SET
    input_tokens = (SELECT COALESCE(SUM(input_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    output_tokens = (SELECT COALESCE(SUM(output_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    cached_input_tokens =
        (SELECT COALESCE(SUM(cached_input_tokens), 0) FROM llm_calls WHERE series = llm_series.label),
    cache_creation_tokens =
        (SELECT COALESCE(SUM(cache_creation_tokens), 0) FROM llm_calls WHERE series = llm_series.label);

CREATE TABLE readiness_probe (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT NOT NULL
);

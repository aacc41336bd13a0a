-- GET /api/v1/runs?crew=…: a crew's runs newest first, from one index.
CREATE INDEX runs_crew ON runs (crew_id, pk);

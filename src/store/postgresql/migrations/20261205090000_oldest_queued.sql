-- The oldest queued assignment in one index edge, for
-- crewshipd_assignment_queue_oldest_age_seconds. The status leads, as in
-- the query's WHERE: with table statistics, SQLite otherwise prefers the
-- status index and reads every queued row.
CREATE INDEX assignments_queued_at ON assignments (status, queued_at) WHERE status = 'queued';

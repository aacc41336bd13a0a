-- The oldest queued assignment in one index edge, for
-- crewshipd_assignment_queue_oldest_age_seconds.
CREATE INDEX assignments_queued_at ON assignments (queued_at) WHERE status = 'queued';

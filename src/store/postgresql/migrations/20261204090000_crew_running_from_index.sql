-- A crew's running assignments are counted from an index instead of a
-- counter: settling a run then writes no row of its crew, so on
-- PostgreSQL the ends of a crew's runs no longer queue on that row, nor
-- hold up the claims that wait for it. The count is at most the crew's
-- budget, so reading it costs no more than the counter did.
CREATE INDEX assignments_running ON assignments (crew_id) WHERE status = 'running';
ALTER TABLE crew_counts DROP COLUMN running;

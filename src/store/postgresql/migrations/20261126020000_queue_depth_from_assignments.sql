-- The queue depth is the count of queued assignments, which `counters`
-- already holds under family 'assignments': its own row is dropped, so a
-- queue move updates one counter fewer.
DELETE FROM counters WHERE family = 'queue' AND label = 'depth';

-- Counters in stripes: a value is the sum of its rows, so writers that
-- run at once (on PostgreSQL) add to different rows instead of queueing
-- on one. Where one writer commits (SQLite) there is one stripe, 0; the
-- column keeps the two schemas alike.
CREATE TABLE counters_striped (
    family TEXT NOT NULL,
    label TEXT NOT NULL,
    stripe INTEGER NOT NULL DEFAULT 0,
    value INTEGER NOT NULL,
    PRIMARY KEY (family, label, stripe)
) WITHOUT ROWID;
INSERT INTO counters_striped (family, label, stripe, value) SELECT family, label, 0, value FROM counters;
DROP TABLE counters;
ALTER TABLE counters_striped RENAME TO counters;

-- Counters in stripes: a value is the sum of its rows, so concurrent
-- writers add to different rows instead of queueing on one row lock.
ALTER TABLE counters ADD COLUMN stripe BIGINT NOT NULL DEFAULT 0;
ALTER TABLE counters DROP CONSTRAINT counters_pkey;
ALTER TABLE counters ADD PRIMARY KEY (family, label, stripe);

-- The durable job queue. A running job holds a lease (lease_owner, lease_expires_at) that its
-- worker renews; when a worker dies the lease runs out and any worker may claim the job again.
-- Times are epoch seconds (DOUBLE PRECISION), compared with bound parameters on both dialects.
CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at           DOUBLE PRECISION NOT NULL,
    lease_owner      TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    result           TEXT,
    created_by       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    finished_at      DOUBLE PRECISION
);
CREATE INDEX jobs_claimable ON jobs (status, run_at);
CREATE INDEX jobs_kind ON jobs (kind, id);

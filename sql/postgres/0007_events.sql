-- Ingested events, idempotent by their id (the sender's key): a repeat finds the first row.
-- seq orders them for listing and paging; processing happens in an events.process job.
CREATE TABLE events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    data         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('received', 'processed')),
    result       TEXT,
    job_id       BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    received_at  DOUBLE PRECISION NOT NULL,
    processed_at DOUBLE PRECISION
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_source ON events (source, seq);

-- Ingested events, idempotent by their id (the sender's key): a repeat finds the first row.
-- seq orders them for listing and paging; processing happens in an events.process job.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    data         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('received', 'processed')),
    result       TEXT,
    job_id       INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    received_at  REAL NOT NULL,
    processed_at REAL
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_source ON events (source, seq);

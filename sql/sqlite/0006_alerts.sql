-- EAS/CAP-style alerts. An alert is active while expires_at (epoch seconds) is in the future;
-- it leaves the active list by itself. expired_announced records that alert.expired was
-- published, so each expiry is announced exactly once, whichever process sees it first.
CREATE TABLE alerts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_code        TEXT NOT NULL
                      CHECK (length(event_code) = 3 AND event_code GLOB '[A-Z][A-Z][A-Z]'),
    message           TEXT NOT NULL,
    severity          TEXT NOT NULL
                      CHECK (severity IN ('extreme', 'severe', 'moderate', 'minor', 'unknown')),
    areas             TEXT NOT NULL,
    expires_at        REAL NOT NULL,
    source            TEXT,
    source_event_id   TEXT,
    expired_announced INTEGER NOT NULL DEFAULT 0 CHECK (expired_announced IN (0, 1)),
    created_by        INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX alerts_expires_at ON alerts (expires_at);
CREATE INDEX alerts_severity ON alerts (severity, id);
CREATE INDEX alerts_unannounced ON alerts (expires_at) WHERE expired_announced = 0;

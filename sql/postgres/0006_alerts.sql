-- EAS/CAP-style alerts. An alert is active while expires_at (epoch seconds) is in the future;
-- it leaves the active list by itself. expired_announced records that alert.expired was
-- published, so each expiry is announced exactly once, whichever process sees it first.
CREATE TABLE alerts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_code        TEXT NOT NULL CHECK (event_code ~ '^[A-Z]{3}$'),
    message           TEXT NOT NULL,
    severity          TEXT NOT NULL
                      CHECK (severity IN ('extreme', 'severe', 'moderate', 'minor', 'unknown')),
    areas             TEXT NOT NULL,
    expires_at        DOUBLE PRECISION NOT NULL,
    source            TEXT,
    source_event_id   TEXT,
    expired_announced INTEGER NOT NULL DEFAULT 0 CHECK (expired_announced IN (0, 1)),
    created_by        BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at        DOUBLE PRECISION NOT NULL,
    updated_at        DOUBLE PRECISION NOT NULL
);
CREATE INDEX alerts_expires_at ON alerts (expires_at);
CREATE INDEX alerts_severity ON alerts (severity, id);
CREATE INDEX alerts_unannounced ON alerts (expires_at) WHERE expired_announced = 0;

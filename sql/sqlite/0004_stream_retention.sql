-- Retention deletes the oldest events; this single row remembers the highest id it deleted,
-- so a client resuming from below it is told that events were lost (a `reset` event).
CREATE TABLE stream_retention (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    deleted_through INTEGER NOT NULL
);
INSERT INTO stream_retention (id, deleted_through) VALUES (1, 0);

-- The durable event log: the row id is the SSE event id and the replay cursor.
-- AUTOINCREMENT so an id is never reused after retention deletes the newest rows.
CREATE TABLE stream_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX stream_events_topic_id ON stream_events (topic, id);
CREATE INDEX stream_events_created_at ON stream_events (created_at);

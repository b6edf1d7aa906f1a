-- The durable event log: the row id is the SSE event id and the replay cursor.
-- Inserts are serialised by an advisory lock (royal.streams.log) so ids become visible in order.
CREATE TABLE stream_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      TEXT NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX stream_events_topic_id ON stream_events (topic, id);
CREATE INDEX stream_events_created_at ON stream_events (created_at);

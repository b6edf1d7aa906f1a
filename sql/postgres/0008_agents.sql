-- Agent conversations. A session belongs to one user; its messages are the conversation the
-- backend sees. An assistant reply is 'pending' (queued), then 'streaming' (its deltas are in
-- stream_events on topic agent:<session id>), then 'complete', 'cancelled' or 'failed' with
-- its text. stream_after is the newest event id before the reply began: a client that opens
-- the stream without Last-Event-ID replays the reply from there. watched_at is the last time
-- a stream was open on the session (epoch seconds); a reply nobody watches for the grace
-- period is cancelled. seq orders sessions for pagination (ids are UUIDs).
CREATE TABLE agent_sessions (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    watched_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX agent_sessions_user ON agent_sessions (user_id, seq);

CREATE TABLE agent_messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content      TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('complete', 'pending', 'streaming', 'cancelled', 'failed')),
    reply_to     BIGINT REFERENCES agent_messages (id) ON DELETE SET NULL,
    job_id       BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    stream_after BIGINT NOT NULL DEFAULT 0,
    usage        TEXT,
    error        TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    updated_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX agent_messages_session ON agent_messages (session_id, id);
-- One reply in progress per session: a second user message waits for (or cancels) the first.
CREATE UNIQUE INDEX agent_messages_one_reply ON agent_messages (session_id)
    WHERE status IN ('pending', 'streaming');

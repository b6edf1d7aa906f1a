-- The notes example's own table. Apps built on Royal share Royal's schema_migration table,
-- whose key is the version alone, so their migrations are numbered from 9001: Royal's own
-- (0001, 0002, ...) never reach them.
CREATE TABLE notes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX notes_owner ON notes (owner_id, id);

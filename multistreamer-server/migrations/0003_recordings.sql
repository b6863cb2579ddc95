-- Recording: a per-stream setting (off, original or raw, and the rendition recorded,
-- empty for the source) and the files written.
ALTER TABLE streams ADD COLUMN record_mode TEXT NOT NULL DEFAULT 'off';
ALTER TABLE streams ADD COLUMN record_rendition TEXT NOT NULL DEFAULT '';
CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER,
    stream_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0
);

-- Webinar captures started from a stream page. The page's URL is kept sealed (guest links
-- carry tokens) and shown masked.
CREATE TABLE captures (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    url_masked TEXT NOT NULL,
    sealed_url TEXT NOT NULL,
    profile TEXT NOT NULL,
    -- JSON: selectors, presenter on or off, fps, window, guest name
    options TEXT NOT NULL,
    -- a broadcast whose platform chat is read too
    broadcast_id INTEGER REFERENCES broadcasts(id) ON DELETE SET NULL,
    dir TEXT NOT NULL,
    -- running | finished | failed
    state TEXT NOT NULL,
    error TEXT,
    chat_messages INTEGER NOT NULL DEFAULT 0,
    presenter_frames INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    ended_at INTEGER
)

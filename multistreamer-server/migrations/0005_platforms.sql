-- Connected platform accounts (YouTube over OAuth, MTS Link by API token) and the
-- broadcasts created on them. Tokens are sealed with the key in the data directory
-- (secret.key): the database alone never holds a usable credential.
CREATE TABLE platform_accounts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    -- YouTube: the channel id, MTS Link: empty.
    remote_id TEXT NOT NULL DEFAULT '',
    sealed_secret TEXT NOT NULL,
    -- connected | reconnect_needed | error
    state TEXT NOT NULL DEFAULT 'connected',
    last_error TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE broadcasts (
    id INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    platform_id INTEGER NOT NULL REFERENCES platform_accounts(id) ON DELETE CASCADE,
    -- YouTube: the liveBroadcast id, MTS Link: the event session id.
    remote_id TEXT NOT NULL,
    -- YouTube: the bound liveStream id, MTS Link: the event id.
    remote_stream_id TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL,
    watch_url TEXT NOT NULL DEFAULT '',
    -- As the platform reports it (YouTube lifeCycleStatus, MTS Link mapped to ready/live/complete).
    state TEXT NOT NULL,
    destination_id INTEGER REFERENCES destinations(id) ON DELETE SET NULL,
    backup_destination_id INTEGER REFERENCES destinations(id) ON DELETE SET NULL,
    auto_live INTEGER NOT NULL DEFAULT 0,
    monitor_stream INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL
);

-- Settings the operator enters in the UI (the YouTube OAuth client), secrets sealed.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)

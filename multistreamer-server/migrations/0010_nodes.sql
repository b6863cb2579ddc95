-- Several nodes on one PostgreSQL database (docs/design/scale-out.md), unused on SQLite.
-- Times in milliseconds of the database's clock.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    http_url TEXT NOT NULL,
    rtmp_url TEXT NOT NULL,
    rtsp_url TEXT NOT NULL DEFAULT '',
    srt_url TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    -- JSON: cpu_percent, streams, rx_bytes_per_s, tx_bytes_per_s
    load TEXT NOT NULL DEFAULT '{}'
);

-- The node running a stream: the owner renews its row while the stream runs there.
CREATE TABLE stream_leases (
    stream_id INTEGER PRIMARY KEY REFERENCES streams(id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    -- the owner's live state of the stream (JSON), shown by every node's API
    state TEXT NOT NULL DEFAULT '{}'
);

-- The node whose disk holds a recording or a capture ('' with a single node): any node's API
-- serves the file by asking that one.
ALTER TABLE recordings ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
ALTER TABLE captures ADD COLUMN node_id TEXT NOT NULL DEFAULT ''

-- Lookups by stream: a page of the stream list reads its streams' destinations and
-- sessions, and deleting a stream cascades to its destinations.
CREATE INDEX IF NOT EXISTS destinations_by_stream ON destinations (stream_id, id);
CREATE INDEX IF NOT EXISTS stream_sessions_by_stream ON stream_sessions (stream_id, id);

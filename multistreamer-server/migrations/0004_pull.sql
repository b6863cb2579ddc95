-- A stream can pull its source (an RTSP camera URL) instead of waiting for a publisher.
ALTER TABLE streams ADD COLUMN pull_url TEXT NOT NULL DEFAULT '';

-- Whether HEVC and AV1 go to an RTMP destination that does not list them in its connect
-- reply: negotiate (only if it lists them, or is YouTube) or assume (always).
ALTER TABLE destinations ADD COLUMN enhanced_rtmp TEXT NOT NULL DEFAULT 'negotiate';

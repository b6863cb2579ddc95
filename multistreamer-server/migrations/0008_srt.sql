-- The passphrase SRT publishers of a stream encrypt with (AES), empty for none.
ALTER TABLE streams ADD COLUMN srt_passphrase TEXT NOT NULL DEFAULT '';

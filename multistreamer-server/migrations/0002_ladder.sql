-- The transcoding ladder of a stream ('' = no transcoding) and the rendition a destination
-- receives ('' = the source, as published).
ALTER TABLE streams ADD COLUMN ladder TEXT NOT NULL DEFAULT '';
ALTER TABLE destinations ADD COLUMN rendition TEXT NOT NULL DEFAULT '';

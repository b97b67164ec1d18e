-- Claims at catalogue scale: claiming pending tracks without a partition (ORDER BY track_id) reads only the
-- pending rows through this partial index instead of walking the primary key over every tagged track.
-- (Claims of one upload day use tracks_pending_idx on (partition_key, track_id).)
CREATE INDEX tracks_pending_claim_idx ON tracks (track_id) WHERE status = 'pending';

-- Claims at catalogue scale: a claim without a partition takes the lowest pending track_ids. Through the
-- primary key it would step over every tagged track first (half way through a first run of a million tracks,
-- 500 000 rows per claim); this partial index holds only the pending rows, in track_id order, so a claim reads
-- about as many entries as it takes. (Claims of one upload day use tracks_pending_idx.)
CREATE INDEX tracks_pending_claim_idx ON tracks (track_id) WHERE status = 'pending';

-- Example queries of the tag tables, printed by `catalogue-tagger demo` and run by its test.

-- name: tags_of_every_track --
-- The tags of every track, best first.
SELECT uri, tag, round(score::numeric, 3) AS score
FROM tag_scores WHERE model = 'musicnn-mtt' ORDER BY uri, score DESC;

-- name: top_tracks_for_a_tag --
-- The top tracks for a tag.
SELECT uri, score FROM tag_scores WHERE model = 'musicnn-mtt' AND tag = 'techno' ORDER BY score DESC LIMIT 10;

-- name: spectrogram_vs_waveform --
-- Each track's top tag from the spectrogram tagger and from the waveform tagger.
SELECT s.uri, s.tag AS musicnn_top, w.tag AS samplecnn_top
FROM (SELECT DISTINCT ON (uri) uri, tag FROM tag_scores WHERE model = 'musicnn-mtt' ORDER BY uri, score DESC) s
JOIN (SELECT DISTINCT ON (uri) uri, tag FROM tag_scores WHERE model = 'samplecnn-mtt' ORDER BY uri, score DESC) w
USING (uri) ORDER BY s.uri;

-- name: failures_by_kind --
-- Failures by kind, with an example.
SELECT error_kind, count(*), min(uri) AS example FROM tracks WHERE status = 'failed' GROUP BY error_kind ORDER BY 2 DESC;

-- name: coverage_per_partition --
-- Coverage per upload day.
SELECT partition_key, count(*) FILTER (WHERE status = 'tagged') AS tagged,
       count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'pending') AS pending
FROM tracks GROUP BY partition_key ORDER BY partition_key DESC;

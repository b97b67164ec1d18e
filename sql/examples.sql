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

-- name: tagged_at_tempo_in_key_and_loud --
-- Tracks tagged electronic at 120–128 BPM (or half/double that) in A minor, louder than -10 LUFS.
SELECT uri, round(score::numeric, 3) AS score, tempo_bpm, key, loudness_lufs
FROM tag_descriptors
WHERE model = 'musicnn-mtt' AND tag = 'electronic' AND score >= 0.3
  AND (tempo_bpm BETWEEN 120 AND 128 OR tempo_alt_bpm BETWEEN 120 AND 128)
  AND key = 'A minor' AND loudness_lufs > -10
ORDER BY score DESC;

-- name: keys_compatible_with_a_track --
-- Tracks in keys that mix with the first track's (Camelot: same number ±1 and same letter, or the same number).
WITH me AS (
    SELECT uri, left(camelot, -1)::int AS n, right(camelot, 1) AS l
    FROM current_descriptors WHERE camelot IS NOT NULL ORDER BY uri LIMIT 1
)
SELECT d.uri, d.key, d.camelot, d.tempo_bpm
FROM current_descriptors d, me
WHERE d.uri <> me.uri
  AND ((right(d.camelot, 1) = me.l AND mod(left(d.camelot, -1)::int - me.n + 12, 12) IN (0, 1, 11))
       OR (right(d.camelot, 1) <> me.l AND left(d.camelot, -1)::int = me.n))
ORDER BY d.uri;

-- name: descriptors_of_every_track --
-- Tempo (with its competing octave), key and loudness of every track.
SELECT uri, tempo_bpm, tempo_confidence, tempo_alt_bpm, key, camelot, key_confidence,
       loudness_lufs, loudness_range_lu, true_peak_dbtp
FROM current_descriptors ORDER BY uri;

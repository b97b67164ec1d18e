-- Tempo, key and loudness of each track, from the same decode pass as its tags (see schema.sql).
CREATE TABLE track_descriptors (
    track_id             bigint NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    version              integer NOT NULL,
    tempo_bpm            real,
    tempo_confidence     real,
    tempo_alt_bpm        real,
    tempo_alt_confidence real,
    key                  text,
    key_confidence       real,
    key_alt              text,
    key_alt_confidence   real,
    camelot              text,
    loudness_lufs        real,
    loudness_range_lu    real,
    true_peak_dbtp       real,
    PRIMARY KEY (track_id, version)
);
CREATE INDEX track_descriptors_tempo_idx ON track_descriptors (tempo_bpm);
CREATE INDEX track_descriptors_key_idx ON track_descriptors (key);

-- The current descriptors of every tagged track.
CREATE VIEW current_descriptors AS
SELECT DISTINCT ON (d.track_id)
       t.uri, d.track_id, d.version, d.tempo_bpm, d.tempo_confidence, d.tempo_alt_bpm, d.tempo_alt_confidence,
       d.key, d.key_confidence, d.key_alt, d.key_alt_confidence, d.camelot,
       d.loudness_lufs, d.loudness_range_lu, d.true_peak_dbtp
FROM track_descriptors d
JOIN tracks t ON t.track_id = d.track_id AND t.status = 'tagged'
ORDER BY d.track_id, d.version DESC;

-- Contract view: current tags beside the current descriptors of the same track (filter by both at once).
CREATE VIEW tag_descriptors AS
SELECT s.uri, s.model, s.tag, s.score,
       d.tempo_bpm, d.tempo_confidence, d.tempo_alt_bpm, d.key, d.key_confidence, d.camelot,
       d.loudness_lufs, d.loudness_range_lu, d.true_peak_dbtp
FROM tag_scores s
JOIN current_descriptors d ON d.uri = s.uri;

-- The whole current schema of catalogue-tagger.
--
-- A fresh database gets this file in one transaction (`catalogue-tagger db init`); an existing one gets
-- the ordered deltas in migrations/. tests/integration/test_migrations.py proves both give the same
-- catalog. Users query these tables and the tag_scores view directly: change them only by migration.

-- Choices made while the schema was built (e.g. which type holds embeddings), for code and humans.
CREATE TABLE schema_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per tagging run (a CLI `tag` call or a Dagster materialization).
CREATE TABLE runs (
    run_id        bigserial PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    source        text NOT NULL,
    models        text[] NOT NULL DEFAULT '{}',
    partition_key text,
    stats         jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'running'
                  CONSTRAINT runs_status_check CHECK (status IN ('running', 'completed', 'failed'))
);

-- One row per audio object ever discovered. claimed_by_run/claimed_at let concurrent runs share the
-- pending tracks without tagging one twice; a claim older than the run's expiry may be taken over.
CREATE TABLE tracks (
    track_id       bigserial PRIMARY KEY,
    uri            text NOT NULL CONSTRAINT tracks_uri_key UNIQUE,
    etag           text NOT NULL,
    size_bytes     bigint NOT NULL,
    last_modified  timestamptz NOT NULL,
    partition_key  text NOT NULL,
    duration_s     double precision,
    status         text NOT NULL DEFAULT 'pending'
                   CONSTRAINT tracks_status_check CHECK (status IN ('pending', 'tagged', 'failed')),
    error_kind     text,
    error_detail   text,
    attempts       integer NOT NULL DEFAULT 0,
    flags          text[] NOT NULL DEFAULT '{}',
    discovered_at  timestamptz NOT NULL DEFAULT now(),
    tagged_at      timestamptz,
    claimed_by_run bigint REFERENCES runs (run_id) ON DELETE SET NULL,
    claimed_at     timestamptz
);
CREATE INDEX tracks_partition_status_idx ON tracks (partition_key, status);
CREATE INDEX tracks_pending_idx ON tracks (partition_key, track_id) WHERE status = 'pending';

-- A model version: a new weights hash under the same name is a new row; the highest model_id of a
-- name is its current version.
CREATE TABLE models (
    model_id       serial PRIMARY KEY,
    name           text NOT NULL,
    weights_sha256 text NOT NULL,
    labels         text[] NOT NULL,
    kind           text NOT NULL,
    embedding_dim  integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT models_name_weights_sha256_key UNIQUE (name, weights_sha256)
);

-- Track-level scores: mean and max of the segment sigmoids. The two high-volume tables (track_tags,
-- segment_scores) carry no foreign keys: per-row FK checks cost more than the insert itself. The
-- writer inserts only for tracks it has locked, and the statement-level triggers below cascade deletes.
CREATE TABLE track_tags (
    track_id  bigint NOT NULL,
    model_id  integer NOT NULL,
    tag       text NOT NULL,
    score     real NOT NULL,
    score_max real NOT NULL,
    PRIMARY KEY (track_id, model_id, tag)
);
-- "Top N tracks for a tag" walks this index in order and stops after N rows.
CREATE INDEX track_tags_tag_model_score_idx ON track_tags (tag, model_id, score DESC);

-- The taggram, kept only when a run asks for segments.
CREATE TABLE segment_scores (
    track_id      bigint NOT NULL,
    model_id      integer NOT NULL,
    segment_index integer NOT NULL,
    scores        real[] NOT NULL,
    PRIMARY KEY (track_id, model_id, segment_index)
);

-- Deleting tracks or models removes their scores, set-wise (what ON DELETE CASCADE would do per row).
CREATE FUNCTION delete_scores_of_tracks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM track_tags WHERE track_id IN (SELECT track_id FROM gone);
    DELETE FROM segment_scores WHERE track_id IN (SELECT track_id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER tracks_delete_scores AFTER DELETE ON tracks
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_scores_of_tracks();

CREATE FUNCTION delete_scores_of_models() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM track_tags WHERE model_id IN (SELECT model_id FROM gone);
    DELETE FROM segment_scores WHERE model_id IN (SELECT model_id FROM gone);
    RETURN NULL;
END
$$;
CREATE TRIGGER models_delete_scores AFTER DELETE ON models
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION delete_scores_of_models();

-- Every failed attempt, so a later success does not erase why a track once failed.
CREATE TABLE track_failures (
    failure_id bigserial PRIMARY KEY,
    track_id   bigint NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    run_id     bigint REFERENCES runs (run_id) ON DELETE SET NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL,
    detail     text NOT NULL
);
CREATE INDEX track_failures_track_idx ON track_failures (track_id);

-- Embeddings are pgvector `vector` where the extension can be created, else `real[]`; the choice is
-- recorded in schema_info('embedding_type'). Inserts stage embeddings as real[]: pgvector's
-- real[] -> vector assignment cast makes the same INSERT work for both.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS vector;
    EXCEPTION WHEN undefined_file OR feature_not_supported OR insufficient_privilege THEN
        NULL;  -- not installed on this server, or not ours to install: fall back to real[]
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        CREATE TABLE track_embeddings (
            track_id  bigint NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
            model_id  integer NOT NULL REFERENCES models (model_id) ON DELETE CASCADE,
            embedding vector NOT NULL,
            PRIMARY KEY (track_id, model_id)
        );
        INSERT INTO schema_info (key, value) VALUES ('embedding_type', 'vector');
    ELSE
        CREATE TABLE track_embeddings (
            track_id  bigint NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
            model_id  integer NOT NULL REFERENCES models (model_id) ON DELETE CASCADE,
            embedding real[] NOT NULL,
            PRIMARY KEY (track_id, model_id)
        );
        INSERT INTO schema_info (key, value) VALUES ('embedding_type', 'real[]');
    END IF;
END
$$;

-- The current version of every model name.
CREATE VIEW current_models AS
SELECT DISTINCT ON (name) model_id, name, weights_sha256, labels, kind, embedding_dim, created_at
FROM models
ORDER BY name, model_id DESC;

-- Contract view: current tags of every tagged track, latest model version only.
CREATE VIEW tag_scores AS
SELECT t.uri, m.name AS model, tt.tag, tt.score
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id AND t.status = 'tagged'
JOIN current_models m ON m.model_id = tt.model_id;

-- ---------------------------------------------------------------------------------------------------------
-- Descriptors (migration 0003): tempo, key and loudness, measured in the same decode pass as the tags.
-- One row per track and descriptor algorithm version (catalogue_tagger.descriptors.DESCRIPTORS_VERSION);
-- a track's highest version is its current one, as a model's highest model_id is. Keys read 'A minor',
-- camelot is the DJ wheel code ('8A'); any value is NULL where it could not be measured (e.g. silence).
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

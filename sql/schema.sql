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
                  CONSTRAINT runs_status_check CHECK (status IN ('running', 'completed', 'failed', 'abandoned'))
);

-- One row per audio object ever discovered. claimed_by_run/claimed_at let concurrent runs share the
-- pending tracks without tagging one twice; a claim whose run no longer holds its lease (its session advisory
-- lock: the process died) is free at once.
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

-- === 0003 discovery scale ===
-- Claims without a partition read only pending rows, in track_id order, whatever the size of the catalogue.
CREATE INDEX tracks_pending_claim_idx ON tracks (track_id) WHERE status = 'pending';

-- ---------------------------------------------------------------------------------------------------
-- Catalogue intelligence (migration 0004): similar tracks, heads, calibrated yes/no tags, tag families.
-- ---------------------------------------------------------------------------------------------------

-- Embedding arithmetic that reads the same whatever type holds embeddings (pgvector `vector` or
-- `real[]`, see schema_info('embedding_type')): queries call these and never name the type. Where
-- `vector` is used, an HNSW index (cosine) per embedding size of the shipped models (musicnn 200,
-- SampleCNN 512) serves "tracks like this one"; `real[]` databases scan exactly. m 32 / ef_construction 128,
-- not pgvector's 16 / 64: on 100,000 clustered embeddings the defaults left a query or two in a hundred
-- unreachable (recall 0), these did not (benchmarks/intelligence_bench.py --index-builds).
DO $$
BEGIN
    IF (SELECT value FROM schema_info WHERE key = 'embedding_type') = 'vector' THEN
        CREATE INDEX track_embeddings_hnsw_200_idx ON track_embeddings
            USING hnsw ((embedding::vector(200)) vector_cosine_ops) WITH (m = 32, ef_construction = 128)
            WHERE vector_dims(embedding) = 200;
        CREATE INDEX track_embeddings_hnsw_512_idx ON track_embeddings
            USING hnsw ((embedding::vector(512)) vector_cosine_ops) WITH (m = 32, ef_construction = 128)
            WHERE vector_dims(embedding) = 512;
        CREATE FUNCTION embedding_cosine_distance(a vector, b vector) RETURNS double precision
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN a <=> b;
        CREATE FUNCTION embedding_dot(a vector, b real[]) RETURNS double precision
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN -(a <#> CAST(b AS vector));
        CREATE FUNCTION embedding_dims(a vector) RETURNS integer
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN vector_dims(a);
    ELSE
        CREATE FUNCTION embedding_cosine_distance(a real[], b real[]) RETURNS double precision
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN (SELECT 1 - sum(x::float8 * y) / nullif(sqrt(sum(x::float8 * x)) * sqrt(sum(y::float8 * y)), 0)
                    FROM unnest(a, b) AS u (x, y));
        CREATE FUNCTION embedding_dot(a real[], b real[]) RETURNS double precision
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN (SELECT sum(x::float8 * y) FROM unnest(a, b) AS u (x, y));
        CREATE FUNCTION embedding_dims(a real[]) RETURNS integer
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            RETURN cardinality(a);
    END IF;
END
$$;

-- Tracks like the one at query_uri, by cosine distance of the current version of model_name's
-- embeddings, nearest first, the query track excluded. Filters on tags (of the current version of
-- tags_model, default model_name) apply inside the same scan: track i passes when every
-- filter_tags[j] scores within [filter_min[j], filter_max[j]] (NULL bound: open). With `vector`
-- embeddings of 200 or 512 dimensions the HNSW index answers (iterative scan, so filters still
-- yield k rows; hnsw.ef_search at least max(128, 2k)); otherwise, or with exact => true, an exact scan.
CREATE FUNCTION similar_tracks(
    query_uri   text,
    model_name  text DEFAULT 'musicnn-mtt',
    k           integer DEFAULT 10,
    filter_tags text[] DEFAULT '{}',
    filter_min  real[] DEFAULT '{}',
    filter_max  real[] DEFAULT '{}',
    tags_model  text DEFAULT NULL,
    exact       boolean DEFAULT false
) RETURNS TABLE (uri text, model text, distance double precision)
LANGUAGE plpgsql VOLATILE  -- sets hnsw.* for the rest of the calling transaction
AS $$
DECLARE
    mid  integer;
    fmid integer;
    dim  integer;
    qid  bigint;
    filter_sql constant text := $f$
          AND EXISTS (SELECT 1 FROM tracks tr WHERE tr.track_id = e.track_id AND tr.status = 'tagged')
          AND NOT EXISTS (
              SELECT 1 FROM unnest($4, $5, $6) AS f (tag, lo, hi)
              WHERE NOT EXISTS (
                  SELECT 1 FROM track_tags tt
                  WHERE tt.track_id = e.track_id AND tt.model_id = $7 AND tt.tag = f.tag
                    AND tt.score >= coalesce(f.lo, '-infinity') AND tt.score <= coalesce(f.hi, 'infinity')))$f$;
BEGIN
    SELECT m.model_id INTO mid FROM current_models m WHERE m.name = model_name;
    SELECT m.model_id INTO fmid FROM current_models m WHERE m.name = coalesce(tags_model, model_name);
    SELECT t.track_id, embedding_dims(e.embedding) INTO qid, dim
    FROM tracks t JOIN track_embeddings e ON e.track_id = t.track_id AND e.model_id = mid
    WHERE t.uri = query_uri;
    IF qid IS NULL THEN
        RETURN;
    END IF;
    IF NOT exact AND dim IN (200, 512)
       AND (SELECT value FROM schema_info WHERE key = 'embedding_type') = 'vector' THEN
        -- relaxed_order: the index keeps scanning until k rows pass the filters; re-sorted below
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        -- candidate list: at least 128 and 2k (64 left about 1 query in 100 stuck in a local minimum on
        -- 100,000 clustered embeddings), more if the caller set hnsw.ef_search higher
        PERFORM set_config('hnsw.ef_search',
                           greatest(128, 2 * k, current_setting('hnsw.ef_search', true)::integer)::text, true);
        RETURN QUERY EXECUTE format($q$
            WITH q AS (SELECT embedding::vector(%1$s) AS v FROM track_embeddings WHERE track_id = $1 AND model_id = $2),
            nearest AS MATERIALIZED (
                SELECT e.track_id, e.embedding::vector(%1$s) <=> (SELECT v FROM q) AS distance
                FROM track_embeddings e
                WHERE vector_dims(e.embedding) = %1$s AND e.model_id = $2 AND e.track_id <> $1 %2$s
                ORDER BY e.embedding::vector(%1$s) <=> (SELECT v FROM q)
                LIMIT $3)
            SELECT t.uri, $8, n.distance FROM nearest n JOIN tracks t ON t.track_id = n.track_id
            ORDER BY n.distance, t.uri$q$, dim, filter_sql)
            USING qid, mid, k, filter_tags, filter_min, filter_max, fmid, model_name;
    ELSE
        RETURN QUERY EXECUTE format($q$
            WITH q AS (SELECT embedding FROM track_embeddings WHERE track_id = $1 AND model_id = $2),
            nearest AS MATERIALIZED (
                SELECT e.track_id, embedding_cosine_distance(e.embedding, (SELECT embedding FROM q)) AS distance
                FROM track_embeddings e
                WHERE e.model_id = $2 AND e.track_id <> $1 %1$s
                ORDER BY 2
                LIMIT $3)
            SELECT t.uri, $8, n.distance FROM nearest n JOIN tracks t ON t.track_id = n.track_id
            ORDER BY n.distance, t.uri$q$, filter_sql)
            USING qid, mid, k, filter_tags, filter_min, filter_max, fmid, model_name;
    END IF;
END
$$;

-- A head: a model version (kind 'head') trained on one source model version's stored embeddings.
-- Its weights live in head_labels; its scores in track_tags like any model's.
CREATE TABLE heads (
    model_id        integer PRIMARY KEY REFERENCES models (model_id) ON DELETE CASCADE,
    source_model_id integer NOT NULL REFERENCES models (model_id) ON DELETE CASCADE,
    labels_source   text NOT NULL,
    trained_at      timestamptz NOT NULL DEFAULT now()
);

-- One L2-regularised logistic regression per label of a head, on the raw embedding (the training
-- standardisation is folded into weights and bias): score = sigmoid(bias + weights · embedding).
CREATE TABLE head_labels (
    model_id   integer NOT NULL REFERENCES heads (model_id) ON DELETE CASCADE,
    tag        text NOT NULL,
    weights    real[] NOT NULL,
    bias       double precision NOT NULL,
    l2         double precision NOT NULL,
    n_positive integer NOT NULL,
    n_negative integer NOT NULL,
    cv_roc_auc double precision,
    cv_pr_auc  double precision,
    PRIMARY KEY (model_id, tag)
);

-- Calibrated yes/no per model version and tag: `threshold` is the chosen operating point (its
-- precision and recall on the labelled sample); scores in [lower, upper) are ambiguous.
CREATE TABLE tag_thresholds (
    model_id    integer NOT NULL REFERENCES models (model_id) ON DELETE CASCADE,
    tag         text NOT NULL,
    threshold   real NOT NULL,
    lower       real NOT NULL,
    upper       real NOT NULL,
    precision   real NOT NULL,
    recall      real NOT NULL,
    objective   text NOT NULL,
    n_positive  integer NOT NULL,
    n_negative  integer NOT NULL,
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, tag),
    CONSTRAINT tag_thresholds_band_check CHECK (lower <= threshold AND threshold <= upper)
);

-- The shipped labels (MagnaTagATune 50, Million Song Dataset 50) grouped into families, synonyms
-- merged under one canonical tag.
CREATE TABLE tag_vocabulary (
    tag       text PRIMARY KEY,
    canonical text NOT NULL,
    family    text NOT NULL
              CONSTRAINT tag_vocabulary_family_check
              CHECK (family IN ('genre', 'mood', 'instrument', 'vocals', 'era/other'))
);
CREATE INDEX tag_vocabulary_family_idx ON tag_vocabulary (family, canonical);

INSERT INTO tag_vocabulary (tag, canonical, family) VALUES
    -- genre
    ('classical', 'classical', 'genre'), ('classic', 'classical', 'genre'), ('techno', 'techno', 'genre'),
    ('electronic', 'electronic', 'genre'), ('electronica', 'electronic', 'genre'), ('electro', 'electro', 'genre'),
    ('rock', 'rock', 'genre'), ('ambient', 'ambient', 'genre'), ('indian', 'indian', 'genre'),
    ('opera', 'opera', 'genre'), ('pop', 'pop', 'genre'), ('new age', 'new age', 'genre'),
    ('dance', 'dance', 'genre'), ('country', 'country', 'genre'), ('metal', 'metal', 'genre'),
    ('heavy metal', 'metal', 'genre'), ('alternative', 'alternative', 'genre'), ('indie', 'indie', 'genre'),
    ('alternative rock', 'alternative rock', 'genre'), ('jazz', 'jazz', 'genre'),
    ('classic rock', 'classic rock', 'genre'), ('soul', 'soul', 'genre'), ('indie rock', 'indie rock', 'genre'),
    ('folk', 'folk', 'genre'), ('punk', 'punk', 'genre'), ('blues', 'blues', 'genre'),
    ('hard rock', 'hard rock', 'genre'), ('experimental', 'experimental', 'genre'),
    ('Hip-Hop', 'hip-hop', 'genre'), ('easy listening', 'easy listening', 'genre'), ('funk', 'funk', 'genre'),
    ('Progressive rock', 'progressive rock', 'genre'), ('rnb', 'rnb', 'genre'), ('indie pop', 'indie pop', 'genre'),
    ('House', 'house', 'genre'),
    -- mood (including tempo and dynamics)
    ('slow', 'slow', 'mood'), ('fast', 'fast', 'mood'), ('loud', 'loud', 'mood'), ('quiet', 'soft', 'mood'),
    ('soft', 'soft', 'mood'), ('weird', 'weird', 'mood'), ('beautiful', 'beautiful', 'mood'),
    ('chillout', 'chill', 'mood'), ('chill', 'chill', 'mood'), ('Mellow', 'mellow', 'mood'),
    ('party', 'party', 'mood'), ('sexy', 'sexy', 'mood'), ('catchy', 'catchy', 'mood'), ('sad', 'sad', 'mood'),
    ('happy', 'happy', 'mood'),
    -- instrument
    ('guitar', 'guitar', 'instrument'), ('strings', 'strings', 'instrument'), ('drums', 'drums', 'instrument'),
    ('piano', 'piano', 'instrument'), ('violin', 'violin', 'instrument'), ('synth', 'synth', 'instrument'),
    ('harpsichord', 'harpsichord', 'instrument'), ('flute', 'flute', 'instrument'), ('sitar', 'sitar', 'instrument'),
    ('harp', 'harp', 'instrument'), ('cello', 'cello', 'instrument'), ('beat', 'beats', 'instrument'),
    ('beats', 'beats', 'instrument'), ('acoustic', 'acoustic', 'instrument'),
    -- vocals
    ('vocal', 'vocals', 'vocals'), ('vocals', 'vocals', 'vocals'), ('voice', 'vocals', 'vocals'),
    ('singing', 'vocals', 'vocals'), ('female', 'female vocals', 'vocals'), ('woman', 'female vocals', 'vocals'),
    ('female vocal', 'female vocals', 'vocals'), ('female voice', 'female vocals', 'vocals'),
    ('female vocalists', 'female vocals', 'vocals'), ('female vocalist', 'female vocals', 'vocals'),
    ('male', 'male vocals', 'vocals'), ('man', 'male vocals', 'vocals'), ('male vocal', 'male vocals', 'vocals'),
    ('male voice', 'male vocals', 'vocals'), ('male vocalists', 'male vocals', 'vocals'),
    ('no vocals', 'no vocals', 'vocals'), ('no vocal', 'no vocals', 'vocals'), ('no voice', 'no vocals', 'vocals'),
    ('instrumental', 'no vocals', 'vocals'), ('choir', 'choir', 'vocals'), ('choral', 'choir', 'vocals'),
    -- era and other
    ('00s', '00s', 'era/other'), ('90s', '90s', 'era/other'), ('80s', '80s', 'era/other'),
    ('70s', '70s', 'era/other'), ('60s', '60s', 'era/other'), ('oldies', 'oldies', 'era/other'),
    ('solo', 'solo', 'era/other');

-- Contract view: yes | no | ambiguous for every calibrated tag of every tagged track (current model
-- versions): yes at or above `upper`, no below `lower`, ambiguous in between.
CREATE VIEW track_labels AS
SELECT t.uri, m.name AS model, tt.tag,
       CASE WHEN tt.score >= th.upper THEN 'yes'
            WHEN tt.score < th.lower THEN 'no'
            ELSE 'ambiguous' END AS label
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id AND t.status = 'tagged'
JOIN current_models m ON m.model_id = tt.model_id
JOIN tag_thresholds th ON th.model_id = tt.model_id AND th.tag = tt.tag;

-- Contract view: current tags by family, synonyms merged (the strongest of them) under the canonical tag.
CREATE VIEW track_families AS
SELECT t.uri, m.name AS model, v.family, v.canonical AS tag, max(tt.score) AS score
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id AND t.status = 'tagged'
JOIN current_models m ON m.model_id = tt.model_id
JOIN tag_vocabulary v ON v.tag = tt.tag
GROUP BY t.uri, m.name, v.family, v.canonical;

-- ---------------------------------------------------------------------------------------------------------
-- Descriptors (migration 0005): tempo, key and loudness, measured in the same decode pass as the tags.
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

-- === 0006 inference precision ===
-- What a score was computed with: precision is part of a model version, and each run records its backends.
-- A model version is (name, weights_sha256, precision): scores of a bf16 run never mix with fp32 ones in
-- tag_scores. The current version of a name is the one the latest run used (used_at), so switching back to a
-- precision or weights used before makes that version current again.
ALTER TABLE models ADD COLUMN precision text NOT NULL DEFAULT 'fp32';
ALTER TABLE models ADD COLUMN used_at timestamptz NOT NULL DEFAULT now();
UPDATE models SET used_at = created_at;
ALTER TABLE models DROP CONSTRAINT models_name_weights_sha256_key;
ALTER TABLE models ADD CONSTRAINT models_name_weights_sha256_precision_key UNIQUE (name, weights_sha256, precision);
-- backends: model name -> backend that ran it (torch, onnx, tensorrt) and device
ALTER TABLE runs ADD COLUMN precision text;
ALTER TABLE runs ADD COLUMN backends jsonb NOT NULL DEFAULT '{}';

CREATE OR REPLACE VIEW current_models AS
SELECT DISTINCT ON (name) model_id, name, weights_sha256, labels, kind, embedding_dim, created_at, precision, used_at
FROM models
ORDER BY name, used_at DESC, model_id DESC;

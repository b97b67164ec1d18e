-- Every statement catalogue-tagger runs, each under a `-- name: NAME --` header and a one-line
-- description. catalogue_tagger.store.queries splits this file once; binds are `:named`.

-- name: create_schema_migrations --
-- The migration ledger; created by the runner itself, under its advisory lock.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_lock --
-- Serialize migrators across processes until the end of the transaction.
SELECT pg_advisory_xact_lock(:lock_key);

-- name: applied_migrations --
-- Versions already applied, with when.
SELECT version, name, applied_at FROM schema_migrations ORDER BY version;

-- name: record_migration --
-- Remember that a migration ran (in the migration's own transaction).
INSERT INTO schema_migrations (version, name) VALUES (:version, :name);

-- name: user_table_count --
-- How many tables exist outside the system schemas (0 means an empty database).
SELECT count(*) FROM pg_catalog.pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'schema_migrations';

-- name: schema_info --
-- Choices recorded while the schema was built.
SELECT key, value FROM schema_info ORDER BY key;

-- name: truncate_all --
-- Empty every data table (test isolation and demos); the schema and its ledger stay.
TRUNCATE tracks, models, runs, track_tags, track_embeddings, segment_scores, track_failures
RESTART IDENTITY CASCADE;

-- name: upsert_model --
-- Register a model version (name, weights, precision), or find it; either way it becomes the current version of
-- its name (used_at).
INSERT INTO models (name, weights_sha256, labels, kind, embedding_dim, precision)
VALUES (:name, :weights_sha256, :labels, :kind, :embedding_dim, :precision)
ON CONFLICT (name, weights_sha256, precision) DO UPDATE SET used_at = now()
RETURNING model_id;

-- name: create_stage_objects --
-- Per-session staging table for discovered objects.
CREATE TEMP TABLE IF NOT EXISTS stage_objects (
    uri           text NOT NULL,
    etag          text NOT NULL,
    size_bytes    bigint NOT NULL,
    last_modified timestamptz NOT NULL,
    partition_key text NOT NULL
) ON COMMIT DELETE ROWS;

-- name: merge_objects_from_stage --
-- New uris become pending tracks, a changed etag makes a track pending again, unchanged rows are not written.
-- Unchanged objects are dropped before the INSERT: ON CONFLICT would lock (and so dirty) every known row, which
-- at a million objects is most of a rediscovery's cost; ON CONFLICT stays for racing runs. The per-row scalar
-- subquery is one probe of tracks_uri_key per staged object whatever the catalogue's size (an anti-join would
-- be planned as a hash join over all of tracks, for every batch).
WITH upserted AS (
    INSERT INTO tracks AS t (uri, etag, size_bytes, last_modified, partition_key)
    SELECT s.uri, s.etag, s.size_bytes, s.last_modified, s.partition_key
    FROM stage_objects s
    WHERE s.etag IS DISTINCT FROM (SELECT k.etag FROM tracks k WHERE k.uri = s.uri)
    ORDER BY s.uri  -- one lock order for every writer: concurrent discoveries cannot deadlock
    ON CONFLICT (uri) DO UPDATE
    SET etag = EXCLUDED.etag,
        size_bytes = EXCLUDED.size_bytes,
        last_modified = EXCLUDED.last_modified,
        partition_key = EXCLUDED.partition_key,
        status = 'pending',
        error_kind = NULL,
        error_detail = NULL,
        claimed_by_run = NULL,
        claimed_at = NULL
    WHERE t.etag IS DISTINCT FROM EXCLUDED.etag
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS new,
       count(*) FILTER (WHERE NOT inserted) AS changed
FROM upserted;

-- name: mark_pending --
-- Make tracks pending again (re-tagging); NULL filters match every track. The source filter (a source's URI)
-- keeps to the tracks under it: a database may hold several sources' tracks.
UPDATE tracks
SET status = 'pending', claimed_by_run = NULL, claimed_at = NULL
WHERE (CAST(:uris AS text[]) IS NULL OR uri = ANY (CAST(:uris AS text[])))
  AND (CAST(:partition_key AS text) IS NULL OR partition_key = CAST(:partition_key AS text))
  AND (CAST(:source AS text) IS NULL OR starts_with(uri, CAST(:source AS text)))
  AND (status <> 'pending' OR claimed_by_run IS NOT NULL);

-- name: claim_pending --
-- Hand up to :limit pending tracks to a run; SKIP LOCKED plus the claim columns keep concurrent runs apart.
-- A claim counts only while its run holds its lease (session advisory lock :lease_class, run_id): a killed
-- run's claims are free at once, a live run keeps its own. The source filter (a source's URI, NULL for any)
-- keeps a run to the tracks it can open: another source's pending tracks in one database are not its to fail.
WITH live AS (
    SELECT CAST(objid AS bigint) AS run_id FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = CAST(:lease_class AS oid)
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), candidates AS (
    SELECT track_id FROM tracks
    WHERE status = 'pending'
      AND (CAST(:partition_key AS text) IS NULL OR partition_key = CAST(:partition_key AS text))
      AND (CAST(:source AS text) IS NULL OR starts_with(uri, CAST(:source AS text)))
      AND (claimed_by_run IS NULL OR claimed_by_run NOT IN (SELECT run_id FROM live))
    ORDER BY track_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE tracks t
SET claimed_by_run = :run_id, claimed_at = now()
FROM candidates c
WHERE t.track_id = c.track_id
RETURNING t.track_id, t.uri, t.etag;

-- name: create_stage_results --
-- Per-session staging tables for one batch of results: tracks, per-model scores, embeddings, segments.
CREATE TEMP TABLE IF NOT EXISTS stage_tracks (
    track_id   bigint NOT NULL,
    duration_s double precision NOT NULL,
    flags      text[] NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_scores (
    track_id   bigint NOT NULL,
    model_id   integer NOT NULL,
    n_segments integer NOT NULL,
    score      real[] NOT NULL,
    score_max  real[] NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_embeddings (
    track_id  bigint NOT NULL,
    model_id  integer NOT NULL,
    embedding real[] NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_segments (
    track_id      bigint NOT NULL,
    model_id      integer NOT NULL,
    segment_index integer NOT NULL,
    scores        real[] NOT NULL
) ON COMMIT DELETE ROWS;

-- name: lock_staged_tracks --
-- Lock the batch's tracks in track_id order first, so concurrent writers of overlapping batches queue
-- instead of deadlocking on each other's tag rows.
SELECT track_id FROM tracks
WHERE track_id IN (SELECT track_id FROM stage_tracks)
ORDER BY track_id
FOR NO KEY UPDATE;

-- name: lock_tracks --
-- Lock the given tracks in track_id order (see lock_staged_tracks).
SELECT track_id FROM tracks
WHERE track_id = ANY (CAST(:track_ids AS bigint[]))
ORDER BY track_id
FOR NO KEY UPDATE;

-- name: merge_tags_from_stage --
-- Tags of (track, model) pairs that already have tags: upsert, leaving identical rows unwritten. One tag
-- row per label of the model (labels from the models row, scores in label order); the join on tracks
-- stands in for a foreign key (those rows are locked by lock_staged_tracks).
INSERT INTO track_tags AS tt (track_id, model_id, tag, score, score_max)
SELECT s.track_id, s.model_id, l.tag, l.score, l.score_max
FROM stage_scores s
JOIN tracks t ON t.track_id = s.track_id
JOIN models m ON m.model_id = s.model_id
CROSS JOIN LATERAL unnest(m.labels, s.score, s.score_max) AS l (tag, score, score_max)
WHERE l.tag IS NOT NULL
  AND EXISTS (SELECT 1 FROM track_tags x WHERE x.track_id = s.track_id AND x.model_id = s.model_id)
ON CONFLICT (track_id, model_id, tag) DO UPDATE
SET score = EXCLUDED.score, score_max = EXCLUDED.score_max
WHERE (tt.score, tt.score_max) IS DISTINCT FROM (EXCLUDED.score, EXCLUDED.score_max);

-- name: insert_new_tags_from_stage --
-- Tags of (track, model) pairs seen for the first time: a plain INSERT, some 40% cheaper than the
-- upsert. Safe because the pair's track is locked (lock_staged_tracks); run after merge_tags_from_stage.
INSERT INTO track_tags (track_id, model_id, tag, score, score_max)
SELECT s.track_id, s.model_id, l.tag, l.score, l.score_max
FROM stage_scores s
JOIN tracks t ON t.track_id = s.track_id
JOIN models m ON m.model_id = s.model_id
CROSS JOIN LATERAL unnest(m.labels, s.score, s.score_max) AS l (tag, score, score_max)
WHERE l.tag IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM track_tags x WHERE x.track_id = s.track_id AND x.model_id = s.model_id);

-- name: merge_embeddings_from_stage --
-- Embeddings; the real[] -> vector assignment cast applies where the column is pgvector.
INSERT INTO track_embeddings AS te (track_id, model_id, embedding)
SELECT track_id, model_id, embedding FROM stage_embeddings
ON CONFLICT (track_id, model_id) DO UPDATE
SET embedding = EXCLUDED.embedding
WHERE te.embedding IS DISTINCT FROM EXCLUDED.embedding;

-- name: merge_segments_from_stage --
-- The taggram rows of each (track, model) in the batch.
INSERT INTO segment_scores AS ss (track_id, model_id, segment_index, scores)
SELECT s.track_id, s.model_id, s.segment_index, s.scores
FROM stage_segments s
JOIN tracks t ON t.track_id = s.track_id
JOIN models m ON m.model_id = s.model_id
ON CONFLICT (track_id, model_id, segment_index) DO UPDATE
SET scores = EXCLUDED.scores
WHERE ss.scores IS DISTINCT FROM EXCLUDED.scores;

-- name: delete_stale_segments --
-- Segments beyond a track's new segment count (the audio got shorter) are dropped.
DELETE FROM segment_scores ss
USING stage_scores s
WHERE ss.track_id = s.track_id AND ss.model_id = s.model_id AND ss.segment_index >= s.n_segments;

-- name: mark_tagged_from_stage --
-- Tracks of the batch become tagged; a track already in exactly that state is not written.
UPDATE tracks t
SET status = 'tagged',
    tagged_at = now(),
    duration_s = s.duration_s,
    flags = s.flags,
    error_kind = NULL,
    error_detail = NULL,
    attempts = t.attempts + 1,
    claimed_by_run = NULL,
    claimed_at = NULL
FROM stage_tracks s
WHERE t.track_id = s.track_id
  AND (t.status, t.duration_s, t.flags, t.error_kind, t.error_detail, t.claimed_by_run)
      IS DISTINCT FROM ('tagged', s.duration_s, s.flags, NULL, NULL, NULL);

-- name: record_failures --
-- Tracks that failed: status, last error, one more attempt, and a history row each.
WITH f AS (
    SELECT * FROM unnest(CAST(:track_ids AS bigint[]), CAST(:kinds AS text[]), CAST(:details AS text[]))
        AS f (track_id, kind, detail)
), updated AS (
    UPDATE tracks t
    SET status = 'failed', error_kind = f.kind, error_detail = f.detail, attempts = t.attempts + 1,
        claimed_by_run = NULL, claimed_at = NULL
    FROM f
    WHERE t.track_id = f.track_id
    RETURNING t.track_id
)
INSERT INTO track_failures (track_id, run_id, kind, detail)
SELECT f.track_id, :run_id, f.kind, f.detail FROM f
WHERE f.track_id IN (SELECT track_id FROM updated);

-- name: start_run --
-- Open a run.
INSERT INTO runs (source, models, partition_key, precision, backends)
VALUES (:source, :models, :partition_key, :precision, CAST(:backends AS jsonb))
RETURNING run_id;

-- name: take_run_lease --
-- The run's lease: a session advisory lock held by a connection the run keeps open until it ends. Never waits:
-- false when another session holds it.
SELECT pg_try_advisory_lock(CAST(:lease_class AS int4), CAST(:run_id AS int4));

-- name: release_run_lease --
-- Give the lease back (a session that ends gives it back by itself).
SELECT pg_advisory_unlock(CAST(:lease_class AS int4), CAST(:run_id AS int4));

-- name: abandon_dead_runs --
-- Close the rows of runs still 'running' whose lease is gone (their process died), and free their claims.
WITH live AS (
    SELECT CAST(objid AS bigint) AS run_id FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = CAST(:lease_class AS oid)
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), dead AS (
    UPDATE runs SET status = 'abandoned', finished_at = now(),
                    stats = stats || jsonb_build_object('abandoned_by_run', CAST(:run_id AS bigint))
    WHERE status = 'running' AND run_id <> :run_id AND run_id NOT IN (SELECT run_id FROM live)
    RETURNING run_id
), released AS (
    UPDATE tracks SET claimed_by_run = NULL, claimed_at = NULL
    WHERE claimed_by_run IN (SELECT run_id FROM dead) AND status = 'pending'
)
SELECT run_id FROM dead ORDER BY run_id;

-- name: finish_run --
-- Close a run with its counts; its unfinished claims are released.
WITH released AS (
    UPDATE tracks SET claimed_by_run = NULL, claimed_at = NULL WHERE claimed_by_run = :run_id
)
UPDATE runs SET finished_at = now(), stats = CAST(:stats AS jsonb), status = :status WHERE run_id = :run_id;

-- name: partition_status --
-- Track counts of a partition by status; the source filter (a source's URI, NULL for all) keeps to its tracks.
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'tagged') AS tagged,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending') AS pending
FROM tracks
WHERE partition_key = :partition_key
  AND (CAST(:source AS text) IS NULL OR starts_with(uri, CAST(:source AS text)));

-- name: tags_for_track --
-- Current tags of one track (latest version of each model), best first.
SELECT m.name AS model, tt.tag, tt.score, tt.score_max
FROM tracks t
JOIN track_tags tt ON tt.track_id = t.track_id
JOIN current_models m ON m.model_id = tt.model_id
WHERE t.uri = :uri AND (CAST(:model AS text) IS NULL OR m.name = CAST(:model AS text))
ORDER BY m.name, tt.score DESC, tt.tag;

-- name: top_tracks --
-- Best-scoring tagged tracks for a tag: an ordered index walk per current model, merged.
SELECT t.uri, m.name AS model, x.score
FROM current_models m
CROSS JOIN LATERAL (
    SELECT tt.track_id, tt.score
    FROM track_tags tt
    JOIN tracks tr ON tr.track_id = tt.track_id AND tr.status = 'tagged'
    WHERE tt.tag = :tag AND tt.model_id = m.model_id
    ORDER BY tt.score DESC
    LIMIT :top
) x
JOIN tracks t ON t.track_id = x.track_id
WHERE CAST(:model AS text) IS NULL OR m.name = CAST(:model AS text)
ORDER BY x.score DESC, t.uri
LIMIT :top;

-- name: failures_by_kind --
-- How many tracks currently stand failed, by error kind.
SELECT error_kind AS kind, count(*) AS n
FROM tracks WHERE status = 'failed'
GROUP BY error_kind ORDER BY n DESC, kind;

-- name: scores_out_of_range --
-- Tag rows of a partition whose scores are not probabilities, or whose mean exceeds its max.
SELECT count(*)
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id
WHERE t.partition_key = :partition_key
  AND (tt.score NOT BETWEEN 0 AND 1
       OR tt.score_max NOT BETWEEN 0 AND 1
       OR tt.score > tt.score_max + 1e-6);

-- name: failure_history --
-- Every recorded failure of one track, oldest first.
SELECT f.run_id, f.failed_at, f.kind, f.detail
FROM track_failures f JOIN tracks t ON t.track_id = f.track_id
WHERE t.uri = :uri
ORDER BY f.failure_id;

-- ---------------------------------------------------------------------------------------------------
-- Catalogue intelligence: similar tracks, heads, calibrated thresholds, tag families, report figures.
-- ---------------------------------------------------------------------------------------------------

-- name: current_model --
-- The current version of a model name (NULL row set if unknown).
SELECT model_id, name, weights_sha256, labels, kind, embedding_dim FROM current_models WHERE name = :name;

-- name: track_embedding_state --
-- Whether a track exists, its status, and whether it has an embedding of the given model version.
SELECT t.track_id, t.status, (e.track_id IS NOT NULL) AS has_embedding
FROM tracks t
LEFT JOIN track_embeddings e ON e.track_id = t.track_id AND e.model_id = :model_id
WHERE t.uri = :uri;

-- name: similar_tracks --
-- Tracks nearest to one track by embedding (see the similar_tracks function in schema.sql).
SELECT uri, model, distance
FROM similar_tracks(CAST(:uri AS text), CAST(:model AS text), CAST(:top AS integer),
                    CAST(:filter_tags AS text[]), CAST(:filter_min AS real[]), CAST(:filter_max AS real[]),
                    CAST(:tags_model AS text), CAST(:exact AS boolean));

-- name: embeddings_for_uris --
-- Stored embeddings of one model version for the given tagged tracks, as real[] whatever the column type.
SELECT t.uri, CAST(e.embedding AS real[]) AS embedding
FROM tracks t
JOIN track_embeddings e ON e.track_id = t.track_id
WHERE e.model_id = :model_id AND t.status = 'tagged' AND t.uri = ANY (CAST(:uris AS text[]))
ORDER BY t.uri;

-- name: scores_for_uris --
-- Stored track scores of one model version for the given tracks and tags.
SELECT t.uri, tt.tag, tt.score
FROM tracks t
JOIN track_tags tt ON tt.track_id = t.track_id
WHERE tt.model_id = :model_id AND t.status = 'tagged'
  AND t.uri = ANY (CAST(:uris AS text[])) AND tt.tag = ANY (CAST(:tags AS text[]));

-- name: insert_head --
-- Record a head version's source model; a head version already recorded is left as it is.
INSERT INTO heads (model_id, source_model_id, labels_source)
VALUES (:model_id, :source_model_id, :labels_source)
ON CONFLICT (model_id) DO NOTHING;

-- name: insert_head_label --
-- One label's logistic regression of a head version (identical weights give the same version).
INSERT INTO head_labels (model_id, tag, weights, bias, l2, n_positive, n_negative, cv_roc_auc, cv_pr_auc)
VALUES (:model_id, :tag, CAST(:weights AS real[]), :bias, :l2, :n_positive, :n_negative, :cv_roc_auc, :cv_pr_auc)
ON CONFLICT (model_id, tag) DO NOTHING;

-- name: heads_to_score --
-- One head version (:head_id) or every current head (NULL): its labels (score order), source model and size.
SELECT h.model_id, h.source_model_id, m.labels, s.embedding_dim
FROM heads h
JOIN models m ON m.model_id = h.model_id
JOIN models s ON s.model_id = h.source_model_id
WHERE (CAST(:head_id AS integer) IS NULL AND h.model_id IN (SELECT model_id FROM current_models WHERE kind = 'head'))
   OR h.model_id = CAST(:head_id AS integer)
ORDER BY h.model_id;

-- name: head_label_weights --
-- The regression of each label of a head version.
SELECT tag, weights, bias FROM head_labels WHERE model_id = :model_id;

-- name: embeddings_to_score --
-- A page (track_id > :after, :page rows) of the stored embeddings a head scores: every tagged track's
-- (:run_id NULL), or those a run tagged plus those the head never scored. Read by binary COPY.
SELECT e.track_id, CAST(e.embedding AS real[])
FROM track_embeddings e
JOIN tracks t ON t.track_id = e.track_id AND t.status = 'tagged'
WHERE e.model_id = CAST(:source_model_id AS integer)
  AND embedding_dims(e.embedding) = CAST(:dim AS integer)
  AND e.track_id > CAST(:after AS bigint)
  AND (CAST(:run_id AS bigint) IS NULL
       OR t.tagged_at >= (SELECT started_at FROM runs WHERE run_id = CAST(:run_id AS bigint))
       OR NOT EXISTS (SELECT 1 FROM track_tags x
                      WHERE x.track_id = e.track_id AND x.model_id = CAST(:head_id AS integer)))
ORDER BY e.track_id
LIMIT CAST(:page AS integer);

-- name: create_stage_head_scores --
-- Per-session staging table for head scores (one row per track, scores in the head's label order).
CREATE TEMP TABLE IF NOT EXISTS stage_head_scores (
    track_id bigint NOT NULL,
    model_id integer NOT NULL,
    score    real[] NOT NULL
) ON COMMIT DELETE ROWS;

-- name: merge_head_scores_from_stage --
-- Head scores into track_tags (score_max = score); unchanged rows are not rewritten. Returns rows written.
WITH written AS (
    INSERT INTO track_tags AS tt (track_id, model_id, tag, score, score_max)
    SELECT s.track_id, s.model_id, l.tag, l.score, l.score
    FROM stage_head_scores s
    JOIN tracks t ON t.track_id = s.track_id AND t.status = 'tagged'
    JOIN models m ON m.model_id = s.model_id
    CROSS JOIN LATERAL unnest(m.labels, s.score) AS l (tag, score)
    ON CONFLICT (track_id, model_id, tag) DO UPDATE
    SET score = EXCLUDED.score, score_max = EXCLUDED.score_max
    WHERE (tt.score, tt.score_max) IS DISTINCT FROM (EXCLUDED.score, EXCLUDED.score_max)
    RETURNING 1
)
SELECT count(*) FROM written;

-- name: list_heads --
-- Every head version with its source model, labels and cross-validated figures, newest first.
SELECT m.model_id, m.name, m.weights_sha256, m.created_at, s.name AS source_model, h.labels_source,
       (m.model_id IN (SELECT model_id FROM current_models)) AS current,
       l.tag, l.n_positive, l.n_negative, l.cv_roc_auc, l.cv_pr_auc, l.l2
FROM heads h
JOIN models m ON m.model_id = h.model_id
JOIN models s ON s.model_id = h.source_model_id
JOIN head_labels l ON l.model_id = h.model_id
ORDER BY m.model_id DESC, l.tag;

-- name: upsert_tag_threshold --
-- The calibrated operating point of one (model version, tag); recalibrating replaces it.
INSERT INTO tag_thresholds AS th (model_id, tag, threshold, lower, upper, precision, recall, objective,
                                  n_positive, n_negative, source)
VALUES (:model_id, :tag, :threshold, :lower, :upper, :precision, :recall, :objective,
        :n_positive, :n_negative, :source)
ON CONFLICT (model_id, tag) DO UPDATE
SET threshold = EXCLUDED.threshold, lower = EXCLUDED.lower, upper = EXCLUDED.upper,
    precision = EXCLUDED.precision, recall = EXCLUDED.recall, objective = EXCLUDED.objective,
    n_positive = EXCLUDED.n_positive, n_negative = EXCLUDED.n_negative, source = EXCLUDED.source,
    created_at = now();

-- name: labels_for_track --
-- Calibrated yes/no/ambiguous labels of one track (current model versions).
SELECT model, tag, label FROM track_labels WHERE uri = :uri ORDER BY model, tag;

-- name: tag_vocabulary --
-- The family and canonical tag of every shipped label.
SELECT tag, canonical, family FROM tag_vocabulary ORDER BY family, canonical, tag;

-- name: available_canonical_tags --
-- Canonical tags that the current models (or one) can score, with their family.
SELECT DISTINCT v.canonical, v.family
FROM current_models m
CROSS JOIN LATERAL unnest(m.labels) AS l (tag)
JOIN tag_vocabulary v ON v.tag = l.tag
WHERE CAST(:model AS text) IS NULL OR m.name = CAST(:model AS text)
ORDER BY v.family, v.canonical;

-- name: top_tracks_by_family --
-- Tracks by their strongest tag of a family (synonyms merged), best first.
SELECT uri, model, tag, score
FROM (
    SELECT DISTINCT ON (uri, model) uri, model, tag, score
    FROM track_families
    WHERE family = :family AND (CAST(:model AS text) IS NULL OR model = CAST(:model AS text))
    ORDER BY uri, model, score DESC, tag
) best
ORDER BY score DESC, uri, model
LIMIT :top;

-- name: rank_tracks_by_terms --
-- Tracks ranked by the geometric mean, over query terms, of each term's best matching canonical tag
-- (any of its synonyms, any current model or one); a track must score every term.
WITH terms AS (
    SELECT DISTINCT term, canonical FROM unnest(CAST(:terms AS integer[]), CAST(:canonicals AS text[])) AS x (term, canonical)
), per_term AS (
    SELECT tt.track_id, x.term, max(tt.score) AS score
    FROM terms x
    JOIN tag_vocabulary v ON v.canonical = x.canonical
    JOIN current_models m ON CAST(:model AS text) IS NULL OR m.name = CAST(:model AS text)
    JOIN track_tags tt ON tt.tag = v.tag AND tt.model_id = m.model_id
    GROUP BY tt.track_id, x.term
)
SELECT t.uri, exp(avg(ln(greatest(p.score, 1e-6)))) AS score, array_agg(p.score ORDER BY p.term) AS term_scores
FROM per_term p
JOIN tracks t ON t.track_id = p.track_id AND t.status = 'tagged'
GROUP BY t.uri
HAVING count(*) = (SELECT count(DISTINCT term) FROM terms)
ORDER BY score DESC, t.uri
LIMIT :top;

-- name: catalogue_counts --
-- Tracks by status, and hours of tagged audio.
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'tagged') AS tagged,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       coalesce(sum(duration_s) FILTER (WHERE status = 'tagged'), 0) / 3600 AS tagged_hours
FROM tracks;

-- name: tag_prevalence --
-- Per current model and tag: mean score over tagged tracks and the share of tracks scoring >= :cut.
SELECT m.name AS model, tt.tag, avg(tt.score) AS mean_score,
       avg(CASE WHEN tt.score >= :cut THEN 1.0 ELSE 0.0 END) AS share_above
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id AND t.status = 'tagged'
JOIN current_models m ON m.model_id = tt.model_id
GROUP BY m.name, tt.tag
ORDER BY m.name, mean_score DESC;

-- name: score_histogram --
-- Per current model: how many tag scores fall in each of :bins equal-width bins of [0, 1].
SELECT m.name AS model, least(width_bucket(tt.score, 0, 1, :bins), :bins) AS bin, count(*) AS n
FROM track_tags tt
JOIN tracks t ON t.track_id = tt.track_id AND t.status = 'tagged'
JOIN current_models m ON m.model_id = tt.model_id
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: run_history --
-- Every run with its counts (stats as the run recorded them), oldest first.
SELECT run_id, started_at, finished_at, status, models, stats FROM runs ORDER BY run_id;

-- ---------------------------------------------------------------------------------------------------------
-- Descriptors (tempo, key, loudness; migration 0005)

-- name: create_stage_descriptors --
-- Per-session staging table for the descriptors of one batch of results.
CREATE TEMP TABLE IF NOT EXISTS stage_descriptors (
    track_id             bigint NOT NULL,
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
    true_peak_dbtp       real
) ON COMMIT DELETE ROWS;

-- name: merge_descriptors_from_stage --
-- Descriptors of the batch's tracks (locked by lock_staged_tracks): upsert, leaving identical rows unwritten.
INSERT INTO track_descriptors AS td (track_id, version, tempo_bpm, tempo_confidence, tempo_alt_bpm,
    tempo_alt_confidence, key, key_confidence, key_alt, key_alt_confidence, camelot, loudness_lufs,
    loudness_range_lu, true_peak_dbtp)
SELECT s.track_id, s.version, s.tempo_bpm, s.tempo_confidence, s.tempo_alt_bpm, s.tempo_alt_confidence, s.key,
       s.key_confidence, s.key_alt, s.key_alt_confidence, s.camelot, s.loudness_lufs, s.loudness_range_lu,
       s.true_peak_dbtp
FROM stage_descriptors s
JOIN tracks t ON t.track_id = s.track_id
ON CONFLICT (track_id, version) DO UPDATE
SET tempo_bpm = EXCLUDED.tempo_bpm, tempo_confidence = EXCLUDED.tempo_confidence,
    tempo_alt_bpm = EXCLUDED.tempo_alt_bpm, tempo_alt_confidence = EXCLUDED.tempo_alt_confidence,
    key = EXCLUDED.key, key_confidence = EXCLUDED.key_confidence, key_alt = EXCLUDED.key_alt,
    key_alt_confidence = EXCLUDED.key_alt_confidence, camelot = EXCLUDED.camelot,
    loudness_lufs = EXCLUDED.loudness_lufs, loudness_range_lu = EXCLUDED.loudness_range_lu,
    true_peak_dbtp = EXCLUDED.true_peak_dbtp
WHERE (td.tempo_bpm, td.tempo_confidence, td.tempo_alt_bpm, td.tempo_alt_confidence, td.key, td.key_confidence,
       td.key_alt, td.key_alt_confidence, td.camelot, td.loudness_lufs, td.loudness_range_lu, td.true_peak_dbtp)
      IS DISTINCT FROM
      (EXCLUDED.tempo_bpm, EXCLUDED.tempo_confidence, EXCLUDED.tempo_alt_bpm, EXCLUDED.tempo_alt_confidence,
       EXCLUDED.key, EXCLUDED.key_confidence, EXCLUDED.key_alt, EXCLUDED.key_alt_confidence, EXCLUDED.camelot,
       EXCLUDED.loudness_lufs, EXCLUDED.loudness_range_lu, EXCLUDED.true_peak_dbtp);

-- name: descriptors_for_track --
-- The current descriptors of one track (no row: not measured yet).
SELECT * FROM current_descriptors WHERE uri = :uri;

-- name: select_tracks_by_descriptors --
-- Tagged tracks whose current descriptors pass every filter given (a NULL parameter filters nothing); with a
-- tag, only tracks scoring at least :min_score for it, best first (its best current model, or :model).
SELECT d.uri, d.tempo_bpm, d.tempo_alt_bpm, d.key, d.camelot, d.loudness_lufs, d.loudness_range_lu,
       d.true_peak_dbtp, s.model, s.score
FROM current_descriptors d
LEFT JOIN LATERAL (
    SELECT ts.model, ts.score FROM tag_scores ts
    WHERE ts.uri = d.uri AND ts.tag = CAST(:tag AS text)
      AND (CAST(:model AS text) IS NULL OR ts.model = CAST(:model AS text))
    ORDER BY ts.score DESC LIMIT 1
) s ON true
WHERE (CAST(:min_bpm AS real) IS NULL OR d.tempo_bpm >= CAST(:min_bpm AS real))
  AND (CAST(:max_bpm AS real) IS NULL OR d.tempo_bpm <= CAST(:max_bpm AS real))
  AND (CAST(:keys AS text[]) IS NULL OR d.key = ANY (CAST(:keys AS text[])))
  AND (CAST(:min_lufs AS real) IS NULL OR d.loudness_lufs >= CAST(:min_lufs AS real))
  AND (CAST(:max_lufs AS real) IS NULL OR d.loudness_lufs <= CAST(:max_lufs AS real))
  AND (CAST(:tag AS text) IS NULL OR s.score >= CAST(:min_score AS real))
ORDER BY s.score DESC NULLS LAST, d.uri
LIMIT :top;

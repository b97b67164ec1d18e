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

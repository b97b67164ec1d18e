-- Structural dump of the public schema, compared between a schema.sql database and a migrated one.
-- Each query returns comparable rows; order and OIDs never matter.

-- name: columns --
SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default, character_maximum_length
FROM information_schema.columns
WHERE table_schema = 'public'
ORDER BY table_name, column_name;

-- name: constraints --
SELECT conrelid::regclass::text AS table_name, conname, contype, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2;

-- name: indexes --
SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2;

-- name: views --
SELECT viewname, pg_get_viewdef(format('%I.%I', schemaname, viewname)::regclass) AS definition
FROM pg_views WHERE schemaname = 'public' ORDER BY 1;

-- name: sequences --
SELECT sequence_name, data_type, start_value, increment FROM information_schema.sequences
WHERE sequence_schema = 'public' ORDER BY 1;

-- name: functions --
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY 1, 2;

-- name: triggers --
SELECT tgrelid::regclass::text AS table_name, tgname, pg_get_triggerdef(oid) AS definition
FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2;

-- name: extensions --
SELECT extname FROM pg_extension ORDER BY 1;

-- name: schema_info --
SELECT key, value FROM schema_info ORDER BY 1;

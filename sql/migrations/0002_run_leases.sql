-- A run holds a session advisory lock (classid 1667331175 ("catg"), objid run_id) while it lives; a claim whose run
-- holds no lock is free at once, and the next run closes a dead run's row as 'abandoned'.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN ('running', 'completed', 'failed', 'abandoned'));

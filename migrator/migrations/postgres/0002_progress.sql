-- Progress of a running job, written by its worker with each heartbeat (fenced like every write
-- of the holder) so that `status` on any host can show how far each job is. JSON as TEXT:
-- {"unit":"seconds"|"bytes","done":N,"total":N|null}. Cleared by the next claim.
ALTER TABLE job ADD COLUMN progress TEXT;

-- How the picture of a job's placed output was captured (the same as the SQLite migration
-- 0004): 'real_time' or 'fast', from bbb-record's done event; NULL for a video download, an
-- import, and outputs whose mode is not known (placed before this column, or by a worker that
-- died between placing the file and closing the job). Cleared with the output on a redo.
ALTER TABLE job ADD COLUMN recording_mode TEXT CHECK (recording_mode IN ('real_time', 'fast'));

-- How the picture of a job's placed output was captured, from bbb-record's done event:
-- 'real_time' (the player played and the screen was grabbed) or 'fast' (`[recorder] fast`: the
-- paused player stepped from one picture change to the next). NULL when nothing was recorded
-- (a video download, an import) or it is not known (outputs placed before this column, a file
-- whose worker died between placing it and closing the job). Written by `complete`, cleared
-- with the output when the job is redone. Why fast mode was asked for and not used is kept in
-- the output's JSON (`fast_fallback`).
ALTER TABLE job ADD COLUMN recording_mode TEXT CHECK (recording_mode IN ('real_time', 'fast'));

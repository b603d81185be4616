-- What `serve` shows beside the counts (the same as the SQLite migration 0003).
-- The phase of the last failure (fetch, download, record, place, import...), kept apart from the
-- error text so that failures group by it.
ALTER TABLE job ADD COLUMN error_phase TEXT;
-- A person looked at the output and found it wrong: the job waits for `retry --flagged` (after
-- the cause is fixed), which redoes it. Cleared by that redo.
ALTER TABLE job ADD COLUMN flagged_at TIMESTAMPTZ;
ALTER TABLE job ADD COLUMN flag_note TEXT;
-- The contact sheet of a job's placed output: a JPEG of frames and its layout (JSON, see
-- bbb_common::recorder_protocol::ContactSheet). In the ledger rather than in a directory so that
-- `serve` on any host sees the sheets every host made, and never inside the claim directory.
-- Written under the job's lease before it completes; dropped when the job is redone.
CREATE TABLE contact_sheet (
  job_id  BIGINT      PRIMARY KEY REFERENCES job(id),
  made_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  layout  TEXT        NOT NULL,
  jpeg    BYTEA       NOT NULL
);

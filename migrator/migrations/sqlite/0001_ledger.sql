-- The job ledger (see migrator/design/ledger.md). Times are unix milliseconds from the store's
-- clock; JSON is TEXT.
CREATE TABLE job (
  id               INTEGER PRIMARY KEY,
  recording_id     TEXT    NOT NULL,
  target           TEXT    NOT NULL,
  state            TEXT    NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending','running','succeeded','dead','cancelled')),
  priority         INTEGER NOT NULL DEFAULT 0,
  attempts         INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL DEFAULT 5,
  run_after        INTEGER NOT NULL,
  lease_owner      TEXT,
  lease_epoch      INTEGER NOT NULL DEFAULT 0,
  lease_expires_at INTEGER,
  heartbeat_at     INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  payload          TEXT    NOT NULL,
  checkpoint       TEXT,
  last_error       TEXT,
  error_class      TEXT,
  output_path      TEXT,
  output           TEXT,
  output_bytes     INTEGER,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  finished_at      INTEGER,
  UNIQUE (recording_id, target)
);
CREATE INDEX job_ready  ON job (priority DESC, run_after, id) WHERE state = 'pending';
CREATE INDEX job_leased ON job (lease_expires_at) WHERE state = 'running';
-- One owner per placed file name: the reservation that makes collision suffixes race-free.
CREATE UNIQUE INDEX job_output_path ON job (output_path) WHERE output_path IS NOT NULL;

CREATE TABLE job_attempt (
  job_id     INTEGER NOT NULL REFERENCES job(id),
  epoch      INTEGER NOT NULL,
  worker     TEXT    NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at   INTEGER,
  outcome    TEXT,
  error      TEXT,
  PRIMARY KEY (job_id, epoch)
);

-- The job ledger on PostgreSQL (see migrator/design/ledger.md): the same columns as the SQLite
-- schema, with times as TIMESTAMPTZ from the database clock (now()), the only clock the hosts
-- share. JSON stays TEXT so both backends hand the same strings to the worker.
CREATE TABLE job (
  id               BIGSERIAL PRIMARY KEY,
  recording_id     TEXT        NOT NULL,
  target           TEXT        NOT NULL,
  state            TEXT        NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending','running','succeeded','dead','cancelled')),
  priority         INTEGER     NOT NULL DEFAULT 0,
  attempts         BIGINT      NOT NULL DEFAULT 0,
  max_attempts     BIGINT      NOT NULL DEFAULT 5,
  run_after        TIMESTAMPTZ NOT NULL DEFAULT now(),
  lease_owner      TEXT,
  lease_epoch      BIGINT      NOT NULL DEFAULT 0,
  lease_expires_at TIMESTAMPTZ,
  heartbeat_at     TIMESTAMPTZ,
  cancel_requested BOOLEAN     NOT NULL DEFAULT false,
  payload          TEXT        NOT NULL,
  checkpoint       TEXT,
  last_error       TEXT,
  error_class      TEXT,
  output_path      TEXT,
  output           TEXT,
  output_bytes     BIGINT,
  created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
  finished_at      TIMESTAMPTZ,
  UNIQUE (recording_id, target)
);
CREATE INDEX job_ready  ON job (priority DESC, run_after, id) WHERE state = 'pending';
CREATE INDEX job_leased ON job (lease_expires_at) WHERE state = 'running';
-- One owner per placed file name: the reservation that makes collision suffixes race-free.
CREATE UNIQUE INDEX job_output_path ON job (output_path) WHERE output_path IS NOT NULL;

CREATE TABLE job_attempt (
  job_id     BIGINT      NOT NULL REFERENCES job(id),
  epoch      BIGINT      NOT NULL,
  worker     TEXT        NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  ended_at   TIMESTAMPTZ,
  outcome    TEXT,
  error      TEXT,
  PRIMARY KEY (job_id, epoch)
);

//! Mode 2 on Pod's own database (spec 6.1, 6.2, 6.6, 6.8): the owner of a recording from Pod's
//! meetings, Pod users found by username or created with every row Pod's signals add, and one
//! `import_video_externalrecording` row per (recording, owner). PostgreSQL and MySQL/MariaDB, with
//! static SQL and bound parameters only. MySQL sessions are forced into strict mode: Pod's schema
//! has no column defaults and a lax session would store zero dates for a forgotten column.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::place::sql_dialect::{DialectPool, per_dialect, pg_sql};
use crate::recording::Recording;

/// `import_video_externalrecording.name` is `varchar(250)`; Django counts characters.
pub const NAME_MAX_CHARS: usize = 250;
/// `import_video_externalrecording.source_url` is `varchar(500)`.
pub const SOURCE_URL_MAX_CHARS: usize = 500;

const MYSQL_STRICT: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("Pod database URL must start with postgres://, postgresql:// or mysql://")]
    Scheme,
    #[error("Pod database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("Pod REST API: {0}")]
    Rest(String),
    /// The ledger lease of this import was taken over: nothing more may be written.
    #[error("lease lost: another worker owns this recording's import now")]
    LeaseLost,
    #[error("ledger: {0}")]
    Ledger(String),
}

impl PodError {
    /// Whether a retry can help: database and network trouble can pass, bad data does not.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PodError::Invalid(_) | PodError::Scheme)
    }
}

/// Checked right before every write to Pod or Moodle. The import of a recording belongs to a
/// ledger job; its fence renews the job's lease and fails once another worker took the job
/// over, so a worker that lost its lease writes nothing more.
pub trait WriteFence: Sync {
    fn check(&self) -> impl std::future::Future<Output = Result<(), PodError>> + Send;
}

/// No ledger (dry run, which writes nothing anyway, and library tests).
#[derive(Debug, Clone, Copy)]
pub struct Unfenced;

impl WriteFence for Unfenced {
    async fn check(&self) -> Result<(), PodError> {
        Ok(())
    }
}

/// The fence of a ledger lease: a fenced heartbeat (0 rows once the epoch moved on).
pub struct LeaseFence<'a, S> {
    pub store: &'a S,
    pub lease: &'a crate::ledger::Lease,
    pub duration: std::time::Duration,
}

impl<S: crate::ledger::JobStore> WriteFence for LeaseFence<'_, S> {
    async fn check(&self) -> Result<(), PodError> {
        match self.store.heartbeat(self.lease, self.duration, None).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(PodError::Ledger("cancelled on request".into())),
            Err(crate::ledger::LedgerError::LeaseLost { .. }) => Err(PodError::LeaseLost),
            Err(e) => Err(PodError::Ledger(e.to_string())),
        }
    }
}

/// A connection pool to Pod's database, on either engine.
#[derive(Debug, Clone)]
pub enum PodDb {
    Pg(PgPool),
    My(MySqlPool),
}

impl<'a> From<&'a PodDb> for DialectPool<'a> {
    fn from(db: &'a PodDb) -> DialectPool<'a> {
        match db {
            PodDb::Pg(p) => DialectPool::Pg(p),
            PodDb::My(p) => DialectPool::My(p),
        }
    }
}

/// A Pod user (`auth_user`), as `str(User)` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PodUser {
    pub id: i32,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
}

impl fmt::Display for PodUser {
    /// Pod's `User.__str__` (authentication/models.py `get_name`): "First Last (username)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.first_name, self.last_name, self.username
        )
    }
}

/// Who to create when a username is not in Pod yet (from Moodle's `mdl_user`, whose
/// `firstname`/`lastname` the query aliases to these field names).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NewUser {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
}

/// The values Pod's settings put into the rows its signals create.
#[derive(Clone)]
pub struct UserDefaults {
    /// Pod's SECRET_KEY: `authentication_owner.hashkey` = sha256_hex(SECRET_KEY + username).
    pub secret_key: String,
    pub site_id: i32,
    /// `AUTH_TYPE[0][0]`, `AFFILIATION[0][0]`, `ESTABLISHMENTS[0][0]` of Pod's settings.
    pub auth_type: String,
    pub affiliation: String,
    pub establishment: String,
    /// gettext("Your favorites videos.") in Pod's LANGUAGE_CODE.
    pub favorites_description: String,
}

impl fmt::Debug for UserDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserDefaults")
            .field("secret_key", &"<redacted>")
            .field("site_id", &self.site_id)
            .finish_non_exhaustive()
    }
}

impl UserDefaults {
    /// Pod's own defaults (pod/main/settings.py, English).
    pub fn new(secret_key: String, site_id: i32) -> Self {
        UserDefaults {
            secret_key,
            site_id,
            auth_type: "local".into(),
            affiliation: "student".into(),
            establishment: "Etab_1".into(),
            favorites_description: "Your favorites videos.".into(),
        }
    }
}

/// sha256_hex(SECRET_KEY + username), as Pod's `Owner.save()` computes it.
pub fn hashkey(secret_key: &str, username: &str) -> String {
    let mut h = Sha256::new();
    h.update(secret_key.as_bytes());
    h.update(username.as_bytes());
    hex::encode(h.finalize())
}

/// The first `max` characters (never cuts a UTF-8 sequence).
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `recorder_recordingfiletreatment.file` is `varchar(200)` from Pod 4.0.1 (100 before).
pub const CLAIM_FILE_MAX_CHARS: usize = 200;

/// A Pod recorder (`recorder_recorder`) as manual claim needs it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recorder {
    pub id: i64,
    pub name: String,
    /// Its directory under DEFAULT_RECORDER_PATH.
    pub directory: String,
    /// `video` | `audiovideocast` | `studio`: the `type` of its file treatments.
    pub recording_type: String,
    /// The manager (column `user_id`); NULL is what manual claim needs.
    #[sqlx(rename = "user_id")]
    pub manager_id: Option<i32>,
}

/// One external recording to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRecording {
    pub name: String,
    pub start_at: DateTime<Utc>,
    pub owner_id: i32,
    pub site_id: i32,
    pub source_url: String,
}

impl ExternalRecording {
    /// The row for `rec` (None when it has no playback: spec 6.8 RECOMMENDED, no empty URL).
    /// The start time is the instant of `startTime`, stored as UTC.
    pub fn for_recording(
        rec: &Recording,
        owner_id: i32,
        site_id: i32,
        rewrite_23: bool,
    ) -> Option<ExternalRecording> {
        let url = rec.source_url(rewrite_23);
        if url.is_empty() {
            return None;
        }
        let start_at = DateTime::<Utc>::from_timestamp_millis(rec.start_time_ms)?;
        Some(ExternalRecording {
            name: truncate_chars(&rec.name, NAME_MAX_CHARS).to_owned(),
            start_at,
            owner_id,
            site_id,
            source_url: url,
        })
    }
}

impl PodDb {
    /// Connects; `read_only` (dry run) makes every transaction of the session read-only, so
    /// nothing can be written even by mistake.
    pub async fn connect(url: &str, read_only: bool) -> Result<PodDb, PodError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = PgConnectOptions::from_str(url)?;
            if read_only {
                opts = opts.options([("default_transaction_read_only", "on")]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect_with(opts)
                .await?;
            Ok(PodDb::Pg(pool))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            // Django writes naive UTC datetimes (USE_TZ=True): the session must be in UTC too.
            let opts = MySqlConnectOptions::from_str(&url)?
                .charset("utf8mb4")
                .timezone(Some("+00:00".to_owned()));
            let pool = MySqlPoolOptions::new()
                .max_connections(2)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute(MYSQL_STRICT).await?;
                        if read_only {
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(PodDb::My(pool))
        } else {
            Err(PodError::Scheme)
        }
    }

    /// Spec 6.2: the owner and site of the newest Pod meeting with this `meetingID`.
    pub async fn meeting_owner(&self, meeting_id: &str) -> Result<Option<(i32, i32)>, PodError> {
        Ok(per_dialect!(
            self,
            "SELECT owner_id, site_id FROM meeting WHERE meeting_id = ? ORDER BY start_at DESC LIMIT 1",
            |sql, pool| sqlx::query_as::<_, (i32, i32)>(sql)
                .bind(meeting_id)
                .fetch_optional(pool)
                .await?
        ))
    }

    /// A user by id (the configured admin, a meeting owner).
    pub async fn user_by_id(&self, id: i32) -> Result<Option<PodUser>, PodError> {
        Ok(per_dialect!(
            self,
            "SELECT id, username, first_name, last_name FROM auth_user WHERE id = ?",
            |sql, pool| sqlx::query_as::<_, PodUser>(sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        ))
    }

    /// Spec 6.6: `User.objects.filter(username=…).first()`; the comparison follows the
    /// database's collation (exact on PostgreSQL, usually case-insensitive on MySQL), as in Pod.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<PodUser>, PodError> {
        Ok(per_dialect!(
            self,
            "SELECT id, username, first_name, last_name FROM auth_user WHERE username = ? ORDER BY id LIMIT 1",
            |sql, pool| sqlx::query_as::<_, PodUser>(sql)
                .bind(username)
                .fetch_optional(pool)
                .await?
        ))
    }

    /// Creates the user as `User.objects.create(..., is_staff=True, is_active=True)` does, with
    /// the rows of Pod's signals (REPORT.md order): auth_user, podfile_userfolder "home",
    /// authentication_owner (hashkey), authentication_owner_sites, the "Favorites" playlist.
    /// One transaction: a failure leaves no half-made user behind.
    pub async fn create_user(
        &self,
        new: &NewUser,
        defaults: &UserDefaults,
    ) -> Result<PodUser, PodError> {
        if new.username.is_empty() || new.username.chars().count() > 150 {
            return Err(PodError::Invalid(format!(
                "username {:?} is empty or longer than 150 characters",
                new.username
            )));
        }
        if defaults.secret_key.is_empty() {
            // An empty key would give every created user a guessable hashkey.
            return Err(PodError::Invalid(format!(
                "cannot create Pod user {:?}: [pod] secret_key (or POD_SECRET_KEY) is not set",
                new.username
            )));
        }
        let first = truncate_chars(&new.first_name, 150);
        let last = truncate_chars(&new.last_name, 150);
        let email = truncate_chars(&new.email, 254);
        let now = Utc::now();
        let key = hashkey(&defaults.secret_key, &new.username);
        // Unique and temporary: the real slug needs the playlist's id (Pod uses MAX(id)+1, which
        // races; setting it from the id inside the transaction cannot collide).
        let temp_slug = format!("tmp-{}", uuid::Uuid::new_v4());
        // The same on both engines but for placeholders. The other three INSERTs differ: they
        // read the new id back (RETURNING id on PostgreSQL, last_insert_id() on MySQL, whose
        // ids are u64: each arm binds its own type, as before), so the transaction is written
        // per engine.
        const USERFOLDER: &str =
            "INSERT INTO podfile_userfolder (name, created_at, owner_id) VALUES ('home', ?, ?)";
        const OWNER_SITE: &str =
            "INSERT INTO authentication_owner_sites (owner_id, site_id) VALUES (?, ?)";
        const SLUG: &str = "UPDATE playlist_playlist SET slug = ? WHERE id = ?";
        let id = match self {
            PodDb::Pg(p) => {
                let mut tx = p.begin().await?;
                let uid: i32 = sqlx::query(
                    "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) \
                     VALUES ('', NULL, false, $1, $2, $3, $4, true, true, $5) RETURNING id",
                )
                .bind(&new.username).bind(first).bind(last).bind(email).bind(now)
                .fetch_one(&mut *tx).await?.get(0);
                sqlx::query(pg_sql!(USERFOLDER))
                    .bind(now)
                    .bind(uid)
                    .execute(&mut *tx)
                    .await?;
                let oid: i64 = sqlx::query(
                    "INSERT INTO authentication_owner (auth_type, affiliation, commentaire, hashkey, establishment, accepts_notifications, user_id, userpicture_id) \
                     VALUES ($1, $2, '', $3, $4, NULL, $5, NULL) RETURNING id",
                )
                .bind(&defaults.auth_type).bind(&defaults.affiliation).bind(&key)
                .bind(&defaults.establishment).bind(uid)
                .fetch_one(&mut *tx).await?.get(0);
                sqlx::query(pg_sql!(OWNER_SITE))
                    .bind(oid)
                    .bind(defaults.site_id)
                    .execute(&mut *tx)
                    .await?;
                let pid: i64 = sqlx::query(
                    "INSERT INTO playlist_playlist (date_created, name, description, password, visibility, autoplay, promoted, editable, slug, date_updated, owner_id, site_id) \
                     VALUES ($1, 'Favorites', $2, '', 'private', true, false, false, $3, $1, $4, $5) RETURNING id",
                )
                .bind(now).bind(&defaults.favorites_description).bind(&temp_slug)
                .bind(uid).bind(defaults.site_id)
                .fetch_one(&mut *tx).await?.get(0);
                sqlx::query(pg_sql!(SLUG))
                    .bind(format!("{pid}-favorites"))
                    .bind(pid)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                uid
            }
            PodDb::My(p) => {
                let mut tx = p.begin().await?;
                let uid = sqlx::query(
                    "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) \
                     VALUES ('', NULL, false, ?, ?, ?, ?, true, true, ?)",
                )
                .bind(&new.username).bind(first).bind(last).bind(email).bind(now)
                .execute(&mut *tx).await?.last_insert_id();
                let uid = i32::try_from(uid)
                    .map_err(|_| PodError::Invalid(format!("auth_user id {uid} out of range")))?;
                sqlx::query(USERFOLDER)
                    .bind(now)
                    .bind(uid)
                    .execute(&mut *tx)
                    .await?;
                let oid = sqlx::query(
                    "INSERT INTO authentication_owner (auth_type, affiliation, commentaire, hashkey, establishment, accepts_notifications, user_id, userpicture_id) \
                     VALUES (?, ?, '', ?, ?, NULL, ?, NULL)",
                )
                .bind(&defaults.auth_type).bind(&defaults.affiliation).bind(&key)
                .bind(&defaults.establishment).bind(uid)
                .execute(&mut *tx).await?.last_insert_id();
                sqlx::query(OWNER_SITE)
                    .bind(oid)
                    .bind(defaults.site_id)
                    .execute(&mut *tx)
                    .await?;
                let pid = sqlx::query(
                    "INSERT INTO playlist_playlist (date_created, name, description, password, visibility, autoplay, promoted, editable, slug, date_updated, owner_id, site_id) \
                     VALUES (?, 'Favorites', ?, '', 'private', true, false, false, ?, ?, ?, ?)",
                )
                .bind(now).bind(&defaults.favorites_description).bind(&temp_slug)
                .bind(now).bind(uid).bind(defaults.site_id)
                .execute(&mut *tx).await?.last_insert_id();
                sqlx::query(SLUG)
                    .bind(format!("{pid}-favorites"))
                    .bind(pid)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                uid
            }
        };
        Ok(PodUser {
            id,
            username: new.username.clone(),
            first_name: first.to_owned(),
            last_name: last.to_owned(),
        })
    }

    /// Whether `owner` already has an external recording of this recording: the same URL (what
    /// Python checked), or any URL that contains the recordID. Every playback URL form (2.3,
    /// 2.0 `?meetingId=`, video, Scalelite `/recording/<id>/`) carries the recordID, so a rerun
    /// after the URL form changed finds the earlier row instead of creating a duplicate.
    pub async fn has_external(
        &self,
        owner_id: i32,
        record_id: &str,
        source_url: &str,
    ) -> Result<bool, PodError> {
        // Differs: strpos(haystack, needle) on PostgreSQL, LOCATE(needle, haystack) on MySQL.
        Ok(match self {
            PodDb::Pg(p) => sqlx::query(
                "SELECT 1 FROM import_video_externalrecording WHERE owner_id = $1 AND (source_url = $2 OR strpos(source_url, $3) > 0) LIMIT 1",
            )
            .bind(owner_id).bind(source_url).bind(record_id)
            .fetch_optional(p).await?
            .is_some(),
            PodDb::My(p) => sqlx::query(
                "SELECT 1 FROM import_video_externalrecording WHERE owner_id = ? AND (source_url = ? OR LOCATE(?, source_url) > 0) LIMIT 1",
            )
            .bind(owner_id).bind(source_url).bind(record_id)
            .fetch_optional(p).await?
            .is_some(),
        })
    }

    /// Inserts the row with every NOT NULL column (the database has no defaults); returns its id.
    pub async fn insert_external(&self, e: &ExternalRecording) -> Result<i64, PodError> {
        if e.source_url.chars().count() > SOURCE_URL_MAX_CHARS {
            return Err(PodError::Invalid(format!(
                "playback URL longer than {SOURCE_URL_MAX_CHARS} characters: {}",
                e.source_url
            )));
        }
        let name = truncate_chars(&e.name, NAME_MAX_CHARS);
        // Differs: RETURNING id on PostgreSQL, last_insert_id() on MySQL.
        Ok(match self {
            PodDb::Pg(p) => sqlx::query(
                "INSERT INTO import_video_externalrecording (name, start_at, owner_id, site_id, type, source_url, state, uploaded_to_pod_by_id) \
                 VALUES ($1, $2, $3, $4, 'bigbluebutton', $5, NULL, NULL) RETURNING id",
            )
            .bind(name).bind(e.start_at).bind(e.owner_id).bind(e.site_id).bind(&e.source_url)
            .fetch_one(p).await?.get::<i64, _>(0),
            PodDb::My(p) => {
                let id = sqlx::query(
                    "INSERT INTO import_video_externalrecording (name, start_at, owner_id, site_id, type, source_url, state, uploaded_to_pod_by_id) \
                     VALUES (?, ?, ?, ?, 'bigbluebutton', ?, NULL, NULL)",
                )
                .bind(name).bind(e.start_at).bind(e.owner_id).bind(e.site_id).bind(&e.source_url)
                .execute(p).await?.last_insert_id();
                id as i64
            }
        })
    }

    /// The recorder of manual claims (`recorder_recorder`), by id.
    pub async fn recorder(&self, id: i64) -> Result<Option<Recorder>, PodError> {
        Ok(per_dialect!(
            self,
            "SELECT id, name, directory, recording_type, user_id FROM recorder_recorder WHERE id = ?",
            |sql, pool| sqlx::query_as::<_, Recorder>(sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        ))
    }

    /// Spec 9.2 RECOMMENDED: registers a placed file for manual claim, as Pod's `recorder
    /// checkDirectory` cron would after its two passes, with the final size and
    /// `require_manual_claim` set (the cron then leaves it alone). Every NOT NULL column is
    /// sent: Pod's schema has no defaults. Nothing is inserted when the file is already
    /// registered, or already claimed (`recorder_recording.source_file`). Returns whether it
    /// inserted.
    pub async fn register_claim(
        &self,
        file: &str,
        size: u64,
        recorder: &Recorder,
    ) -> Result<bool, PodError> {
        if file.chars().count() > CLAIM_FILE_MAX_CHARS {
            return Err(PodError::Invalid(format!(
                "{file}: longer than the {CLAIM_FILE_MAX_CHARS} characters of recorder_recordingfiletreatment.file"
            )));
        }
        let size = i64::try_from(size)
            .map_err(|_| PodError::Invalid(format!("{file}: size {size} out of range")))?;
        let now = Utc::now();
        // `? … ?` is PostgreSQL's `$1 … $1`: the file, bound twice.
        let known = per_dialect!(
            self,
            "SELECT 1 FROM recorder_recordingfiletreatment WHERE file = ? \
             UNION ALL SELECT 1 FROM recorder_recording WHERE source_file = ? LIMIT 1",
            |sql, pool| sqlx::query(sql)
                .bind(file)
                .bind(file)
                .fetch_optional(pool)
                .await?
                .is_some()
        );
        if known {
            return Ok(false);
        }
        // Differs: ON CONFLICT (file) DO NOTHING on PostgreSQL, the duplicate-key error caught on
        // MySQL.
        let inserted = match self {
            PodDb::Pg(p) => {
                // A concurrent registration of the same file loses on the UNIQUE(file).
                sqlx::query(
                    "INSERT INTO recorder_recordingfiletreatment (file, file_size, date_added, require_manual_claim, email_sent, date_email_sent, type, recorder_id) \
                     VALUES ($1, $2, $3, true, false, NULL, $4, $5) ON CONFLICT (file) DO NOTHING",
                )
                .bind(file)
                .bind(size)
                .bind(now)
                .bind(&recorder.recording_type)
                .bind(recorder.id)
                .execute(p)
                .await?
                .rows_affected()
                    == 1
            }
            PodDb::My(p) => {
                let r = sqlx::query(
                    "INSERT INTO recorder_recordingfiletreatment (file, file_size, date_added, require_manual_claim, email_sent, date_email_sent, type, recorder_id) \
                     VALUES (?, ?, ?, true, false, NULL, ?, ?)",
                )
                .bind(file)
                .bind(size)
                .bind(now)
                .bind(&recorder.recording_type)
                .bind(recorder.id)
                .execute(p)
                .await;
                match r {
                    Ok(r) => r.rows_affected() == 1,
                    // ER_DUP_ENTRY: registered meanwhile (no INSERT IGNORE: in strict mode it
                    // would also turn real errors into warnings).
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23000") => false,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(inserted)
    }

    pub async fn close(&self) {
        match self {
            PodDb::Pg(p) => p.close().await,
            PodDb::My(p) => p.close().await,
        }
    }
}

/// What the import did (or, in a dry run, would do) for one recording.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Printed lines, Python's wording where there is one.
    pub lines: Vec<String>,
    pub users_created: usize,
    pub rows_created: usize,
    /// Every owner that has this recording now (created now or found): recorded in the ledger.
    pub placed: Vec<Placed>,
}

/// One owner of an imported recording, as the ledger keeps it (recordID + owner).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placed {
    pub user_id: i32,
    pub username: String,
    /// The row created by this import; None when the owner already had one.
    pub external_id: Option<i64>,
}

/// Settings of one import run.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub admin_id: i32,
    pub site_id: i32,
    pub rewrite_23: bool,
    pub dry_run: bool,
    pub user_defaults: UserDefaults,
    /// Create missing users through Pod's REST API instead of SQL.
    pub rest: Option<crate::place::rest::PodRest>,
    /// Pod fetches the playback URL we hand it: it must pass the same host policy as ours.
    pub playback_hosts: crate::playback_hosts::PlaybackHosts,
}

/// Spec 6.1 for one recording, without Moodle: the Pod meeting's owner, else the admin; then
/// spec 6.6/6.8 for each owner. `owners` are the Moodle moderators already found (may be empty).
pub async fn import_recording(
    db: &PodDb,
    rec: &Recording,
    owners: &[NewUser],
    moodle_msg: &str,
    s: &ImportSettings,
) -> Result<ImportReport, PodError> {
    import_recording_fenced(db, rec, owners, moodle_msg, s, &Unfenced, &[]).await
}

/// [`import_recording`] with every write behind `fence`. `done` are the owners an earlier
/// attempt of the same ledger job already placed (its checkpoint): they get nothing more, even
/// if the playback URL changed since.
pub async fn import_recording_fenced(
    db: &PodDb,
    rec: &Recording,
    owners: &[NewUser],
    moodle_msg: &str,
    s: &ImportSettings,
    fence: &impl WriteFence,
    done: &[Placed],
) -> Result<ImportReport, PodError> {
    let mut rep = ImportReport {
        lines: vec![format!(
            "Use import video for recording {} {}",
            rec.record_id, rec.internal_meeting_id
        )],
        ..Default::default()
    };
    // No playback at all gets no row (below); any URL given to Pod must pass.
    let source = rec.source_url(s.rewrite_23);
    if !source.is_empty() {
        s.playback_hosts
            .check(&source)
            .map_err(|why| PodError::Invalid(format!("select: {why}")))?;
    }
    let mut targets: Vec<(PodUser, i32, String)> = Vec::new();
    if let Some((owner_id, site_id)) = db.meeting_owner(&rec.meeting_id).await? {
        let user = db.user_by_id(owner_id).await?.ok_or_else(|| {
            PodError::Invalid(format!("meeting owner {owner_id} not in auth_user"))
        })?;
        targets.push((user, site_id, "BBB session made with Pod.".into()));
    } else if !owners.is_empty() {
        let msg = format!("{moodle_msg} Create user in Pod if necessary.");
        for o in owners {
            let user = match db.user_by_username(&o.username).await? {
                Some(u) => u,
                None if s.dry_run => {
                    rep.lines.push(format!(
                        " - Would create Pod user {} <{}>",
                        o.username, o.email
                    ));
                    rep.users_created += 1;
                    PodUser {
                        id: 0,
                        username: o.username.clone(),
                        first_name: o.first_name.clone(),
                        last_name: o.last_name.clone(),
                    }
                }
                None => {
                    fence.check().await?;
                    let u = match &s.rest {
                        Some(rest) => {
                            rest.create_user(o).await?;
                            db.user_by_username(&o.username).await?.ok_or_else(|| {
                                PodError::Rest(format!(
                                    "user {:?} was created but is not in auth_user",
                                    o.username
                                ))
                            })?
                        }
                        None => db.create_user(o, &s.user_defaults).await?,
                    };
                    let how = if s.rest.is_some() { " (REST API)" } else { "" };
                    rep.lines.push(format!(" - Pod user created{how}: {u}"));
                    rep.users_created += 1;
                    u
                }
            };
            targets.push((user, s.site_id, msg.clone()));
        }
    } else {
        let admin = db.user_by_id(s.admin_id).await?.ok_or_else(|| {
            PodError::Invalid(format!(
                "[pod] admin_id {} is not a user of this Pod",
                s.admin_id
            ))
        })?;
        targets.push((admin, s.site_id, String::new()));
    }
    for (user, site_id, msg) in targets {
        let Some(row) = ExternalRecording::for_recording(rec, user.id, site_id, s.rewrite_23)
        else {
            rep.lines.push(format!(
                " - Recording {} has no playback: no external recording for {user}.",
                rec.internal_meeting_id
            ));
            continue;
        };
        rep.lines.push(format!(
            " - Recording {}, playback {}, owner {user}: create an external recording if necessary. {msg}",
            rec.internal_meeting_id, row.source_url
        ).trim_end().to_owned());
        if user.id != 0 && done.iter().any(|d| d.user_id == user.id) {
            rep.lines
                .push("   already placed by an earlier attempt (ledger).".into());
            continue;
        }
        // A user that does not exist yet (dry run) has no rows.
        let exists = user.id != 0
            && db
                .has_external(user.id, rec.record_id.as_str(), &row.source_url)
                .await?;
        if exists {
            rep.lines.push("   already there.".into());
            rep.placed.push(Placed {
                user_id: user.id,
                username: user.username.clone(),
                external_id: None,
            });
        } else if s.dry_run {
            rep.lines.push("   would be created.".into());
            rep.rows_created += 1;
        } else {
            fence.check().await?;
            let id = db.insert_external(&row).await?;
            rep.lines.push(format!("   created (id {id})."));
            rep.rows_created += 1;
            rep.placed.push(Placed {
                user_id: user.id,
                username: user.username.clone(),
                external_id: Some(id),
            });
        }
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashkey_and_truncation() {
        // Computed outside this code: `printf %s 'kjdoe' | sha256sum`.
        assert_eq!(
            hashkey("k", "jdoe"),
            "18138519e66ff4195fc367e39f3017ed503435c39aea971f164383e279bdc0e0"
        );
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ab", 5), "ab");
        let s = "é".repeat(300);
        assert_eq!(truncate_chars(&s, NAME_MAX_CHARS).chars().count(), 250);
    }
}

//! Pod's own database (spec 6.2, 6.6, 6.8, 9.2): the [`PodDb`] pool and all its SQL, the owner of
//! a recording from Pod's meetings, Pod users found by username or created with every row Pod's
//! signals add, `import_video_externalrecording` rows and manual-claim registrations.
//! PostgreSQL and MySQL/MariaDB, with static SQL and bound parameters only. MySQL sessions are
//! forced into strict mode: Pod's schema has no column defaults and a lax session would store
//! zero dates for a forgotten column.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::place::pod::{
    NewUser, PodError, PodUser, UserCreator, UserDefaults, hashkey, truncate_chars,
};
use crate::place::sql_dialect::{DialectPool, per_dialect, pg_sql};
use crate::recording::Recording;

/// `import_video_externalrecording.name` is `varchar(250)`; Django counts characters.
pub const NAME_MAX_CHARS: usize = 250;
/// `import_video_externalrecording.source_url` is `varchar(500)`.
pub const SOURCE_URL_MAX_CHARS: usize = 500;

const MYSQL_STRICT: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

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
        if defaults.secret_key.expose_secret().is_empty() {
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
        let key = hashkey(defaults.secret_key.expose_secret(), &new.username);
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

impl UserCreator for PodDb {
    fn via(&self) -> &'static str {
        ""
    }

    async fn create_user(
        &self,
        new: &NewUser,
        defaults: &UserDefaults,
    ) -> Result<Option<PodUser>, PodError> {
        PodDb::create_user(self, new, defaults).await.map(Some)
    }
}

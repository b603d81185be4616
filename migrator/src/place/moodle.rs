//! The Moodle side of mode 2 (spec 6.3 to 6.5 and 6.7, with the Python defects fixed): which
//! Moodle database a recording came from, ALL the moderators of its activity, and the notice
//! appended once to the activity's description. PostgreSQL and MySQL/MariaDB.
//!
//! Moderators: the activity's `participants` rules with role `moderator`. A `user` rule names the
//! user; a `role` rule names a Moodle role id and is resolved to the users holding that role in
//! the activity's course, i.e. `role_assignments` in the course context (`context.contextlevel`
//! 50, `instanceid` = course id), the way Moodle assigns course roles. An `all` rule gives no
//! owner (it would make every participant an owner). Deleted and suspended users are left out,
//! and so are recordings imported from another activity (`imported = 1`): their participants are
//! those of the importing activity, not of the people who recorded.
//!
//! Table names come from validated configuration (prefix, schema); every value is bound.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Deserialize;
use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::place::pod::NewUser;
use crate::place::sql_dialect::{DialectPool, per_dialect};

/// Moodle's recording states (mod/bigbluebuttonbn classes/recording.php): PROCESSED and
/// NOTIFIED are both finished recordings (Python only took PROCESSED and missed the others).
const FINISHED_STATES: (i16, i16) = (2, 3);

/// Appended with the notice; found again on a rerun, so an activity gets the notice once.
pub const MARKER: &str = "<!-- bbb-migrate: recordings in Pod -->";

/// What an admin runs so that the course page (cached modinfo) shows the new description.
pub const PURGE_HINT: &str = "php admin/cli/purge_caches.php";

#[derive(Debug, thiserror::Error)]
pub enum MoodleError {
    #[error("no Moodle database configured for server {0:?} (and no [moodle.databases.default])")]
    UnknownServer(String),
    #[error("Moodle database URL must start with postgres://, postgresql:// or mysql://")]
    Scheme,
    #[error("Moodle database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("activity {0}: participants is not valid JSON: {1}")]
    Json(i64, #[source] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The `[moodle]` settings this module needs.
#[derive(Clone)]
pub struct MoodleSettings {
    pub table_prefix: String,
    pub schema: String,
    pub ignored_servers: Vec<String>,
    /// `bbb-origin-server-name` (or `default`) → database URL (which may hold a password).
    pub databases: BTreeMap<String, String>,
}

/// The database URLs shown with their password masked.
impl std::fmt::Debug for MoodleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let databases: BTreeMap<&str, String> = self
            .databases
            .iter()
            .map(|(k, v)| (k.as_str(), bbb_common::redact::url_text(v)))
            .collect();
        f.debug_struct("MoodleSettings")
            .field("table_prefix", &self.table_prefix)
            .field("schema", &self.schema)
            .field("ignored_servers", &self.ignored_servers)
            .field("databases", &databases)
            .finish()
    }
}

/// Validated table names for one engine.
#[derive(Debug, Clone)]
pub struct Tables {
    bbb: String,
    rec: String,
    user: String,
    ra: String,
    ctx: String,
}

fn ident_ok(s: &str, allow_empty: bool) -> bool {
    (allow_empty || !s.is_empty())
        && s.len() <= 30
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Tables {
    fn new(s: &MoodleSettings, pg: bool) -> Result<Tables, MoodleError> {
        if !ident_ok(&s.table_prefix, true) || !ident_ok(&s.schema, false) {
            return Err(MoodleError::Invalid(format!(
                "[moodle] table_prefix {:?} / schema {:?}: only a-z, 0-9 and _ are accepted",
                s.table_prefix, s.schema
            )));
        }
        let q = |t: &str| {
            if pg {
                format!("{}.{}{t}", s.schema, s.table_prefix)
            } else {
                format!("{}{t}", s.table_prefix)
            }
        };
        Ok(Tables {
            bbb: q("bigbluebuttonbn"),
            rec: q("bigbluebuttonbn_recordings"),
            user: q("user"),
            ra: q("role_assignments"),
            ctx: q("context"),
        })
    }
}

#[derive(Debug, Clone)]
pub enum MoodleDb {
    Pg(PgPool, Tables),
    My(MySqlPool, Tables),
}

impl<'a> From<&'a MoodleDb> for DialectPool<'a> {
    fn from(db: &'a MoodleDb) -> DialectPool<'a> {
        match db {
            MoodleDb::Pg(p, _) => DialectPool::Pg(p),
            MoodleDb::My(p, _) => DialectPool::My(p),
        }
    }
}

/// One activity a recording belongs to.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Activity {
    pub id: i64,
    pub course: i64,
    pub intro: Option<String>,
    pub participants: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    selectiontype: String,
    #[serde(default)]
    selectionid: serde_json::Value,
    #[serde(default)]
    role: String,
}

/// The moderators named by a `participants` value: (user ids, role ids). NULL or empty is no
/// rule at all (Moodle then applies its defaults at run time, which name nobody).
pub fn moderator_rules(
    activity: i64,
    participants: Option<&str>,
) -> Result<(Vec<i64>, Vec<i64>), MoodleError> {
    let text = participants.unwrap_or("").trim();
    if text.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let rules: Vec<Rule> =
        serde_json::from_str(text).map_err(|e| MoodleError::Json(activity, e))?;
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    for r in rules.iter().filter(|r| r.role == "moderator") {
        let id = match &r.selectionid {
            serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match (r.selectiontype.as_str(), id) {
            ("user", Some(id)) => users.push(id),
            ("role", Some(id)) => roles.push(id),
            _ => {}
        }
    }
    Ok((users, roles))
}

impl MoodleDb {
    pub async fn connect(
        url: &str,
        settings: &MoodleSettings,
        read_only: bool,
    ) -> Result<MoodleDb, MoodleError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let t = Tables::new(settings, true)?;
            let mut opts = PgConnectOptions::from_str(url)?;
            if read_only {
                opts = opts.options([("default_transaction_read_only", "on")]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            Ok(MoodleDb::Pg(pool, t))
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let t = Tables::new(settings, false)?;
            let url = url.replacen("mariadb://", "mysql://", 1);
            let opts = MySqlConnectOptions::from_str(&url)?.charset("utf8mb4");
            let pool = MySqlPoolOptions::new()
                .max_connections(1)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if read_only {
                            conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?;
            Ok(MoodleDb::My(pool, t))
        } else {
            Err(MoodleError::Scheme)
        }
    }

    /// The table names of this engine (schema-qualified on PostgreSQL), validated by
    /// [`Tables::new`]: the only text the statements are built from besides constants.
    fn tables(&self) -> &Tables {
        match self {
            MoodleDb::Pg(_, t) | MoodleDb::My(_, t) => t,
        }
    }

    /// The activities holding this recording (not as an imported copy).
    pub async fn activities(&self, recording_id: &str) -> Result<Vec<Activity>, MoodleError> {
        let (a, b) = FINISHED_STATES;
        let t = self.tables();
        let sql = format!(
            "SELECT DISTINCT b.id, b.course, b.intro, b.participants FROM {} r JOIN {} b ON r.bigbluebuttonbnid = b.id \
             WHERE r.recordingid = ? AND r.status IN (?, ?) AND r.imported = 0 ORDER BY b.id",
            t.rec, t.bbb
        );
        Ok(per_dialect!(self, sql, |sql, pool| {
            sqlx::query_as::<_, Activity>(sql)
                .bind(recording_id)
                .bind(a)
                .bind(b)
                .fetch_all(pool)
                .await?
        }))
    }

    /// A user who may own recordings: exists, not deleted, not suspended.
    pub async fn active_user(&self, id: i64) -> Result<Option<NewUser>, MoodleError> {
        // Aliased to the field names `NewUser`'s FromRow reads.
        let sql = format!(
            "SELECT username, firstname AS first_name, lastname AS last_name, email FROM {} WHERE id = ? AND deleted = 0 AND suspended = 0",
            self.tables().user
        );
        Ok(per_dialect!(self, sql, |sql, pool| {
            sqlx::query_as::<_, NewUser>(sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The users holding `role` in the course context of `course`.
    pub async fn role_holders(&self, course: i64, role: i64) -> Result<Vec<i64>, MoodleError> {
        let t = self.tables();
        let sql = format!(
            "SELECT DISTINCT ra.userid FROM {} ra JOIN {} c ON c.id = ra.contextid \
             WHERE c.contextlevel = 50 AND c.instanceid = ? AND ra.roleid = ? ORDER BY ra.userid",
            t.ra, t.ctx
        );
        Ok(per_dialect!(self, sql, |sql, pool| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(course)
                .bind(role)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Appends `<br>` + the notice + [`MARKER`] to the activity's intro unless the marker is
    /// already there. The UPDATE only applies if the intro did not change since it was read.
    /// Returns whether it wrote.
    pub async fn append_notice(&self, activity: i64, html: &str) -> Result<bool, MoodleError> {
        let sql = format!("SELECT intro FROM {} WHERE id = ?", self.tables().bbb);
        let current: Option<String> = per_dialect!(self, sql, |sql, pool| {
            sqlx::query_scalar::<_, Option<String>>(sql)
                .bind(activity)
                .fetch_optional(pool)
                .await?
                .flatten()
        });
        let old = current.unwrap_or_default();
        if old.contains(MARKER) {
            return Ok(false);
        }
        let new = if old.is_empty() {
            format!("{html}{MARKER}")
        } else {
            format!("{old}<br>{html}{MARKER}")
        };
        let sql = format!(
            "UPDATE {} SET intro = ? WHERE id = ? AND coalesce(intro, '') = ?",
            self.tables().bbb
        );
        let n = per_dialect!(self, sql, |sql, pool| {
            sqlx::query(sql)
                .bind(&new)
                .bind(activity)
                .bind(&old)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn close(&self) {
        match self {
            MoodleDb::Pg(p, _) => p.close().await,
            MoodleDb::My(p, _) => p.close().await,
        }
    }
}

/// The outcome of the Moodle lookup for one recording.
#[derive(Debug, Default)]
pub struct Lookup {
    /// The Moodle moderators, each once, in user-id order.
    pub owners: Vec<NewUser>,
    /// The activities found (for the notice).
    pub activities: Vec<i64>,
    /// Lines for the per-recording report.
    pub lines: Vec<String>,
}

/// Which configured database a recording came from: its `bbb-origin-server-name`, exact match,
/// else `default`. `Ok(None)` for an ignored server.
pub fn database_for<'a>(
    settings: &'a MoodleSettings,
    origin_server_name: &str,
) -> Result<Option<&'a str>, MoodleError> {
    if !origin_server_name.is_empty()
        && settings
            .ignored_servers
            .iter()
            .any(|s| s == origin_server_name)
    {
        return Ok(None);
    }
    let key = if origin_server_name.is_empty() {
        "default"
    } else {
        origin_server_name
    };
    settings
        .databases
        .get(key)
        .or_else(|| settings.databases.get("default"))
        .map(|s| Some(s.as_str()))
        .ok_or_else(|| MoodleError::UnknownServer(key.to_owned()))
}

/// Spec 6.4/6.5 without the one-moderator defect: every moderator of every activity holding
/// `recording_id`.
pub async fn moderators(db: &MoodleDb, recording_id: &str) -> Result<Lookup, MoodleError> {
    let mut out = Lookup::default();
    let mut ids = BTreeSet::new();
    for a in db.activities(recording_id).await? {
        out.activities.push(a.id);
        let (users, roles) = moderator_rules(a.id, a.participants.as_deref())?;
        if users.is_empty() && roles.is_empty() {
            out.lines
                .push(format!(" - Activity {}: no moderator rule.", a.id));
        }
        ids.extend(users);
        for role in roles {
            ids.extend(db.role_holders(a.course, role).await?);
        }
    }
    for id in ids {
        match db.active_user(id).await? {
            Some(u) => {
                out.lines.push(format!(
                    " - Moderator found in Moodle: {} {}",
                    u.username, u.email
                ));
                out.owners.push(u);
            }
            None => out.lines.push(format!(
                " - Moodle user {id} is missing, deleted or suspended: skipped."
            )),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_masks_the_database_passwords() {
        let settings = MoodleSettings {
            table_prefix: "mdl_".into(),
            schema: "public".into(),
            ignored_servers: Vec::new(),
            databases: [(
                "default".to_owned(),
                "postgres://moodle:hunter2@db.example.org/moodle".to_owned(),
            )]
            .into(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.example.org"), "{shown}");
    }

    #[test]
    fn rules() {
        let p = r#"[{"selectiontype":"all","selectionid":"all","role":"viewer"},
                    {"selectiontype":"user","selectionid":"12","role":"moderator"},
                    {"selectiontype":"user","selectionid":13,"role":"viewer"},
                    {"selectiontype":"role","selectionid":"3","role":"moderator"}]"#;
        assert_eq!(moderator_rules(1, Some(p)).unwrap(), (vec![12], vec![3]));
        assert_eq!(moderator_rules(1, None).unwrap(), (vec![], vec![]));
        assert_eq!(moderator_rules(1, Some("")).unwrap(), (vec![], vec![]));
        assert!(matches!(
            moderator_rules(7, Some("{bad")),
            Err(MoodleError::Json(7, _))
        ));
    }

    #[test]
    fn server_choice() {
        let mut s = MoodleSettings {
            table_prefix: "mdl_".into(),
            schema: "public".into(),
            ignored_servers: vec!["old.example".into()],
            databases: BTreeMap::from([("moodle.example".into(), "mysql://a".into())]),
        };
        assert_eq!(
            database_for(&s, "moodle.example").unwrap(),
            Some("mysql://a")
        );
        assert_eq!(database_for(&s, "old.example").unwrap(), None);
        assert!(matches!(
            database_for(&s, "Moodle.example"),
            Err(MoodleError::UnknownServer(_))
        ));
        s.databases.insert("default".into(), "postgres://d".into());
        assert_eq!(database_for(&s, "other").unwrap(), Some("postgres://d"));
        assert!(
            Tables::new(
                &MoodleSettings {
                    table_prefix: "m; drop".into(),
                    ..s
                },
                true
            )
            .is_err()
        );
    }
}

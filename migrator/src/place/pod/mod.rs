//! Pod's "import" mode (spec 6.1, 6.2, 6.6, 6.8): the import policy that picks the owners of a
//! recording (Pod meeting owner, else the Moodle moderators, else the admin), creates missing Pod
//! users through a [`UserCreator`] (Pod's database or its REST API) and gives each owner one
//! external recording; plus the types shared by [`db`] and [`rest`]. Every write is behind a
//! [`WriteFence`] of the ledger.

pub mod db;
pub mod rest;

use std::fmt;
use std::future::Future;

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::ledger::LedgerError;
use crate::ledger::fence::{FenceError, Unfenced, WriteFence};
use crate::recording::Recording;

pub use db::{
    CLAIM_FILE_MAX_CHARS, ExternalRecording, NAME_MAX_CHARS, PodDb, Recorder, SOURCE_URL_MAX_CHARS,
};
pub use rest::PodRest;

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
    /// The job was cancelled on request while its import ran.
    #[error("ledger: cancelled on request")]
    Cancelled,
    /// The ledger could not confirm the lease before a write.
    #[error("{0}")]
    Ledger(#[source] LedgerError),
}

impl PodError {
    /// Whether a retry can help: database and network trouble can pass, bad data does not.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PodError::Invalid(_) | PodError::Scheme)
    }
}

impl From<FenceError> for PodError {
    fn from(e: FenceError) -> PodError {
        match e {
            FenceError::LeaseLost => PodError::LeaseLost,
            FenceError::Cancelled => PodError::Cancelled,
            FenceError::Ledger(e) => PodError::Ledger(e),
        }
    }
}

/// One way of creating a missing Pod user: SQL on Pod's database ([`PodDb`]) or Pod's REST
/// API ([`PodRest`]). The import policy picks one.
pub trait UserCreator: Sync {
    /// How the import report names this way (`""` or `" (REST API)"`).
    fn via(&self) -> &'static str;

    /// Creates `new`. Returns the user when this way knows its row; `None` when Pod made it
    /// (the caller then reads it back from Pod's database).
    fn create_user(
        &self,
        new: &NewUser,
        defaults: &UserDefaults,
    ) -> impl Future<Output = Result<Option<PodUser>, PodError>> + Send;
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
#[derive(Clone, Debug)]
pub struct UserDefaults {
    /// Pod's SECRET_KEY: `authentication_owner.hashkey` = sha256_hex(SECRET_KEY + username).
    pub secret_key: SecretString,
    pub site_id: i32,
    /// `AUTH_TYPE[0][0]`, `AFFILIATION[0][0]`, `ESTABLISHMENTS[0][0]` of Pod's settings.
    pub auth_type: String,
    pub affiliation: String,
    pub establishment: String,
    /// gettext("Your favorites videos.") in Pod's LANGUAGE_CODE.
    pub favorites_description: String,
}

impl UserDefaults {
    /// Pod's own defaults (pod/main/settings.py, English).
    pub fn new(secret_key: String, site_id: i32) -> Self {
        UserDefaults {
            secret_key: secret_key.into(),
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
    pub rest: Option<PodRest>,
    /// Pod fetches the playback URL we hand it: it must pass the same host policy as ours.
    pub playback_hosts: crate::playback_hosts::PlaybackHosts,
}

/// Creates a missing user with `creator`; a user made by Pod itself is read back from `db`.
async fn create_missing(
    creator: &impl UserCreator,
    db: &PodDb,
    new: &NewUser,
    defaults: &UserDefaults,
) -> Result<(PodUser, &'static str), PodError> {
    let user = match creator.create_user(new, defaults).await? {
        Some(u) => u,
        None => db.user_by_username(&new.username).await?.ok_or_else(|| {
            PodError::Rest(format!(
                "user {:?} was created but is not in auth_user",
                new.username
            ))
        })?,
    };
    Ok((user, creator.via()))
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
                    let (u, how) = match &s.rest {
                        Some(rest) => create_missing(rest, db, o, &s.user_defaults).await?,
                        None => create_missing(db, db, o, &s.user_defaults).await?,
                    };
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

    #[test]
    fn debug_output_shows_no_pod_secret() {
        let defaults = UserDefaults::new("pod-key-5e1".into(), 1);
        let timeout = std::time::Duration::from_secs(1);
        let rest = PodRest::new("https://pod.example.org/rest/", "pod-token-77a", timeout).unwrap();
        let shown = format!("{defaults:?} {rest:?}");
        assert!(shown.contains("pod.example.org"), "{shown}");
        assert!(
            !shown.contains("pod-key-5e1") && !shown.contains("pod-token-77a"),
            "{shown}"
        );
    }
}

//! The only forms of a BBB recordID that may reach a path, a file name, a URL we build or a
//! ledger key. A recordID comes from the old server (getRecordings, a playback URL) and is
//! untrusted until it has passed [`RecordId::parse`] or [`is_canonical`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether `id` has BBB's own form, `^[a-z0-9]{40}-[0-9]{13}$` (a meeting hash and the epoch
/// milliseconds of its start). The recorder only builds recording-file URLs from ids of this
/// form; the migrator accepts the wider [`RecordId`] form as well.
pub fn is_canonical(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 54
        && b[..40]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        && b[40] == b'-'
        && b[41..].iter().all(u8::is_ascii_digit)
}

/// A validated recordID.
///
/// BBB and Scalelite ids are `<40 lowercase hex>-<13 digits>` (`is_canonical`). Other servers and
/// very old recordings may differ, so any id made only of ASCII letters, digits, `-` and `_`, at
/// most 128 characters and not starting with `-`, is accepted: such an id is safe as a file-name
/// component and in a URL query. Anything else (`/`, `.`, spaces, control characters, non-ASCII) is
/// rejected, and the recording with it is reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsafe recordID {0:?}: only ASCII letters, digits, '-' and '_' are accepted (at most 128, not starting with '-')"
)]
pub struct UnsafeRecordId(pub String);

impl RecordId {
    pub fn parse(s: &str) -> Result<Self, UnsafeRecordId> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(RecordId(s.to_owned()))
        } else {
            Err(UnsafeRecordId(s.to_owned()))
        }
    }

    /// The BBB form `^[a-z0-9]{40}-[0-9]{13}$`.
    pub fn is_canonical(&self) -> bool {
        is_canonical(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Short suffix used when another recording owns a file name (spec 7.2 RECOMMENDED).
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(8)]
    }
}

impl TryFrom<String> for RecordId {
    type Error = UnsafeRecordId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RecordId::parse(&s)
    }
}

impl From<RecordId> for String {
    fn from(r: RecordId) -> String {
        r.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ffbfc4cc24428694e8b53a4e144f414052431693-1530718721124";

    #[test]
    fn record_id_validation() {
        let id = RecordId::parse(ID).unwrap();
        assert!(id.is_canonical());
        assert_eq!(id.short(), "ffbfc4cc");
        let other = RecordId::parse("Scalelite_Rec-42").unwrap();
        assert!(!other.is_canonical());
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            "a.b",
            "-rf",
            "a b",
            "é",
            "a\0b",
            &"a".repeat(129),
        ] {
            assert!(RecordId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn canonical_form() {
        assert!(is_canonical(ID));
        assert!(!is_canonical("../../etc/passwd"));
        assert!(!is_canonical(&ID.to_uppercase()));
        assert!(!is_canonical(&format!("{ID}0")));
        assert!(!is_canonical(&ID.replace('-', "_")));
        // Multi-byte characters must not be mistaken for 54 ASCII bytes.
        assert!(!is_canonical(&format!("é{}", &ID[2..])));
    }

    #[test]
    fn serde_refuses_an_unsafe_id() {
        let ok: RecordId = serde_json::from_str(&format!("{ID:?}")).unwrap();
        assert_eq!(ok.as_str(), ID);
        assert!(serde_json::from_str::<RecordId>("\"../x\"").is_err());
    }
}

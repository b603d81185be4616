//! The BBB API checksum: `hex(HASH(callName + queryStringWithoutChecksum + secret))`, computed and
//! verified exactly as bbb-web does (see pod-migration-spec.md §3.1). Owns nothing else.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// A hash that BBB accepts for API checksums. bbb-web 2.5+ picks the algorithm from the length of
/// the checksum it receives (40, 64, 96 or 128 hex digits), restricted by its
/// `supportedChecksumAlgorithms` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl ChecksumAlgorithm {
    /// All algorithms, the default set a BBB 2.5+ server accepts.
    pub const ALL: [ChecksumAlgorithm; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    /// Length of the lowercase hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha1 => 40,
            Self::Sha256 => 64,
            Self::Sha384 => 96,
            Self::Sha512 => 128,
        }
    }

    fn from_hex_len(len: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.hex_len() == len)
    }

    /// Parses `sha1`, `sha256`, `sha384` or `sha512` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest_hex(self, data: &[u8]) -> String {
        match self {
            Self::Sha1 => hex::encode(Sha1::digest(data)),
            Self::Sha256 => hex::encode(Sha256::digest(data)),
            Self::Sha384 => hex::encode(Sha384::digest(data)),
            Self::Sha512 => hex::encode(Sha512::digest(data)),
        }
    }
}

/// The checksum of one API call: `hex(HASH(call + query + secret))`, lowercase.
/// `query` is the query string exactly as it will be sent, without the `checksum` parameter.
pub fn checksum(algorithm: ChecksumAlgorithm, call: &str, query: &str, secret: &str) -> String {
    let data = format!("{call}{query}{secret}");
    algorithm.digest_hex(data.as_bytes())
}

/// Removes the checksum from a raw query string the way bbb-web's `GetChecksum` does: take the
/// first `checksum` parameter's value V, then delete every `&checksum=V`, then every
/// `checksum=V&`, then every `checksum=V`, as plain text; the rest stays byte for byte (bbb-web
/// hashes the query string as received, never re-encoded). Returns the remaining query and V.
pub(crate) fn split_checksum(raw_query: &str) -> (String, Option<String>) {
    let given = raw_query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some(("checksum", value)) => Some(value.to_owned()),
            _ if pair == "checksum" => Some(String::new()),
            _ => None,
        });
    let Some(v) = given else {
        return (raw_query.to_owned(), None);
    };
    let query = raw_query
        .replace(&format!("&checksum={v}"), "")
        .replace(&format!("checksum={v}&"), "")
        .replace(&format!("checksum={v}"), "");
    (query, Some(v))
}

/// Verifies a received call the way bbb-web does: the algorithm is chosen by the checksum's
/// length among `accepted`; the comparison is exact (lowercase hex). An empty secret disables the
/// check, as on BBB.
pub(crate) fn verify(
    accepted: &[ChecksumAlgorithm],
    call: &str,
    raw_query: &str,
    secret: &str,
) -> bool {
    if secret.is_empty() {
        return true;
    }
    let (query, Some(given)) = split_checksum(raw_query) else {
        return false;
    };
    let Some(algorithm) = ChecksumAlgorithm::from_hex_len(given.len()) else {
        return false;
    };
    accepted.contains(&algorithm) && checksum(algorithm, call, &query, secret) == given
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "639259d4-9dd8-4b25-bf01-95f9567eaf4b";

    #[test]
    fn spec_vectors() {
        // pod-migration-spec.md §3.1.
        let c = |q| checksum(ChecksumAlgorithm::Sha1, "getRecordings", q, SECRET);
        assert_eq!(c(""), "2d8ec9f1d49ac91a5068c0914bb414a9d83142c6");
        assert_eq!(
            c("offset=0&limit=100"),
            "195c230d70c9dc7bdf4e4ca9f63fd32e16c41409"
        );
        assert_eq!(c("recordID=0"), "7acc2bbbe0d0c3130ef3e59916b547a3749b6022");
    }

    #[test]
    fn known_vectors_of_sha2() {
        // Computed outside this code with coreutils:
        // `printf %s 'getRecordingsrecordID=0<SECRET>' | sha256sum` (sha384sum, sha512sum).
        let c = |a| checksum(a, "getRecordings", "recordID=0", SECRET);
        assert_eq!(
            c(ChecksumAlgorithm::Sha256),
            "9b8d60b6731fe91d147bda1292804f78cb3c3471c4e1dc47832da57f91fde2d8"
        );
        assert_eq!(
            c(ChecksumAlgorithm::Sha384),
            "9a2ee38fbae4fc8a2beec03f33ea83bea57e5266733183575697c3b2061ac3b755e45ed3c104cae07ca7850901ccd68e"
        );
        assert_eq!(
            c(ChecksumAlgorithm::Sha512),
            "15324a1fd6a46e0913cc76b2d90157d6f0c60318d7958e19f7bddc46cc35292ff601d3d5364224c67012e2404115c5a4c49126aab569e4ce651f5451cbc6295f"
        );
    }

    #[test]
    fn split_keeps_other_pairs_raw() {
        let (q, c) = split_checksum("a=%20b&checksum=abc&c=d+e");
        assert_eq!(q, "a=%20b&c=d+e");
        assert_eq!(c.as_deref(), Some("abc"));
        assert_eq!(
            split_checksum("checksum=x"),
            (String::new(), Some("x".into()))
        );
        // As bbb-web: plain text replacement of the first value, wherever it appears.
        assert_eq!(
            split_checksum("checksum=ab&meetingID=1&checksum=ab"),
            ("meetingID=1".into(), Some("ab".into()))
        );
        assert_eq!(
            split_checksum("checksum=ab&checksum=cd"),
            ("checksum=cd".into(), Some("ab".into()))
        );
        assert_eq!(split_checksum("meetingID=1"), ("meetingID=1".into(), None));
    }
}

//! BBB / Scalelite API client: checksums (spec 3.1), getRecordings with the three fetch strategies
//! (single, recordID prefix, offset/limit paging), retries with backoff on 5xx, timeouts and BBB's
//! HTML 404-on-timeout, and the raw-response cache. Owns every request to the API; never logs the
//! secret nor a checksummed URL (a checksum lets anyone replay that call).

pub mod xml;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use sha1::Digest;

use crate::recording::{RecordId, Recording};
pub use xml::{Malformed, ResponseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgo {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// `hex(H(call + query + secret))`, the BBB rule (query without `checksum`).
pub fn checksum(algo: ChecksumAlgo, call: &str, query: &str, secret: &str) -> String {
    let input = format!("{call}{query}{secret}");
    match algo {
        ChecksumAlgo::Sha1 => hex::encode(sha1::Sha1::digest(input.as_bytes())),
        ChecksumAlgo::Sha256 => hex::encode(sha2::Sha256::digest(input.as_bytes())),
        ChecksumAlgo::Sha384 => hex::encode(sha2::Sha384::digest(input.as_bytes())),
        ChecksumAlgo::Sha512 => hex::encode(sha2::Sha512::digest(input.as_bytes())),
    }
}

/// Base URL with exactly one trailing slash (the Python command required the user to add it).
pub fn normalize_base(base: &str) -> String {
    format!("{}/", base.trim().trim_end_matches('/'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchStrategy {
    /// One unfiltered call, like the Python command.
    Single,
    /// `recordID=0` .. `recordID=f`, merged: works on BBB and Scalelite, small responses.
    Prefix,
    /// BBB 2.6+ `offset`/`limit`, stopping at `totalElements`.
    Paged,
}

/// Page size for the paged strategy: bbb-web clamps `limit` to 1..100.
pub const PAGE_LIMIT: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("getRecordings {what}: request failed after {attempts} attempt(s): {message}")]
    Http {
        what: String,
        attempts: u32,
        message: String,
    },
    #[error(
        "getRecordings {what}: HTTP {status} after {attempts} attempt(s); body starts with {head:?}"
    )]
    Status {
        what: String,
        status: u16,
        attempts: u32,
        head: String,
    },
    #[error("getRecordings {what}: {source}")]
    Response {
        what: String,
        #[source]
        source: ResponseError,
    },
    #[error("getRecordings {what}: cache file {}: {message}", path.display())]
    Cache {
        what: String,
        path: PathBuf,
        message: String,
    },
}

/// Where getRecordings responses come from.
#[derive(Debug, Clone)]
pub enum CacheMode {
    /// Ask the server, keep nothing.
    Off,
    /// Ask the server and store each raw SUCCESS response in this directory.
    Write(PathBuf),
    /// Read the stored responses instead of asking the server (`--use-cache`).
    Read(PathBuf),
}

#[derive(Clone)]
pub struct ApiSettings {
    pub base_url: String,
    /// The shared secret: never in `Debug` output.
    pub secret: SecretString,
    pub checksum: ChecksumAlgo,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
}

/// Written out for the URL, shown redacted (a BBB URL may carry a token); the secret is
/// `secrecy`'s.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("base_url", &bbb_common::redact::url_text(&self.base_url))
            .field("secret", &self.secret)
            .field("checksum", &self.checksum)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct FetchResult {
    pub recordings: Vec<Recording>,
    pub malformed: Vec<Malformed>,
    pub requests: usize,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    settings: ApiSettings,
    base: String,
}

/// The largest getRecordings answer read: a server's whole list (10 000 recordings) is tens of
/// megabytes; anything far larger is refused before it fills the memory.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The body of `resp`, or `Err(None)` once it passes [`MAX_ANSWER_BYTES`].
async fn read_bounded(mut resp: reqwest::Response) -> Result<String, Option<reqwest::Error>> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

enum Attempt {
    Done(String),
    Retry(FetchError),
    Fatal(FetchError),
}

impl ApiClient {
    pub fn new(settings: ApiSettings) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .timeout(settings.timeout)
            .user_agent(concat!("bbb-migrate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = normalize_base(&settings.base_url);
        Ok(ApiClient {
            http,
            settings,
            base,
        })
    }

    /// The full URL of an API call, checksum included. Never log it.
    pub fn call_url(&self, call: &str, query: &str) -> String {
        let sum = checksum(
            self.settings.checksum,
            call,
            query,
            self.settings.secret.expose_secret(),
        );
        let sep = if query.is_empty() { "" } else { "&" };
        format!(
            "{}bigbluebutton/api/{call}?{query}{sep}checksum={sum}",
            self.base
        )
    }

    /// The loggable description of a call: the query without the checksum.
    fn describe(query: &str) -> String {
        if query.is_empty() {
            "(unfiltered)".to_owned()
        } else {
            format!("?{query}")
        }
    }

    async fn attempt(&self, query: &str, attempt: u32) -> Attempt {
        let what = Self::describe(query);
        let resp = match self
            .http
            .get(self.call_url("getRecordings", query))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Timeouts and refused/reset connections are the classic symptoms of an overloaded
                // bbb-web; retrying is the documented workaround (spec 3.4, 13).
                // without_url: reqwest would print the checksummed URL.
                let err = FetchError::Http {
                    what,
                    attempts: attempt,
                    message: error_chain(&e.without_url()),
                };
                return Attempt::Retry(err);
            }
        };
        let status = resp.status();
        let body = match read_bounded(resp).await {
            Ok(b) => b,
            Err(Some(e)) => {
                return Attempt::Retry(FetchError::Http {
                    what,
                    attempts: attempt,
                    message: error_chain(&e.without_url()),
                });
            }
            Err(None) => {
                return Attempt::Fatal(FetchError::Http {
                    what,
                    attempts: attempt,
                    message: format!(
                        "the answer is larger than {} MiB: refused",
                        MAX_ANSWER_BYTES >> 20
                    ),
                });
            }
        };
        if status.is_success() {
            return Attempt::Done(body);
        }
        let err = FetchError::Status {
            what,
            status: status.as_u16(),
            attempts: attempt,
            head: body.chars().take(120).collect(),
        };
        // A 404 whose body is not a BBB XML answer is nginx giving up on a slow bbb-web
        // (bigbluebutton #10570), not a missing endpoint: retry it like a 5xx.
        let html_404 = status.as_u16() == 404 && xml::parse_response(&body).is_err();
        if status.is_server_error() || html_404 || status.as_u16() == 429 {
            Attempt::Retry(err)
        } else {
            Attempt::Fatal(err)
        }
    }

    /// One getRecordings call with retries and exponential backoff.
    async fn get_raw(&self, query: &str) -> Result<String, FetchError> {
        let max = self.settings.retries + 1;
        let mut delay = self.settings.retry_delay;
        let mut n = 1;
        loop {
            match self.attempt(query, n).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(e) if n >= max => return Err(e),
                Attempt::Retry(e) => {
                    tracing::warn!(attempt = n, "{e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(120));
                    n += 1;
                }
            }
        }
    }

    async fn get_parsed(
        &self,
        query: &str,
        cache: &CacheMode,
    ) -> Result<xml::Response, FetchError> {
        let what = Self::describe(query);
        let body = match cache {
            CacheMode::Read(dir) => {
                let path = cache_file(dir, query);
                std::fs::read_to_string(&path).map_err(|e| FetchError::Cache {
                    what: what.clone(),
                    path: path.clone(),
                    message: format!("{e} (run once without --use-cache to fill the cache)"),
                })?
            }
            _ => self.get_raw(query).await?,
        };
        let parsed = xml::parse_response(&body).map_err(|source| FetchError::Response {
            what: what.clone(),
            source,
        })?;
        if let CacheMode::Write(dir) = cache {
            // Only parsed SUCCESS responses are cached: the Python command cached error pages too,
            // and a later cached run then silently found 0 recordings (spec 3.3).
            let path = cache_file(dir, query);
            bbb_common::durable::write_atomic(&path, body.as_bytes()).map_err(|e| {
                FetchError::Cache {
                    what,
                    path,
                    message: e.source.to_string(),
                }
            })?;
        }
        Ok(parsed)
    }

    /// Fetches every recording with the given strategy, merged by recordID.
    pub async fn fetch(
        &self,
        strategy: FetchStrategy,
        cache: &CacheMode,
    ) -> Result<FetchResult, FetchError> {
        let mut acc = Merge::default();
        match strategy {
            FetchStrategy::Single => acc.add(self.get_parsed("", cache).await?),
            FetchStrategy::Prefix => {
                let queries: Vec<String> = "0123456789abcdef"
                    .chars()
                    .map(|c| format!("recordID={c}"))
                    .collect();
                let mut results = futures::stream::iter(queries.iter())
                    .map(|q| self.get_parsed(q, cache))
                    .buffered(4);
                while let Some(r) = results.next().await {
                    acc.add(r?);
                }
            }
            FetchStrategy::Paged => {
                let mut offset = 0u64;
                loop {
                    let q = format!("offset={offset}&limit={PAGE_LIMIT}");
                    let page = self.get_parsed(&q, cache).await?;
                    let count = (page.recordings.len() + page.malformed.len()) as u64;
                    let total = page.total_elements;
                    acc.add(page);
                    offset += PAGE_LIMIT;
                    match total {
                        // No totalElements: the server ignored offset/limit and sent everything.
                        None => {
                            tracing::warn!(
                                "the server sent no totalElements: it does not paginate (BBB < 2.6 or Scalelite); took the whole answer"
                            );
                            break;
                        }
                        // bbb-web throws on an offset past the end (spec 3.4 pitfall 4): stop at the total.
                        Some(t) if offset >= t => break,
                        Some(_) if count == 0 => break,
                        Some(_) => {}
                    }
                }
            }
        }
        Ok(acc.finish())
    }

    /// Re-reads one recording (a fresh one-time token for protected Scalelite playbacks).
    pub async fn get_recording(&self, id: &RecordId) -> Result<Option<Recording>, FetchError> {
        let resp = self
            .get_parsed(&format!("recordID={}", id.as_str()), &CacheMode::Off)
            .await?;
        Ok(resp.recordings.into_iter().find(|r| &r.record_id == id))
    }
}

#[derive(Default)]
struct Merge {
    by_id: std::collections::BTreeMap<RecordId, Recording>,
    malformed: Vec<Malformed>,
    requests: usize,
}

impl Merge {
    fn add(&mut self, resp: xml::Response) {
        self.requests += 1;
        self.malformed.extend(resp.malformed);
        for r in resp.recordings {
            match self.by_id.get_mut(&r.record_id) {
                // bbb-web may list one recording once per format, or on two pages (spec 3.4).
                Some(existing) => {
                    for f in r.formats {
                        if !existing.formats.contains(&f) {
                            existing.formats.push(f);
                        }
                    }
                }
                None => {
                    self.by_id.insert(r.record_id.clone(), r);
                }
            }
        }
    }

    fn finish(self) -> FetchResult {
        FetchResult {
            recordings: self.by_id.into_values().collect(),
            malformed: self.malformed,
            requests: self.requests,
        }
    }
}

/// The cache file of one query. Queries are built here from safe characters only.
pub fn cache_file(dir: &Path, query: &str) -> PathBuf {
    if query.is_empty() {
        dir.join("getRecordings.xml")
    } else {
        dir.join(format!(
            "getRecordings.{}.xml",
            query.replace('&', "_").replace('=', "-")
        ))
    }
}

/// The error and its causes on one line (reqwest hides the useful part in `source()`).
pub use bbb_common::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "639259d4-9dd8-4b25-bf01-95f9567eaf4b";

    #[test]
    fn debug_output_never_shows_the_secret() {
        let settings = ApiSettings {
            base_url: "https://bbb.example.org/bigbluebutton/".into(),
            secret: SECRET.into(),
            checksum: ChecksumAlgo::Sha1,
            timeout: Duration::from_secs(1),
            retries: 0,
            retry_delay: Duration::from_millis(1),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("bbb.example.org"), "{shown}");
    }

    #[test]
    fn checksum_vectors_of_spec_3_1() {
        assert_eq!(
            checksum(ChecksumAlgo::Sha1, "getRecordings", "", SECRET),
            "2d8ec9f1d49ac91a5068c0914bb414a9d83142c6"
        );
        assert_eq!(
            checksum(
                ChecksumAlgo::Sha1,
                "getRecordings",
                "offset=0&limit=100",
                SECRET
            ),
            "195c230d70c9dc7bdf4e4ca9f63fd32e16c41409"
        );
        assert_eq!(
            checksum(ChecksumAlgo::Sha1, "getRecordings", "recordID=0", SECRET),
            "7acc2bbbe0d0c3130ef3e59916b547a3749b6022"
        );
    }

    /// Known values, computed outside this code with coreutils, BBB's rule
    /// hex(HASH(call name + query string + secret)):
    /// `printf %s 'getRecordings<query><SECRET>' | sha256sum` (sha1sum, sha384sum, sha512sum).
    const KNOWN: [(ChecksumAlgo, &str, &str); 8] = [
        (
            ChecksumAlgo::Sha256,
            "",
            "ff87a566827fe603090c7ec37bc5c14c38d9e104219b57becbdcd3ed9e99dcd3",
        ),
        (
            ChecksumAlgo::Sha256,
            "offset=0&limit=100",
            "72b6518292432d29c7a00f362f60f7b5235565eddeab363657acfce2ca15da63",
        ),
        (
            ChecksumAlgo::Sha384,
            "",
            "c10f091ba8a3bc710630f67f692f0776f3c2cc087d9931569100e92b3439948144b1e40a740d5952b37a0ef1987a11e2",
        ),
        (
            ChecksumAlgo::Sha384,
            "offset=0&limit=100",
            "98c22e9dc8b0b8b9d62587920d4f9e8d8e799b2f4aeb8214e010d3a1c96b211113add674823eb2761dbb02eb119d6347",
        ),
        (
            ChecksumAlgo::Sha512,
            "",
            "b153adb97c531d6c8cc804e4870aa3e9a59276f98881a94b17917e62e2aa67ec5233b5fc0a636a0ad2c3202c300f8fbeda00eccba97821580877fd283844be8f",
        ),
        (
            ChecksumAlgo::Sha512,
            "offset=0&limit=100",
            "dc85138bf47cf7b7dff18f1243a68c1fd572615100234e7f0e8c8011c6329c4e5609833b9c18765116d64e37912c1ecb768a5e09f0ded5a811a217e50156775c",
        ),
        (
            ChecksumAlgo::Sha1,
            "meetingID=a%20b+c&state=any",
            "70074331b7dd11a871dcabca9d3ab616c7b1ebde",
        ),
        (
            ChecksumAlgo::Sha256,
            "meetingID=a%20b+c&state=any",
            "9f64d2430d90e5dcadaac1c44c15c510fe1a508d86c0cfcac0464b30c6be9cd9",
        ),
    ];

    #[test]
    fn checksum_known_vectors_of_every_algorithm() {
        for (algo, query, sum) in KNOWN {
            assert_eq!(
                checksum(algo, "getRecordings", query, SECRET),
                sum,
                "{algo:?} {query:?}"
            );
        }
    }

    #[test]
    fn urls_carry_the_configured_algorithms_checksum() {
        for (algo, query, sum) in KNOWN {
            let c = ApiClient::new(ApiSettings {
                base_url: "https://bbb.example.org".into(),
                secret: SECRET.into(),
                checksum: algo,
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_delay: Duration::from_millis(1),
            })
            .unwrap();
            let sep = if query.is_empty() { "" } else { "&" };
            assert_eq!(
                c.call_url("getRecordings", query),
                format!(
                    "https://bbb.example.org/bigbluebutton/api/getRecordings?{query}{sep}checksum={sum}"
                ),
                "{algo:?}"
            );
        }
    }

    #[test]
    fn urls_with_and_without_trailing_slash() {
        for base in [
            "https://bbb.example.org",
            "https://bbb.example.org/",
            "https://bbb.example.org//",
        ] {
            let c = ApiClient::new(ApiSettings {
                base_url: base.into(),
                secret: SECRET.into(),
                checksum: ChecksumAlgo::Sha1,
                timeout: Duration::from_secs(1),
                retries: 0,
                retry_delay: Duration::from_millis(1),
            })
            .unwrap();
            assert_eq!(
                c.call_url("getRecordings", "offset=0&limit=100"),
                "https://bbb.example.org/bigbluebutton/api/getRecordings?offset=0&limit=100&checksum=195c230d70c9dc7bdf4e4ca9f63fd32e16c41409"
            );
            assert_eq!(
                c.call_url("getRecordings", ""),
                "https://bbb.example.org/bigbluebutton/api/getRecordings?checksum=2d8ec9f1d49ac91a5068c0914bb414a9d83142c6"
            );
        }
    }
}

//! Scalelite-style protected recordings: one-time tokens that, redeemed at
//! `/recording/<id>/<format>?token=T`, set a cookie granting access to that recording's files
//! (scalelite `docs/protectedrecordings_README.md`). Owns tokens and granted cookies only.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;

/// Scalelite's default `PROTECTED_RECORDINGS_TOKEN_TIMEOUT`.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Default)]
pub(crate) struct Protection {
    tokens: Mutex<HashMap<String, Pending>>,
    /// Granted `(cookie name, cookie value)` pairs.
    granted: Mutex<HashSet<(String, String)>>,
}

#[derive(Debug)]
struct Pending {
    record_id: String,
    format: String,
    expires: Instant,
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The cookie that grants `format` of `record_id`; Scalelite names it after both.
pub(crate) fn cookie_name(record_id: &str, format: &str) -> String {
    format!("recording_{format}_{record_id}")
}

impl Protection {
    pub(crate) fn mint(&self, record_id: &str, format: &str) -> String {
        let token = random_string(32);
        let pending = Pending {
            record_id: record_id.to_owned(),
            format: format.to_owned(),
            expires: Instant::now() + TOKEN_TTL,
        };
        lock(&self.tokens).insert(token.clone(), pending);
        token
    }

    /// Consumes `token` if it was minted for this recording and format and has not expired or
    /// been used; returns the cookie `(name, value)` to set.
    pub(crate) fn redeem(
        &self,
        token: &str,
        record_id: &str,
        format: &str,
    ) -> Option<(String, String)> {
        let mut tokens = lock(&self.tokens);
        let ok = tokens.get(token).is_some_and(|p| {
            p.record_id == record_id && p.format == format && p.expires > Instant::now()
        });
        if !ok {
            return None;
        }
        // A token works once, as in Scalelite.
        tokens.remove(token);
        drop(tokens);
        let cookie = (cookie_name(record_id, format), random_string(32));
        lock(&self.granted).insert(cookie.clone());
        Some(cookie)
    }

    /// Whether the request's `Cookie` header carries a granted cookie for this recording.
    pub(crate) fn allows(
        &self,
        cookie_header: Option<&str>,
        record_id: &str,
        format: &str,
    ) -> bool {
        let Some(header) = cookie_header else {
            return false;
        };
        let wanted = cookie_name(record_id, format);
        let granted = lock(&self.granted);
        header.split(';').any(|pair| {
            pair.trim().split_once('=').is_some_and(|(k, v)| {
                k == wanted && granted.contains(&(k.to_owned(), v.to_owned()))
            })
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

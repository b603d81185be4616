//! Creating Pod users through Pod's REST API instead of SQL (spec 6.6 RECOMMENDED): `POST
//! <rest_url>users/` with a staff token (`Authorization: Token …`, Django REST framework's
//! `IsAdminUser`). Pod's own signals then write the owner, site, home folder and Favorites rows,
//! with Pod's settings and SECRET_KEY. The body is what Pod's `UserSerializer` accepts
//! (`pod/authentication/rest_views.py`, routed by `pod/main/rest_router.py` under `/rest/`):
//! `username, first_name, last_name, email, is_staff, groups`; Pod answers 201.
//!
//! This file owns [`PodRest`], one [`UserCreator`] of the import policy.
//!
//! The token is a secret: it is never printed, logged, or put into an error message.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::place::pod::{NewUser, PodError, PodUser, UserCreator, UserDefaults};

#[derive(Clone, Debug)]
pub struct PodRest {
    client: reqwest::Client,
    users_url: url::Url,
    token: SecretString,
}

impl PodRest {
    /// `rest_url` is Pod's REST root (`https://pod.example.org/rest/`), with or without the
    /// trailing slash.
    pub fn new(rest_url: &str, token: &str, timeout: Duration) -> Result<PodRest, PodError> {
        let mut base = url::Url::parse(rest_url)
            .map_err(|e| PodError::Invalid(format!("[pod] rest_url {rest_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(PodError::Invalid(format!(
                "[pod] rest_url {rest_url:?}: must be http or https"
            )));
        }
        if token.is_empty() {
            return Err(PodError::Invalid(
                "[pod] rest_url is set but rest_token (or POD_REST_TOKEN) is not".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let users_url = base
            .join("users/")
            .map_err(|e| PodError::Invalid(format!("[pod] rest_url {rest_url:?}: {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PodError::Invalid(format!("HTTP client: {e}")))?;
        Ok(PodRest {
            client,
            users_url,
            token: token.into(),
        })
    }

    pub fn users_url(&self) -> &str {
        self.users_url.as_str()
    }

    /// Creates the user as staff (what the Python command's `User.objects.create` did).
    /// Anything but 201 is an error carrying the status and the start of Pod's answer.
    pub async fn create_user(&self, new: &NewUser) -> Result<(), PodError> {
        let body = serde_json::json!({
            "username": new.username,
            "first_name": new.first_name,
            "last_name": new.last_name,
            "email": new.email,
            "is_staff": true,
            "groups": [],
        });
        let resp = self
            .client
            .post(self.users_url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Token {}", self.token.expose_secret()),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                PodError::Rest(format!(
                    "POST {}: {}",
                    self.users_url,
                    crate::api::error_chain(&e.without_url())
                ))
            })?;
        let status = resp.status();
        if status == reqwest::StatusCode::CREATED {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        Err(PodError::Rest(format!(
            "POST {} for user {:?}: HTTP {status}: {}",
            self.users_url,
            new.username,
            text.replace(self.token.expose_secret(), "<redacted>")
        )))
    }
}

impl UserCreator for PodRest {
    fn via(&self) -> &'static str {
        " (REST API)"
    }

    /// Pod writes the rows with its own settings: `defaults` are not used, and the user is read
    /// back from Pod's database by the caller.
    async fn create_user(
        &self,
        new: &NewUser,
        _defaults: &UserDefaults,
    ) -> Result<Option<PodUser>, PodError> {
        PodRest::create_user(self, new).await.map(|()| None)
    }
}

//! [`MiniAppCredentials`]: a mini-app's app token (`access_token` of the mini-app server APIs),
//! from its `appid` and `secret`, and the mini-app login (`code2session`).

use std::fmt;

use serde::Serialize;

use super::code2session::{parse_session, LoginCode, Session};
use super::http::{normalise_base_url, post_answer, post_token, HttpClient, Payload};
use crate::error::{BoxError, Error};
use crate::source::TokenSource;
use crate::token::{Secret, Token};

/// The host of the mini-app server APIs.
pub const MINI_APP_BASE_URL: &str = "https://developer.toutiao.com";

const TOKEN_PATH: &str = "/api/apps/v2/token";
const LOGIN_PATH: &str = "/api/apps/v2/jscode2session";

/// A [`TokenSource`] of a mini-app's app token.
///
/// It POSTs JSON `{"appid", "secret", "grant_type": "client_credential"}` to
/// `https://developer.toutiao.com/api/apps/v2/token` and reads
/// `{"err_no": 0, "err_tips": "success", "data": {"access_token", "expires_in"}}`; an error
/// answer (`{"err_no": 40017, "err_tips": "bad secret"}`) becomes
/// [`Error::Douyin`](crate::Error::Douyin).
///
/// **Every fetch makes a new token and cuts the previous one to five minutes.** Instances that
/// each fetch their own break each other's tokens: share one through
/// [`SharedSource`](crate::store::SharedSource) (Redis for a fleet), as the example shows.
/// Mini-app server APIs live on the same host; most take the token in the `access-token`
/// header (the layer's default), some in the `access_token` header
/// ([`TokenPlacement::access_token_underscore`](crate::TokenPlacement::access_token_underscore));
/// use [`DouyinExpiry::for_family(Family::MiniApp)`](crate::expiry::DouyinExpiry::for_family)
/// so the old APIs' 40002 "bad access_token" counts as a rejection.
///
/// Its `Debug` shows the `appid`, never the `secret`.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # fn demo() {
/// use douyin_auth::douyin::codes::Family;
/// use douyin_auth::douyin::MiniAppCredentials;
/// use douyin_auth::expiry::DouyinExpiry;
/// use douyin_auth::store::{MemoryStore, SharedSource};
/// use douyin_auth::DouyinAuthLayer;
///
/// let app = MiniAppCredentials::new("tt_my_app_id", "my_app_secret");
/// // One token for every instance (a `RedisStore` for a fleet).
/// let shared = SharedSource::new(app, MemoryStore::new(), "mini_app_token:tt_my_app_id");
/// let layer = DouyinAuthLayer::builder(shared)
///     .classifier(DouyinExpiry::for_family(Family::MiniApp))
///     .build();
/// # drop(layer); }
/// ```
#[derive(Clone)]
pub struct MiniAppCredentials<C> {
    appid: String,
    secret: Secret,
    client: C,
    base_url: String,
}

#[cfg(feature = "https")]
impl MiniAppCredentials<super::HttpsClient> {
    /// The mini-app `appid` and `secret`, fetching over the built-in HTTPS client (feature
    /// `https`).
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::with_client(appid, secret, super::HttpsClient::new())
    }
}

impl<C> MiniAppCredentials<C> {
    /// The mini-app `appid` and `secret`, sending requests through `client`, any tower HTTP
    /// service.
    pub fn with_client(appid: impl Into<String>, secret: impl Into<String>, client: C) -> Self {
        Self {
            appid: appid.into(),
            secret: Secret::new(secret),
            client,
            base_url: MINI_APP_BASE_URL.to_owned(),
        }
    }

    /// Sets the base URL (default `https://developer.toutiao.com`), e.g. a local mock server.
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// The mini-app's `appid`.
    pub fn appid(&self) -> &str {
        &self.appid
    }
}

#[derive(Serialize)]
pub(crate) struct AppTokenRequest<'a> {
    pub(crate) appid: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) grant_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) force_refresh: Option<bool>,
}

#[derive(Serialize)]
struct LoginRequest<'a> {
    appid: &'a str,
    secret: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    code: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    anonymous_code: &'a str,
}

pub(crate) fn json<T: Serialize>(value: &T, what: &str) -> Result<Payload, Error> {
    serde_json::to_vec(value)
        .map(Payload::Json)
        .map_err(|_| Error::Protocol(format!("could not encode the {what} request")))
}

impl<C: HttpClient> MiniAppCredentials<C> {
    /// Fetches a new app token, with the crate's typed [`Error`]. The previous token stays
    /// valid for five more minutes.
    pub async fn fetch_token(&self) -> Result<Token, Error> {
        let payload = json(
            &AppTokenRequest {
                appid: &self.appid,
                secret: self.secret.expose(),
                grant_type: "client_credential",
                force_refresh: None,
            },
            "mini-app token",
        )?;
        let answer = post_token(&self.client, &self.base_url, TOKEN_PATH, payload).await?;
        let (access_token, expires_in) = answer.require_access(TOKEN_PATH)?;
        Ok(Token::new(access_token, expires_in))
    }

    /// Logs a user in: POST JSON `appid`, `secret`, `code`, `anonymous_code` to
    /// `/api/apps/v2/jscode2session`; see [`code2session`](super::code2session).
    pub async fn code2session(&self, code: &LoginCode) -> Result<Session, Error> {
        code.check()?;
        let payload = json(
            &LoginRequest {
                appid: &self.appid,
                secret: self.secret.expose(),
                code: code.code(),
                anonymous_code: code.anonymous_code(),
            },
            "code2session",
        )?;
        let body = post_answer(&self.client, &self.base_url, LOGIN_PATH, payload).await?;
        parse_session(&body, LOGIN_PATH)
    }
}

impl<C: HttpClient> TokenSource for MiniAppCredentials<C> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetch_token().await.map_err(Into::into)
    }
}

impl<C> fmt::Debug for MiniAppCredentials<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniAppCredentials")
            .field("appid", &self.appid)
            .field("secret", &self.secret)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use super::*;
    use crate::douyin::codes::CodeKind;
    use crate::douyin::http::test_support::mock;

    // Recorded from Douyin's mini-app "get access token" doc (server API, non-user
    // authorization) and the official Node SDK (`@open-dy/open_api_sdk` 1.1.0, `v2Token`:
    // POST developer.toutiao.com /api/apps/v2/token, JSON appid, grant_type, secret).
    const OK: &str = r#"{"err_no":0,"err_tips":"success","data":{"access_token":"0801121SECRET","expires_in":7200}}"#;
    const BAD_SECRET: &str = r#"{"err_no":40017,"err_tips":"bad secret","data":null}"#;
    // `V2Jscode2sessionResponse` of the same SDK.
    const LOGIN: &str = r#"{"err_no":0,"err_tips":"success","data":{"session_key":"SKSECRET","openid":"o-1","anonymous_openid":"","unionid":"u-1"}}"#;

    #[tokio::test]
    async fn token_request_and_answer() {
        let (client, seen) = mock(vec![(200, OK)]);
        let app = MiniAppCredentials::with_client("tt_app", "APPSECRET", client);
        let token = app.fetch().await.unwrap();
        assert_eq!(token.secret(), "0801121SECRET");
        assert_eq!(token.expires_in(), Duration::from_secs(7200));
        let seen = seen.lock().unwrap();
        let req = &seen[0];
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.uri, "https://developer.toutiao.com/api/apps/v2/token");
        assert_eq!(req.content_type, "application/json");
        assert_eq!(
            req.json(),
            serde_json::json!({"appid": "tt_app", "secret": "APPSECRET", "grant_type": "client_credential"})
        );
    }

    #[tokio::test]
    async fn bad_secret_is_a_typed_error_without_the_secret() {
        let (client, _) = mock(vec![(200, BAD_SECRET)]);
        let app = MiniAppCredentials::with_client("tt_app", "APPSECRET", client);
        let err = app.fetch_token().await.unwrap_err();
        let d = err.douyin().unwrap();
        assert_eq!((d.code(), d.kind()), (40_017, CodeKind::BadCredentials));
        assert!(!format!("{err} {err:?} {app:?}").contains("APPSECRET"));
    }

    #[tokio::test]
    async fn code2session_posts_json() {
        let (client, seen) = mock(vec![(200, LOGIN)]);
        let app = MiniAppCredentials::with_client("tt_app", "APPSECRET", client)
            .base_url("http://127.0.0.1:9/");
        let s = app.code2session(&LoginCode::new("CODE1")).await.unwrap();
        assert_eq!((s.openid(), s.unionid()), (Some("o-1"), Some("u-1")));
        assert_eq!(s.session_key(), Some("SKSECRET"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].uri, "http://127.0.0.1:9/api/apps/v2/jscode2session");
        assert_eq!(
            seen[0].json(),
            serde_json::json!({"appid": "tt_app", "secret": "APPSECRET", "code": "CODE1"})
        );
    }
}

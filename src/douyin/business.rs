//! [`BusinessTokens`]: one account's business (经营) token for one scope, from
//! `/oauth/business_token/`, refreshed with `/oauth/refresh_biz_token/`, each new token handed
//! to a persistence hook before it is used.

use std::fmt;
use std::time::Duration;

use super::user_tokens::{PersistHook, UserTokens};
use super::HttpClient;
use crate::error::{BoxError, Error};
use crate::source::TokenSource;
use crate::token::Token;

/// The path of the business-token endpoint.
pub const BUSINESS_TOKEN_PATH: &str = "/oauth/business_token/";
/// The path of the business-token refresh endpoint.
pub const REFRESH_BIZ_TOKEN_PATH: &str = "/oauth/refresh_biz_token/";

/// A [`TokenSource`] of one account's business token for one scope.
///
/// Each [`fetch`](TokenSource::fetch):
/// 1. hands out the stored token (see [`stored`](Self::stored)) as it is on the first fetch
///    when it has at least [`ADOPT_MIN_REMAINING`](super::ADOPT_MIN_REMAINING) left;
/// 2. offers a token still waiting for the persistence hook (it failed last time) again, and
///    hands it out if it is still valid;
/// 3. with a live `biz_refresh_token`: POSTs JSON `{"client_key", "client_secret",
///    "refresh_token"}` to `/oauth/refresh_biz_token/`; without one, or when Douyin refuses
///    the refresh with a code that is not transient, POSTs JSON `{"client_key",
///    "client_secret", "open_id", "scope"}` to `/oauth/business_token/`;
/// 4. reads `data.biz_token`, `biz_expires_in`, `biz_refresh_token` and
///    `biz_refresh_expires_in` (numbers or strings; the top-level `error_code` and `message`
///    carry errors), hands the new token to the [persistence hook](Self::on_refresh) and only
///    then returns it. If the hook fails, the fetch fails with
///    [`Error::Persist`](crate::Error::Persist), the new token stays the current one (a
///    consumed refresh token is not lost) and the next fetch offers it to the hook again.
///
/// This is [`UserTokens`]'s machinery with the business endpoints: fetches of one source (and
/// its clones) run one at a time, so one refresh token is never used twice at once. The token
/// carries the account's `open_id`, the scope and the refresh token, so a store can keep it
/// under [`store_key`](Self::store_key). Its `Debug` never shows a secret.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # fn demo() {
/// use douyin_auth::douyin::BusinessTokens;
/// use douyin_auth::{BoxError, DouyinAuthLayer, Token};
///
/// let biz = BusinessTokens::new("my_client_key", "my_client_secret", "ACCOUNT_OPEN_ID", "SCOPE")
///     .on_refresh(|token: Token| async move {
///         // write token.secret(), token.refresh_token(), … to the database
///         Ok::<_, BoxError>(())
///     });
/// let layer = DouyinAuthLayer::new(biz);
/// # drop(layer); }
/// ```
pub struct BusinessTokens<C> {
    inner: UserTokens<C>,
    open_id: String,
    scope: String,
}

impl<C: Clone> Clone for BusinessTokens<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            open_id: self.open_id.clone(),
            scope: self.scope.clone(),
        }
    }
}

#[cfg(feature = "https")]
impl BusinessTokens<super::HttpsClient> {
    /// The business token of the account `open_id` for `scope`, over the built-in HTTPS
    /// client (feature `https`).
    pub fn new(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        open_id: impl Into<String>,
        scope: impl Into<String>,
    ) -> Self {
        Self::with_client(
            client_key,
            client_secret,
            open_id,
            scope,
            super::HttpsClient::new(),
        )
    }
}

impl<C> BusinessTokens<C> {
    /// The business token of the account `open_id` for `scope`, through `client`, any tower
    /// HTTP service.
    pub fn with_client(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        open_id: impl Into<String>,
        scope: impl Into<String>,
        client: C,
    ) -> Self {
        let open_id = open_id.into();
        let scope = scope.into();
        // No token yet: the first fetch asks `/oauth/business_token/`.
        let none = Token::new("", Duration::ZERO).with_open_id(open_id.clone());
        let inner = UserTokens::with_client(client_key, client_secret, none, client)
            .business(scope.clone());
        Self {
            inner,
            open_id,
            scope,
        }
    }

    /// Starts from a token persisted earlier (by the [hook](Self::on_refresh)): its business
    /// token is used while valid and its refresh token refreshes it.
    #[must_use]
    pub fn stored(mut self, token: Token) -> Self {
        let token = token.with_open_id(self.open_id.clone());
        self.inner = self.inner.with_current(token);
        self
    }

    /// Sets the base URL (default `https://open.douyin.com`).
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.inner = self.inner.base_url(base_url);
        self
    }

    /// Sets the persistence hook that receives every new business token before it is used.
    #[must_use]
    pub fn on_refresh(mut self, hook: impl PersistHook) -> Self {
        self.inner = self.inner.on_refresh(hook);
        self
    }

    /// The account's `open_id`.
    pub fn open_id(&self) -> &str {
        &self.open_id
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A store key for this account and scope: `biz:<open_id>:<scope>` (never a secret).
    pub fn store_key(&self) -> String {
        format!("biz:{}:{}", self.open_id, self.scope)
    }

    /// The current token (the last one fetched, or the stored one), which may be waiting for
    /// the persistence hook.
    pub fn current(&self) -> Token {
        self.inner.current()
    }
}

impl<C: HttpClient> BusinessTokens<C> {
    /// Fetches a business token, with the crate's typed [`Error`]; see the type docs.
    pub async fn fetch_token(&self) -> Result<Token, Error> {
        self.inner.fetch_token().await
    }
}

impl<C: HttpClient> TokenSource for BusinessTokens<C> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetch_token().await.map_err(Into::into)
    }
}

impl<C> fmt::Debug for BusinessTokens<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusinessTokens")
            .field("open_id", &self.open_id)
            .field("scope", &self.scope)
            .field("inner", &self.inner)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::Method;

    use super::*;
    use crate::douyin::http::test_support::mock;

    // Recorded from the official Node SDK (`@open-dy/open_api_sdk` 1.1.0): `oauthBusinessToken`
    // and `oauthRefreshBizToken` (POST open.douyin.com, JSON), their models
    // `OauthBusinessTokenResponse{data{biz_token, biz_expires_in, biz_refresh_token,
    // biz_refresh_expires_in}, error_code, message}` (all strings there).
    const ISSUED: &str = r#"{"data":{"biz_token":"bzt.SECRET1","biz_expires_in":"2592000","biz_refresh_token":"bzr.SECRET1","biz_refresh_expires_in":"5184000"},"error_code":"0","message":"success"}"#;
    const REFRESHED: &str = r#"{"data":{"biz_token":"bzt.SECRET2","biz_expires_in":2592000,"biz_refresh_token":"bzr.SECRET2","biz_refresh_expires_in":5184000},"error_code":0,"message":"success"}"#;
    const REFUSED: &str = r#"{"data":{},"error_code":"10010","message":"refresh_token expired"}"#;
    const BUSY: &str = r#"{"data":{},"error_code":"2100004","message":"system busy"}"#;

    fn hook(log: Arc<Mutex<Vec<String>>>, fail_first: bool) -> impl PersistHook {
        let failed = Arc::new(Mutex::new(!fail_first));
        move |t: Token| {
            let log = log.clone();
            let failed = failed.clone();
            async move {
                let mut f = failed.lock().unwrap();
                if !*f {
                    *f = true;
                    return Err::<(), BoxError>("db down".into());
                }
                log.lock().unwrap().push(t.secret().to_owned());
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn first_fetch_asks_business_token_then_refreshes() {
        let (client, seen) = mock(vec![(200, ISSUED), (200, REFRESHED)]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let biz =
            BusinessTokens::with_client("key1", "KEYSECRET", "acct-1", "data.external", client)
                .on_refresh(hook(log.clone(), false));
        let t = biz.fetch().await.unwrap();
        assert_eq!(t.secret(), "bzt.SECRET1");
        assert_eq!(t.open_id(), Some("acct-1"));
        assert_eq!(t.scopes(), ["data.external"]);
        assert_eq!(t.refresh_token(), Some("bzr.SECRET1"));
        assert_eq!(t.expires_in(), Duration::from_secs(2_592_000));
        let t = biz.fetch().await.unwrap();
        assert_eq!(t.secret(), "bzt.SECRET2");
        assert_eq!(*log.lock().unwrap(), ["bzt.SECRET1", "bzt.SECRET2"]);

        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].uri, "https://open.douyin.com/oauth/business_token/");
        assert_eq!(seen[0].content_type, "application/json");
        assert_eq!(
            seen[0].json(),
            serde_json::json!({"client_key": "key1", "client_secret": "KEYSECRET",
                "open_id": "acct-1", "scope": "data.external"})
        );
        assert_eq!(
            seen[1].uri,
            "https://open.douyin.com/oauth/refresh_biz_token/"
        );
        assert_eq!(
            seen[1].json(),
            serde_json::json!({"client_key": "key1", "client_secret": "KEYSECRET",
                "refresh_token": "bzr.SECRET1"})
        );
        assert!(!format!("{biz:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn a_failed_write_keeps_the_token_and_offers_it_again_before_use() {
        let (client, seen) = mock(vec![(200, ISSUED)]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let biz = BusinessTokens::with_client("k", "s", "acct-1", "scope", client)
            .on_refresh(hook(log.clone(), true));
        let err = biz.fetch_token().await.unwrap_err();
        assert!(matches!(err, Error::Persist(_)), "{err:?}");
        assert!(log.lock().unwrap().is_empty(), "not handed out unsaved");
        let t = biz.fetch_token().await.unwrap();
        assert_eq!(t.secret(), "bzt.SECRET1");
        assert_eq!(*log.lock().unwrap(), ["bzt.SECRET1"]);
        assert_eq!(seen.lock().unwrap().len(), 1, "no second token call");
    }

    #[tokio::test]
    async fn a_refused_refresh_asks_for_a_new_token_a_busy_one_does_not() {
        let stored = Token::new("bzt.OLD", Duration::from_secs(60))
            .with_refresh_token("bzr.OLD", Duration::from_secs(86_400));
        let (client, seen) = mock(vec![(200, REFUSED), (200, ISSUED), (200, BUSY)]);
        let biz = BusinessTokens::with_client("k", "s", "acct-1", "scope", client).stored(stored);
        assert_eq!(biz.fetch_token().await.unwrap().secret(), "bzt.SECRET1");
        {
            let seen = seen.lock().unwrap();
            assert!(seen[0].uri.ends_with(REFRESH_BIZ_TOKEN_PATH));
            assert!(seen[1].uri.ends_with(BUSINESS_TOKEN_PATH));
        }
        let err = biz.fetch_token().await.unwrap_err();
        assert_eq!(err.douyin().map(|d| d.code()), Some(2_100_004));
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(biz.store_key(), "biz:acct-1:scope");
    }
}

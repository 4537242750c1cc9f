//! [`MiniGameCredentials`]: a mini-game's app token, from the stable endpoint by default, with a
//! capped `force_refresh` after Douyin rejected the token; and the mini-game login
//! (`code2session`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::code2session::{parse_session, LoginCode, Session};
use super::http::{get_answer, normalise_base_url, post_token, HttpClient};
use super::mini_app::{json, AppTokenRequest};
use crate::error::{BoxError, Error};
use crate::source::TokenSource;
use crate::sync::lock;
use crate::token::{Secret, Token};

/// The host of the mini-game server APIs.
pub const MINI_GAME_BASE_URL: &str = "https://minigame.zijieapi.com";

/// Default number of forced refreshes one [`MiniGameCredentials`] spends in 24 hours: 10, half
/// of Douyin's cap of 20 a day for the whole app.
pub const DEFAULT_MAX_FORCE_REFRESHES: usize = 10;

/// Default shortest time between two forced refreshes: 10 minutes.
pub const DEFAULT_FORCE_REFRESH_INTERVAL: Duration = Duration::from_secs(600);

const LOGIN_PATH: &str = "/mgplatform/api/apps/jscode2session";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Which endpoint [`MiniGameCredentials`] asks for the app token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MiniGameTokenEndpoint {
    /// `/mgplatform/api/apps/stable_token` (the default): the same token while it is valid, so
    /// instances do not cut each other's tokens; `force_refresh` only after a rejection.
    #[default]
    Stable,
    /// `/mgplatform/api/apps/v2/token`: a new token each call, the previous one cut to five
    /// minutes.
    Classic,
}

impl MiniGameTokenEndpoint {
    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Stable => "/mgplatform/api/apps/stable_token",
            Self::Classic => "/mgplatform/api/apps/v2/token",
        }
    }
}

/// What the source remembers to decide on a forced refresh.
#[derive(Default)]
struct ForceState {
    /// When the forced refreshes of the last 24 hours were sent, oldest first.
    forced: VecDeque<Instant>,
}

/// A [`TokenSource`] of a mini-game's app token.
///
/// By default it POSTs JSON `{"appid", "secret", "grant_type": "client_credential",
/// "force_refresh": false}` to `https://minigame.zijieapi.com/mgplatform/api/apps/stable_token`,
/// which hands back the same token while it is valid; [`classic`](Self::classic) uses
/// `/mgplatform/api/apps/v2/token` (a new token per call, the previous one cut to five minutes).
/// Answers: `{"err_no": 0, "err_tips": "success", "data": {"access_token", "expires_in",
/// "expires_at"}}`, errors in any of Douyin's shapes.
///
/// # Forced refresh, capped
///
/// `force_refresh: true` kills the current token at once and Douyin allows it 20 times a day
/// per app. [`fetch`](TokenSource::fetch) never sends it. The layer calls
/// [`fetch_replacing`](TokenSource::fetch_replacing) after Douyin rejected a token; it asks
/// the stable endpoint as usual, and only when that hands back the rejected token itself does
/// it ask once more with `force_refresh: true`, if
///
/// 1. no forced refresh was sent in the last
///    [`force_refresh_interval`](Self::force_refresh_interval) (default 10 minutes), and
/// 2. fewer than [`max_force_refreshes`](Self::max_force_refreshes) were sent in the last 24
///    hours (default [`DEFAULT_MAX_FORCE_REFRESHES`], 10).
///
/// Otherwise it returns the rejected token and the layer hands the caller Douyin's answer. A
/// rejection costs at most one forced refresh, and the interval and the cap bound them even
/// when every answer is a rejection, so they are never spent in a loop. The counts are per
/// source (shared by its clones): with N instances set the cap to at most 20 / N.
///
/// Its `Debug` shows the `appid`, never the `secret`.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # fn demo() {
/// use douyin_auth::douyin::MiniGameCredentials;
/// use douyin_auth::{DouyinAuthLayer, TokenPlacement};
///
/// let game = MiniGameCredentials::new("tt_my_game_id", "my_game_secret");
/// // Mini-game server APIs read the token from the `access_token` header.
/// let layer = DouyinAuthLayer::builder(game)
///     .placement(TokenPlacement::access_token_underscore())
///     .build();
/// # drop(layer); }
/// ```
#[derive(Clone)]
pub struct MiniGameCredentials<C> {
    appid: String,
    secret: Secret,
    client: C,
    base_url: String,
    endpoint: MiniGameTokenEndpoint,
    max_force: usize,
    force_interval: Duration,
    force: Arc<Mutex<ForceState>>,
}

#[cfg(feature = "https")]
impl MiniGameCredentials<super::HttpsClient> {
    /// The mini-game `appid` and `secret`, fetching over the built-in HTTPS client (feature
    /// `https`).
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::with_client(appid, secret, super::HttpsClient::new())
    }
}

impl<C> MiniGameCredentials<C> {
    /// The mini-game `appid` and `secret`, sending requests through `client`, any tower HTTP
    /// service.
    pub fn with_client(appid: impl Into<String>, secret: impl Into<String>, client: C) -> Self {
        Self {
            appid: appid.into(),
            secret: Secret::new(secret),
            client,
            base_url: MINI_GAME_BASE_URL.to_owned(),
            endpoint: MiniGameTokenEndpoint::Stable,
            max_force: DEFAULT_MAX_FORCE_REFRESHES,
            force_interval: DEFAULT_FORCE_REFRESH_INTERVAL,
            force: Arc::default(),
        }
    }

    /// Uses `/mgplatform/api/apps/v2/token` instead of the stable endpoint.
    #[must_use]
    pub fn classic(self) -> Self {
        self.endpoint(MiniGameTokenEndpoint::Classic)
    }

    /// Chooses the endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: MiniGameTokenEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Sets the base URL (default `https://minigame.zijieapi.com`), e.g. a local mock server.
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// At most `max` forced refreshes in 24 hours (default [`DEFAULT_MAX_FORCE_REFRESHES`]);
    /// zero never forces one.
    #[must_use]
    pub fn max_force_refreshes(mut self, max: usize) -> Self {
        self.max_force = max;
        self
    }

    /// At least `interval` between two forced refreshes (default
    /// [`DEFAULT_FORCE_REFRESH_INTERVAL`]).
    #[must_use]
    pub fn force_refresh_interval(mut self, interval: Duration) -> Self {
        self.force_interval = interval;
        self
    }

    /// The mini-game's `appid`.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Whether a forced refresh may be sent now; counts it if so. See the [type docs](Self).
    fn take_force(&self) -> bool {
        let mut state = lock(&self.force);
        let now = Instant::now();
        while state
            .forced
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= DAY)
        {
            state.forced.pop_front();
        }
        let too_soon = state
            .forced
            .back()
            .is_some_and(|&t| now.saturating_duration_since(t) < self.force_interval);
        if too_soon || state.forced.len() >= self.max_force {
            tracing::warn!(
                target: "douyin_auth",
                forced_last_24h = state.forced.len(),
                "the mini-game token was rejected and the stable endpoint hands it back, but a \
                 forced refresh is not allowed now (too soon, or the daily cap is used up)"
            );
            return false;
        }
        state.forced.push_back(now);
        true
    }
}

impl<C: HttpClient> MiniGameCredentials<C> {
    /// Fetches the app token, with the crate's typed [`Error`]; never a forced refresh.
    pub async fn fetch_token(&self) -> Result<Token, Error> {
        self.fetch_with(false).await
    }

    /// Fetches a token to replace `rejected`: a forced refresh only when the stable endpoint
    /// hands `rejected` back, under the rules of the [type docs](Self).
    pub async fn fetch_token_replacing(&self, rejected: &Token) -> Result<Token, Error> {
        let token = self.fetch_with(false).await?;
        if self.endpoint != MiniGameTokenEndpoint::Stable || token != *rejected {
            return Ok(token);
        }
        if !self.take_force() {
            return Ok(token);
        }
        self.fetch_with(true).await
    }

    async fn fetch_with(&self, force: bool) -> Result<Token, Error> {
        let path = self.endpoint.path();
        let payload = json(
            &AppTokenRequest {
                appid: &self.appid,
                secret: self.secret.expose(),
                grant_type: "client_credential",
                force_refresh: (self.endpoint == MiniGameTokenEndpoint::Stable).then_some(force),
            },
            "mini-game token",
        )?;
        let answer = post_token(&self.client, &self.base_url, path, payload).await?;
        let (access_token, expires_in) = answer.require_access(path)?;
        Ok(Token::new(access_token, expires_in))
    }

    /// Logs a user in: GET `/mgplatform/api/apps/jscode2session` with `appid`, `secret`,
    /// `code` and `anonymous_code` in the query; see [`code2session`](super::code2session).
    pub async fn code2session(&self, code: &LoginCode) -> Result<Session, Error> {
        code.check()?;
        let body = get_answer(
            &self.client,
            &self.base_url,
            LOGIN_PATH,
            [
                ("appid", self.appid.as_str()),
                ("secret", self.secret.expose()),
                ("code", code.code()),
                ("anonymous_code", code.anonymous_code()),
            ],
        )
        .await?;
        parse_session(&body, LOGIN_PATH)
    }
}

impl<C: HttpClient> TokenSource for MiniGameCredentials<C> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetch_token().await.map_err(Into::into)
    }

    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        self.fetch_token_replacing(rejected)
            .await
            .map_err(Into::into)
    }
}

impl<C> fmt::Debug for MiniGameCredentials<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniGameCredentials")
            .field("appid", &self.appid)
            .field("secret", &self.secret)
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .field("max_force_refreshes", &self.max_force)
            .field("force_refresh_interval", &self.force_interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::douyin::http::test_support::mock;

    // Recorded from the official SDKs: Go `douyin-openapi-sdk-go` `AppsStableToken` (POST
    // minigame.zijieapi.com /mgplatform/api/apps/stable_token, JSON appid, force_refresh,
    // grant_type, secret); Node `@open-dy/open_api_sdk` 1.1.0 `appsV2Token` and its model
    // `AppsV2TokenResponse{err_no, err_tips, data{access_token, expires_in, expires_at}}`.
    const OK: &str = r#"{"err_no":0,"err_tips":"success","data":{"access_token":"0801GAMESECRET","expires_in":7200,"expires_at":1700007200}}"#;
    const OK2: &str = r#"{"err_no":0,"err_tips":"success","data":{"access_token":"0801GAMESECRET2","expires_in":7200}}"#;

    fn forced(seen: &[crate::douyin::http::test_support::Seen]) -> Vec<bool> {
        seen.iter()
            .map(|s| s.json()["force_refresh"].as_bool().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn stable_request_and_answer() {
        let (client, seen) = mock(vec![(200, OK)]);
        let game = MiniGameCredentials::with_client("tt_game", "GAMESECRET", client);
        let token = game.fetch().await.unwrap();
        assert_eq!(token.secret(), "0801GAMESECRET");
        assert_eq!(token.expires_in(), Duration::from_secs(7200));
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(
            seen[0].uri,
            "https://minigame.zijieapi.com/mgplatform/api/apps/stable_token"
        );
        assert_eq!(
            seen[0].json(),
            serde_json::json!({"appid": "tt_game", "secret": "GAMESECRET",
                "grant_type": "client_credential", "force_refresh": false})
        );
        assert!(!format!("{game:?}").contains("GAMESECRET"));
    }

    #[tokio::test]
    async fn classic_endpoint_sends_no_force_flag() {
        let (client, seen) = mock(vec![(200, OK)]);
        let game = MiniGameCredentials::with_client("g", "s", client).classic();
        game.fetch_token().await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0].uri,
            "https://minigame.zijieapi.com/mgplatform/api/apps/v2/token"
        );
        assert_eq!(
            seen[0].json(),
            serde_json::json!({"appid": "g", "secret": "s", "grant_type": "client_credential"})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forced_only_when_the_rejected_token_comes_back_spaced_and_capped() {
        // The stable endpoint keeps answering with OK (token 1) unless forced (token 2).
        let answers = std::iter::repeat_n([(200, OK), (200, OK2)], 8)
            .flatten()
            .collect();
        let (client, seen) = mock(answers);
        let game = MiniGameCredentials::with_client("g", "s", client).max_force_refreshes(2);
        let t1 = game.fetch_token().await.unwrap();
        assert_eq!(t1.secret(), "0801GAMESECRET");
        // Replacing another token: the stable answer differs from it, no force.
        let other = Token::new("0801OTHER", Duration::from_secs(60));
        let t = game.fetch_token_replacing(&other).await.unwrap();
        assert_eq!(t.secret(), "0801GAMESECRET2");
        assert_eq!(forced(&seen.lock().unwrap()), [false, false]);

        // Replacing the token the endpoint hands back: one forced call.
        let t = game.fetch_token_replacing(&t1).await.unwrap();
        assert_eq!(t.secret(), "0801GAMESECRET2");
        assert_eq!(forced(&seen.lock().unwrap())[2..], [false, true]);

        // At once again: too soon, the rejected token comes back, no force.
        let t = game.fetch_token_replacing(&t1).await.unwrap();
        assert_eq!(t, t1);
        assert_eq!(forced(&seen.lock().unwrap())[4..], [false]);
        game.fetch_token().await.unwrap(); // realign the answers

        // After the interval: the second of the cap of two.
        tokio::time::advance(DEFAULT_FORCE_REFRESH_INTERVAL).await;
        game.fetch_token_replacing(&t1).await.unwrap();
        assert_eq!(forced(&seen.lock().unwrap())[6..], [false, true]);

        // The cap is used up for the day.
        tokio::time::advance(DEFAULT_FORCE_REFRESH_INTERVAL).await;
        assert_eq!(game.fetch_token_replacing(&t1).await.unwrap(), t1);
        game.fetch_token().await.unwrap();
        assert_eq!(forced(&seen.lock().unwrap())[8..], [false, false]);

        // A day after the first forced refresh, one is allowed again.
        tokio::time::advance(DAY).await;
        game.fetch_token_replacing(&t1).await.unwrap();
        assert_eq!(forced(&seen.lock().unwrap())[10..], [false, true]);

        // The classic endpoint never forces.
        let (client, seen) = mock(vec![(200, OK)]);
        let classic = MiniGameCredentials::with_client("g", "s", client).classic();
        assert_eq!(classic.fetch_replacing(&t1).await.unwrap(), t1);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    // `AppsJscode2sessionResponse` of the Node SDK, and its request (GET, query appid,
    // secret, code, anonymous_code).
    const LOGIN: &str = r#"{"error":0,"errcode":0,"errmsg":"","message":"","session_key":"SKSECRET","openid":"o-2","anonymous_openid":"a-2","unionid":"u-2"}"#;

    #[tokio::test]
    async fn code2session_is_a_get_with_the_query() {
        let (client, seen) = mock(vec![(200, LOGIN)]);
        let game = MiniGameCredentials::with_client("g", "GAMESECRET", client);
        let err = game.code2session(&LoginCode::default()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)));
        let s = game
            .code2session(&LoginCode::new("C1").with_anonymous_code("A1"))
            .await
            .unwrap();
        assert_eq!(s.anonymous_openid(), Some("a-2"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, Method::GET);
        assert_eq!(
            seen[0].uri,
            "https://minigame.zijieapi.com/mgplatform/api/apps/jscode2session?appid=g&secret=GAMESECRET&code=C1&anonymous_code=A1"
        );
    }
}

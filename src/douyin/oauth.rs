//! The OAuth authorization-code flow: the authorization URL with a CSRF `state`, the check of
//! the `state` that comes back, and the exchange of the code for the user's tokens.

use std::fmt;

use subtle::ConstantTimeEq;

use super::http::{normalise_base_url, post_token, HttpClient, Payload, DEFAULT_BASE_URL};
use super::user_tokens::UserTokens;
use super::wire::missing;
use crate::error::Error;
use crate::token::Secret;
use crate::token::Token;

const CONNECT_PATH: &str = "/platform/oauth/connect/";
const ACCESS_TOKEN_PATH: &str = "/oauth/access_token/";

/// The number of random bytes in a generated [`State`] (256 bits, 64 hex digits).
const STATE_BYTES: usize = 32;

/// The OAuth `state`: an unguessable value tying the authorization answer to the browser
/// session that started it (CSRF protection).
///
/// Keep it in the user's session when you redirect, and compare it with [`verify_state`] when
/// Douyin redirects back. Its `Debug` output never shows the value.
#[derive(Clone)]
pub struct State(Secret);

/// Compares in constant time, as [`verify_state`] does.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        verify_state(self, other.as_str())
    }
}

impl Eq for State {}

impl State {
    /// A new random state: 32 bytes from the operating system's CSPRNG, as 64 hex digits.
    ///
    /// Fails with [`Error::Random`] only if the operating system's random source fails.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; STATE_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let mut hex = String::with_capacity(STATE_BYTES * 2);
        for b in bytes {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex.push(char::from(DIGITS[usize::from(b >> 4)]));
            hex.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        Ok(Self(Secret::new(hex)))
    }

    /// A state restored from where it was kept (the user's session).
    pub fn from_string(value: impl Into<String>) -> Self {
        Self(Secret::new(value))
    }

    /// The value, to keep in the user's session. Never log it.
    pub fn as_str(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&self.0).finish()
    }
}

/// Whether the `state` Douyin sent back equals the one kept in the session, compared in
/// constant time.
///
/// ```
/// use douyin_auth::douyin::{verify_state, State};
///
/// let state = State::generate().unwrap();
/// let kept = state.as_str().to_owned();
/// assert!(verify_state(&state, &kept));
/// assert!(!verify_state(&state, "forged"));
/// ```
pub fn verify_state(expected: &State, received: &str) -> bool {
    bool::from(expected.as_str().as_bytes().ct_eq(received.as_bytes()))
}

/// A builder of the URL of Douyin's authorization page
/// (`https://open.douyin.com/platform/oauth/connect/`), where the app sends the user's browser.
///
/// ```
/// use douyin_auth::douyin::AuthorizationUrl;
///
/// let (url, state) = AuthorizationUrl::new("my_client_key", "https://app.example/callback")
///     .scope("user_info")
///     .scope("video.list.bind")
///     .optional_scope("mobile", true)
///     .build()
///     .unwrap();
/// assert!(url.starts_with("https://open.douyin.com/platform/oauth/connect/?client_key=my_client_key"));
/// assert!(url.contains("&response_type=code&scope=user_info%2Cvideo.list.bind"));
/// assert!(url.contains(&format!("&state={}", state.as_str())));
/// ```
#[derive(Clone)]
pub struct AuthorizationUrl {
    client_key: String,
    redirect_uri: String,
    scopes: Vec<String>,
    optional_scopes: Vec<(String, bool)>,
    base_url: String,
    state: Option<State>,
}

impl AuthorizationUrl {
    /// A URL for the app `client_key` that sends the user back to `redirect_uri` (which must be
    /// https and match the one registered with Douyin).
    pub fn new(client_key: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            client_key: client_key.into(),
            redirect_uri: redirect_uri.into(),
            scopes: Vec::new(),
            optional_scopes: Vec::new(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            state: None,
        }
    }

    /// Asks for one more scope (`scope`, comma-separated on the wire).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Asks for several more scopes.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Offers an optional scope the user may untick (`optionalScope`), ticked by default if
    /// `checked` (sent as `scope,1` or `scope,0`).
    #[must_use]
    pub fn optional_scope(mut self, scope: impl Into<String>, checked: bool) -> Self {
        self.optional_scopes.push((scope.into(), checked));
        self
    }

    /// Sets the base URL of the authorization page's host (default `https://open.douyin.com`).
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// Uses this `state` instead of a generated one.
    #[must_use]
    pub fn state(mut self, state: State) -> Self {
        self.state = Some(state);
        self
    }

    /// The URL, and the `state` in it to keep in the user's session.
    ///
    /// Fails with [`Error::Random`] only if a state had to be generated and the operating
    /// system's random source failed.
    pub fn build(self) -> Result<(String, State), Error> {
        let state = match self.state {
            Some(state) => state,
            None => State::generate()?,
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("client_key", &self.client_key)
            .append_pair("response_type", "code")
            .append_pair("scope", &self.scopes.join(","))
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("state", state.as_str());
        if !self.optional_scopes.is_empty() {
            let optional: Vec<String> = self
                .optional_scopes
                .iter()
                .map(|(s, checked)| format!("{s},{}", u8::from(*checked)))
                .collect();
            query.append_pair("optionalScope", &optional.join(","));
        }
        let url = format!("{}{CONNECT_PATH}?{}", self.base_url, query.finish());
        Ok((url, state))
    }
}

impl fmt::Debug for AuthorizationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationUrl")
            .field("client_key", &self.client_key)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("optional_scopes", &self.optional_scopes)
            .field("base_url", &self.base_url)
            .field("state", &self.state)
            .finish()
    }
}

/// The app's side of the OAuth authorization-code flow: builds authorization URLs, exchanges
/// codes for user tokens and makes [`UserTokens`] sources for them.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # async fn demo(code_from_redirect: &str) -> Result<(), douyin_auth::Error> {
/// use douyin_auth::douyin::OAuthClient;
///
/// let oauth = OAuthClient::new("my_client_key", "my_client_secret");
/// let (url, state) = oauth
///     .authorization_url("https://app.example/callback")
///     .scope("user_info")
///     .build()?;
/// // redirect the browser to `url`, keep `state` in the session, verify it on the way back …
/// let token = oauth.exchange_code(code_from_redirect).await?;
/// let source = oauth.user_tokens(token);
/// # drop((url, state, source)); Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuthClient<C> {
    client_key: String,
    client_secret: Secret,
    client: C,
    base_url: String,
}

#[cfg(feature = "https")]
impl OAuthClient<super::HttpsClient> {
    /// An OAuth client over the built-in HTTPS client (feature `https`).
    pub fn new(client_key: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self::with_client(client_key, client_secret, super::HttpsClient::new())
    }
}

impl<C> OAuthClient<C> {
    /// An OAuth client that sends its requests through `client`, any tower HTTP service.
    pub fn with_client(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        client: C,
    ) -> Self {
        Self {
            client_key: client_key.into(),
            client_secret: Secret::new(client_secret),
            client,
            base_url: DEFAULT_BASE_URL.to_owned(),
        }
    }

    /// Sets the base URL (default `https://open.douyin.com`; a trailing slash is tolerated).
    /// It applies to the code exchange, the authorization URLs and the [`UserTokens`] made here.
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// The app's `client_key`.
    pub fn client_key(&self) -> &str {
        &self.client_key
    }

    /// A builder of the authorization URL for this app.
    pub fn authorization_url(&self, redirect_uri: impl Into<String>) -> AuthorizationUrl {
        AuthorizationUrl::new(self.client_key.clone(), redirect_uri).base_url(self.base_url.clone())
    }

    /// The secret, the HTTP client and the base URL, for the sources other modules make with
    /// this app's settings (`StoredUsers::from_oauth`).
    pub(crate) fn settings(&self) -> (&Secret, &C, &str) {
        (&self.client_secret, &self.client, &self.base_url)
    }
}

impl<C: Clone> OAuthClient<C> {
    /// A [`UserTokens`] source for `token` (from [`exchange_code`](Self::exchange_code) or
    /// from storage), with this client's credentials, HTTP client and base URL.
    pub fn user_tokens(&self, token: Token) -> UserTokens<C> {
        UserTokens::with_client(
            self.client_key.clone(),
            self.client_secret.expose(),
            token,
            self.client.clone(),
        )
        .base_url(self.base_url.clone())
    }
}

impl<C: HttpClient> OAuthClient<C> {
    /// Exchanges an authorization code for the user's tokens: form POST `/oauth/access_token/`
    /// with `client_key`, `client_secret`, `code` and `grant_type=authorization_code`.
    ///
    /// The token carries the `open_id`, the refresh token with its lifetime and the granted
    /// scopes. An expired or used code fails with [`Error::Douyin`] of kind
    /// [`CodeExpired`](super::codes::CodeKind::CodeExpired).
    pub async fn exchange_code(&self, code: &str) -> Result<Token, Error> {
        let payload = Payload::form([
            ("client_key", self.client_key.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("code", code),
            ("grant_type", "authorization_code"),
        ]);
        let answer = post_token(&self.client, &self.base_url, ACCESS_TOKEN_PATH, payload).await?;
        let (access_token, expires_in) = answer.require_access(ACCESS_TOKEN_PATH)?;
        let open_id = answer
            .open_id()
            .ok_or_else(|| missing(ACCESS_TOKEN_PATH, "open_id"))?;
        let refresh_token = answer
            .refresh_token()
            .ok_or_else(|| missing(ACCESS_TOKEN_PATH, "refresh_token"))?;
        let refresh_expires_in = answer
            .refresh_expires_in()
            .ok_or_else(|| missing(ACCESS_TOKEN_PATH, "refresh_expires_in"))?;
        Ok(Token::new(access_token, expires_in)
            .with_open_id(open_id)
            .with_refresh_token(refresh_token, refresh_expires_in)
            .with_scopes(answer.scopes()))
    }
}

impl<C> fmt::Debug for OAuthClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_key", &self.client_key)
            .field("client_secret", &self.client_secret)
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

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, q) = url.split_once('?').unwrap();
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn authorization_url_encodes_every_parameter() {
        let state = State::from_string("st&ate=1");
        let (url, returned) = AuthorizationUrl::new("key 1", "https://app.example/cb?x=1&y=2")
            .scopes(["user_info", "video.list.bind"])
            .optional_scope("mobile", true)
            .optional_scope("friend_relation", false)
            .state(state.clone())
            .build()
            .unwrap();
        assert_eq!(returned, state);
        assert!(
            url.starts_with("https://open.douyin.com/platform/oauth/connect/?"),
            "{url}"
        );
        assert!(
            url.contains("redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1%26y%3D2"),
            "{url}"
        );
        assert_eq!(
            query(&url),
            [
                ("client_key".into(), "key 1".into()),
                ("response_type".into(), "code".into()),
                ("scope".into(), "user_info,video.list.bind".into()),
                (
                    "redirect_uri".into(),
                    "https://app.example/cb?x=1&y=2".into()
                ),
                ("state".into(), "st&ate=1".into()),
                ("optionalScope".into(), "mobile,1,friend_relation,0".into()),
            ]
        );
    }

    #[test]
    fn generated_states_are_random_hex_and_verified_exactly() {
        let (url, state) = AuthorizationUrl::new("k", "https://a/cb")
            .scope("user_info")
            .base_url("https://open.snssdk.com/")
            .build()
            .unwrap();
        assert!(url.starts_with("https://open.snssdk.com/platform/oauth/connect/?"));
        assert!(!url.contains("optionalScope"));
        let s = state.as_str();
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(query(&url).contains(&("state".into(), s.to_owned())));
        assert_ne!(State::generate().unwrap(), State::generate().unwrap());

        assert!(verify_state(&state, s));
        assert!(!verify_state(&state, &s[..63]));
        assert!(!verify_state(&state, ""));
        assert!(!verify_state(&state, &s.to_uppercase()));
    }

    #[test]
    fn debug_shows_no_state_or_secret() {
        let state = State::from_string("STATEVALUE");
        assert!(!format!("{state:?}").contains("STATEVALUE"));
        let builder = AuthorizationUrl::new("k", "https://a/cb").state(state);
        assert!(!format!("{builder:?}").contains("STATEVALUE"));
        let (client, _) = mock(vec![]);
        let oauth = OAuthClient::with_client("visible_key", "SECRET", client);
        let dbg = format!("{oauth:?}");
        assert!(
            dbg.contains("visible_key") && !dbg.contains("SECRET"),
            "{dbg}"
        );
    }

    #[tokio::test]
    async fn exchange_code_posts_the_form_and_builds_a_user_token() {
        let body = r#"{"data": {"access_token": "act.A", "description": "", "error_code": 0, "expires_in": "1296000",
            "open_id": "open-9", "refresh_expires_in": 2592000, "refresh_token": "rft.R", "scope": "user_info,video.data",
            "log_id": "L", "captcha": "", "desc_url": ""}, "message": "success"}"#;
        let (client, seen) = mock(vec![(200, body)]);
        let oauth = OAuthClient::with_client("key1", "SECRET", client);
        let token = oauth.exchange_code("CODE&1").await.unwrap();
        assert_eq!(token.secret(), "act.A");
        assert_eq!(token.expires_in(), Duration::from_secs(1_296_000));
        assert_eq!(token.open_id(), Some("open-9"));
        assert_eq!(token.refresh_token(), Some("rft.R"));
        assert_eq!(
            token.refresh_expires_in(),
            Some(Duration::from_secs(2_592_000))
        );
        assert_eq!(token.scopes(), ["user_info", "video.data"]);

        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].uri, "https://open.douyin.com/oauth/access_token/");
        assert_eq!(seen[0].content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            seen[0].form(),
            [
                ("client_key".into(), "key1".into()),
                ("client_secret".into(), "SECRET".into()),
                ("code".into(), "CODE&1".into()),
                ("grant_type".into(), "authorization_code".into()),
            ]
        );
        let users = oauth.user_tokens(token);
        assert_eq!(users.current().open_id(), Some("open-9"));
    }

    #[tokio::test]
    async fn expired_code_is_a_code_expired_error() {
        let (client, _) = mock(vec![(
            200,
            r#"{"data": {"description": "authorization code expired", "error_code": 10007},
                "extra": {"logid": "LOG7", "now": 1594015876138}, "message": "error"}"#,
        )]);
        let oauth = OAuthClient::with_client("k", "SECRET", client);
        let err = oauth.exchange_code("CODE").await.unwrap_err();
        let Error::Douyin(d) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(d.kind(), CodeKind::CodeExpired);
        assert_eq!(d.log_id(), Some("LOG7"));
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("SECRET") && !text.contains("CODE\""),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_answer_without_open_id_is_a_protocol_error() {
        let (client, _) = mock(vec![(
            200,
            r#"{"data": {"access_token": "act.A", "error_code": 0, "expires_in": 100, "refresh_token": "rft.R", "refresh_expires_in": 10}}"#,
        )]);
        let oauth = OAuthClient::with_client("k", "s", client);
        let err = oauth.exchange_code("c").await.unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains("open_id")),
            "{err:?}"
        );
    }
}

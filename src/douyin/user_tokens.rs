//! [`UserTokens`]: one user's access token, refreshed from the stored refresh token, with the
//! refresh token renewed before it dies and every new pair handed to a persistence hook.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::codes::CodeKind;
use super::http::{normalise_base_url, post_token, HttpClient, Payload, DEFAULT_BASE_URL};
use super::wire::{missing, TokenResponse};
use crate::error::{BoxError, DouyinError, Error};
use crate::source::BoxFuture;
use crate::source::TokenSource;
use crate::token::Secret;
use crate::token::{Provenance, Token};

/// The default renewal window: 15 days, one user access-token lifetime.
///
/// When the refresh token has less than this left at a refresh, it is renewed first. Access
/// tokens live 15 days, so with this window a refresh token never dies between two refreshes of
/// a token that is in use, while renewals (at most five per authorisation) happen no more often
/// than about every other refresh.
pub const DEFAULT_RENEW_WINDOW: Duration = Duration::from_secs(15 * 24 * 60 * 60);

const REFRESH_PATH: &str = "/oauth/refresh_token/";
const RENEW_PATH: &str = "/oauth/renew_refresh_token/";

/// Where [`UserTokens`] writes every refreshed token pair before handing it out: the app's
/// database, Redis, a file.
///
/// It is implemented for every `Fn(Token) -> impl Future<Output = Result<(), BoxError>>`.
/// The token it receives carries the access token, the refresh token with its expiry, the
/// `open_id` and the scopes.
pub trait PersistHook: Send + Sync + 'static {
    /// Writes `token` durably. An error makes the fetch fail with
    /// [`Error::Persist`](crate::Error::Persist); the pair is kept and offered again.
    fn persist(&self, token: Token) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<F, Fut> PersistHook for F
where
    F: Fn(Token) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send,
{
    fn persist(&self, token: Token) -> impl Future<Output = Result<(), BoxError>> + Send {
        self(token)
    }
}

trait DynPersistHook: Send + Sync + 'static {
    fn persist_boxed(&self, token: Token) -> BoxFuture<'_, Result<(), BoxError>>;
}

impl<T: PersistHook> DynPersistHook for T {
    fn persist_boxed(&self, token: Token) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.persist(token))
    }
}

struct UserState {
    current: Token,
    /// The current pair has not reached the persistence hook yet.
    pending: bool,
    /// The stored token has been handed out once (so the next fetch refreshes).
    served: bool,
    /// Douyin answered 10020 to a renewal: no more renewals for this authorisation; the
    /// current refresh token is used until it dies.
    renewals_exhausted: bool,
}

/// Which tokens a [`UserTokens`] keeps: a user's OAuth pair, or one account's business token
/// for one scope (see [`BusinessTokens`](super::BusinessTokens)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// `/oauth/refresh_token/` and `/oauth/renew_refresh_token/`.
    User,
    /// `/oauth/refresh_biz_token/`, else a new `/oauth/business_token/` for the scope.
    Business { scope: String },
}

/// The first fetch hands out the stored access token as it is, without calling Douyin, when
/// it has at least this long to live: a restart does not refresh every user.
pub const ADOPT_MIN_REMAINING: Duration = Duration::from_secs(15 * 60);

/// A [`TokenSource`] for ONE user's stored tokens: it refreshes the user's access token with
/// the refresh token.
///
/// Each [`fetch`](TokenSource::fetch):
/// 1. if a refreshed pair is still waiting for the persistence hook (it failed last time),
///    offers it to the hook again, and hands it out if its access token is still valid;
/// 2. fails with [`Error::ReauthorizationRequired`] if there is no refresh token or it has
///    expired;
/// 3. renews the refresh token first (form POST `/oauth/renew_refresh_token/` with
///    `client_key` and `refresh_token`) when it has less than the
///    [renewal window](Self::renew_window) left ([`DEFAULT_RENEW_WINDOW`]), and keeps the new
///    one and its expiry; a failed renewal that is not final is logged and the still-valid old
///    refresh token is used;
/// 4. refreshes the access token (form POST `/oauth/refresh_token/` with `client_key`,
///    `grant_type=refresh_token` and `refresh_token`), keeping any refresh token that comes
///    back;
/// 5. hands the new pair to the [persistence hook](Self::on_refresh) and only then returns it.
///    If the hook fails, the fetch fails with [`Error::Persist`], the new pair stays the current
///    one (the refresh token Douyin just consumed is not lost), and the next fetch starts at 1.
///
/// Code 10010 (refresh token expired) and, on renewal, 10020 (renewals used up) become
/// [`Error::ReauthorizationRequired`] naming the user's `open_id`.
///
/// Fetches of one `UserTokens` (and its clones, which share the user's state) run one at a
/// time, so two never use the same refresh token at once. Across processes, use a lease in a
/// shared store. Its `Debug` output never shows a secret.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # async fn demo(stored: douyin_auth::Token) -> Result<(), douyin_auth::BoxError> {
/// use douyin_auth::douyin::UserTokens;
/// use douyin_auth::{BoxError, Token, TokenSource};
///
/// let source = UserTokens::new("my_client_key", "my_client_secret", stored)
///     .on_refresh(|token: Token| async move {
///         // write token.secret(), token.refresh_token(), … to the database
///         Ok::<_, BoxError>(())
///     });
/// let fresh = source.fetch().await?;
/// # drop(fresh); Ok(()) }
/// ```
pub struct UserTokens<C> {
    grant: Grant,
    client_key: String,
    client_secret: Secret,
    client: C,
    base_url: String,
    renew_window: Duration,
    hook: Option<Arc<dyn DynPersistHook>>,
    adopt_stored: bool,
    state: Arc<Mutex<UserState>>,
    snapshot: Arc<ArcSwap<Token>>,
}

impl<C: Clone> Clone for UserTokens<C> {
    fn clone(&self) -> Self {
        Self {
            grant: self.grant.clone(),
            client_key: self.client_key.clone(),
            client_secret: self.client_secret.clone(),
            client: self.client.clone(),
            base_url: self.base_url.clone(),
            renew_window: self.renew_window,
            hook: self.hook.clone(),
            adopt_stored: self.adopt_stored,
            state: self.state.clone(),
            snapshot: self.snapshot.clone(),
        }
    }
}

#[cfg(feature = "https")]
impl UserTokens<super::HttpsClient> {
    /// The tokens of the user `token` belongs to (it should carry the `open_id` and the refresh
    /// token), refreshed over the built-in HTTPS client (feature `https`).
    pub fn new(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        token: Token,
    ) -> Self {
        Self::with_client(client_key, client_secret, token, super::HttpsClient::new())
    }
}

impl<C> UserTokens<C> {
    /// The tokens of the user `token` belongs to, refreshed through `client`, any tower HTTP
    /// service. The `client_secret` is kept for the endpoints that need it; the refresh
    /// endpoints do not send it.
    pub fn with_client(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        token: Token,
        client: C,
    ) -> Self {
        Self {
            grant: Grant::User,
            client_key: client_key.into(),
            client_secret: Secret::new(client_secret),
            client,
            base_url: DEFAULT_BASE_URL.to_owned(),
            renew_window: DEFAULT_RENEW_WINDOW,
            hook: None,
            adopt_stored: true,
            snapshot: Arc::new(ArcSwap::from_pointee(token.clone())),
            state: Arc::new(Mutex::new(UserState {
                current: token,
                pending: false,
                served: false,
                renewals_exhausted: false,
            })),
        }
    }

    /// The same settings and hook for the business token of `scope` (no renewals).
    pub(crate) fn business(mut self, scope: String) -> Self {
        self.grant = Grant::Business { scope };
        self.renew_window = Duration::ZERO;
        self
    }

    /// The same settings and hook with `token` as the current one, in a state of its own.
    pub(crate) fn with_current(mut self, token: Token) -> Self {
        self.snapshot = Arc::new(ArcSwap::from_pointee(token.clone()));
        self.state = Arc::new(Mutex::new(UserState {
            current: token,
            pending: false,
            served: false,
            renewals_exhausted: false,
        }));
        self
    }

    /// Whether the first fetch hands out the stored access token as it is when it has at least
    /// [`ADOPT_MIN_REMAINING`] left (default: true). Off, the first fetch refreshes.
    #[must_use]
    pub fn adopt_stored(mut self, adopt: bool) -> Self {
        self.adopt_stored = adopt;
        self
    }

    /// Sets the base URL (default `https://open.douyin.com`; a trailing slash is tolerated).
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// Renews the refresh token when it has less than `window` left at a refresh
    /// (default [`DEFAULT_RENEW_WINDOW`]). `Duration::ZERO` never renews.
    #[must_use]
    pub fn renew_window(mut self, window: Duration) -> Self {
        self.renew_window = window;
        self
    }

    /// Sets the persistence hook that receives every refreshed pair before it is handed out.
    #[must_use]
    pub fn on_refresh(mut self, hook: impl PersistHook) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The app's `client_key`.
    pub fn client_key(&self) -> &str {
        &self.client_key
    }

    /// The user's current token: the last refreshed pair, or the one this source was built
    /// with. It may be waiting for the persistence hook.
    pub fn current(&self) -> Token {
        Token::clone(&self.snapshot.load())
    }

    /// Whether a refreshed pair still waits for the persistence hook (it failed last time).
    pub(crate) async fn has_pending(&self) -> bool {
        self.state.lock().await.pending
    }

    /// Takes `token`, read from a shared store, as the current pair, unless a pair of this
    /// source is still waiting for the hook (that one is newer). Whether it was taken.
    pub(crate) async fn adopt(&self, token: Token) -> bool {
        let mut state = self.state.lock().await;
        if state.pending {
            return false;
        }
        self.snapshot.store(Arc::new(token.clone()));
        state.current = token;
        true
    }

    fn set_current(&self, state: &mut UserState, token: Token) {
        self.snapshot.store(Arc::new(token.clone()));
        state.current = token;
        state.pending = self.hook.is_some();
    }

    async fn persist(&self, state: &mut UserState) -> Result<(), Error> {
        if let Some(hook) = &self.hook {
            if let Err(e) = hook.persist_boxed(state.current.clone()).await {
                tracing::warn!(
                    target: "douyin_auth",
                    open_id = state.current.open_id().unwrap_or_default(),
                    error = %e,
                    "persisting a refreshed token failed"
                );
                return Err(Error::Persist(e));
            }
        }
        state.pending = false;
        Ok(())
    }
}

impl<C: HttpClient> UserTokens<C> {
    /// Fetches a fresh access token for the user, with the crate's typed [`Error`]; see the
    /// type's documentation for the steps.
    pub async fn fetch_token(&self) -> Result<Token, Error> {
        let mut state = self.state.lock().await;

        if self.adopt_stored
            && !state.served
            && !state.pending
            && state.current.remaining() >= ADOPT_MIN_REMAINING
        {
            state.served = true;
            // The stored token, handed in: fetched before, not now.
            return Ok(state.current.clone().with_provenance(Provenance::Adopted));
        }
        state.served = true;

        if state.pending {
            self.persist(&mut state).await?;
            if !state.current.is_expired() {
                return Ok(state.current.clone());
            }
        }

        if let Grant::Business { scope } = &self.grant {
            let token = self.business_token(&state.current, scope).await?;
            self.set_current(&mut state, token);
            self.persist(&mut state).await?;
            return Ok(state.current.clone());
        }

        let open_id = state.current.open_id().unwrap_or_default().to_owned();
        let reauth = |cause: Option<DouyinError>| Error::ReauthorizationRequired {
            open_id: open_id.clone(),
            cause,
        };
        let Some(refresh_expires_at) = state
            .current
            .refresh_token()
            .and(state.current.refresh_expires_at())
        else {
            return Err(reauth(None));
        };
        let now = Instant::now();
        if refresh_expires_at <= now {
            return Err(reauth(None));
        }

        if refresh_expires_at - now < self.renew_window && !state.renewals_exhausted {
            match self.renew(&state.current).await {
                Ok(renewed) => self.set_current(&mut state, renewed),
                Err(Error::Douyin(d)) if d.kind() == CodeKind::RefreshTokenExpired => {
                    return Err(reauth(Some(d)));
                }
                Err(Error::Douyin(d)) if d.kind() == CodeKind::RateLimited => {
                    // The renewal limit is used up, but the current refresh token still works
                    // until it expires: keep refreshing with it, and stop asking to renew.
                    state.renewals_exhausted = true;
                    tracing::warn!(
                        target: "douyin_auth",
                        open_id = %open_id,
                        "the refresh token cannot be renewed any more (10020); the user must \
                         authorise again before it expires"
                    );
                }
                Err(e) => {
                    tracing::warn!(
                        target: "douyin_auth",
                        open_id = %open_id,
                        error = %e,
                        "renewing the refresh token failed; refreshing with the current one"
                    );
                }
            }
        }

        match self.refresh(&state.current).await {
            Ok(token) => self.set_current(&mut state, token),
            Err(e) => {
                if state.pending {
                    // A renewed refresh token must not be lost: offer it to the hook anyway.
                    // A failure is logged by `persist`; the refresh error is what the caller needs.
                    let _ = self.persist(&mut state).await;
                }
                return Err(match e {
                    Error::Douyin(d) if d.kind() == CodeKind::RefreshTokenExpired => {
                        reauth(Some(d))
                    }
                    e => e,
                });
            }
        }

        self.persist(&mut state).await?;
        Ok(state.current.clone())
    }

    /// A business token: refreshed with the live `biz_refresh_token` if there is one, else (or
    /// if Douyin refuses the refresh for good) a new one from `/oauth/business_token/`.
    async fn business_token(&self, current: &Token, scope: &str) -> Result<Token, Error> {
        let open_id = current.open_id().unwrap_or_default();
        let live_refresh = current.refresh_token().filter(|_| {
            current
                .refresh_expires_at()
                .is_some_and(|at| at > Instant::now())
        });
        if let Some(refresh_token) = live_refresh {
            let payload = super::mini_app::json(
                &BizRefreshRequest {
                    client_key: &self.client_key,
                    client_secret: self.client_secret.expose(),
                    refresh_token,
                },
                "business token refresh",
            )?;
            match post_token(
                &self.client,
                &self.base_url,
                super::REFRESH_BIZ_TOKEN_PATH,
                payload,
            )
            .await
            {
                Ok(answer) => {
                    return business(&answer, open_id, scope, super::REFRESH_BIZ_TOKEN_PATH)
                }
                Err(Error::Douyin(d)) if !d.kind().is_transient() => {
                    tracing::warn!(
                        target: "douyin_auth",
                        open_id = %open_id,
                        error = %d,
                        "refreshing the business token failed; asking for a new one"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let payload = super::mini_app::json(
            &BizTokenRequest {
                client_key: &self.client_key,
                client_secret: self.client_secret.expose(),
                open_id,
                scope,
            },
            "business token",
        )?;
        let answer = post_token(
            &self.client,
            &self.base_url,
            super::BUSINESS_TOKEN_PATH,
            payload,
        )
        .await?;
        business(&answer, open_id, scope, super::BUSINESS_TOKEN_PATH)
    }

    async fn renew(&self, current: &Token) -> Result<Token, Error> {
        let refresh_token = current.refresh_token().unwrap_or_default();
        let payload = Payload::form([
            ("client_key", self.client_key.as_str()),
            ("refresh_token", refresh_token),
        ]);
        let answer = post_token(&self.client, &self.base_url, RENEW_PATH, payload).await?;
        renewed(current, &answer)
    }

    async fn refresh(&self, current: &Token) -> Result<Token, Error> {
        let refresh_token = current.refresh_token().unwrap_or_default();
        let payload = Payload::form([
            ("client_key", self.client_key.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
        let answer = post_token(&self.client, &self.base_url, REFRESH_PATH, payload).await?;
        refreshed(current, &answer)
    }
}

#[derive(serde::Serialize)]
struct BizTokenRequest<'a> {
    client_key: &'a str,
    client_secret: &'a str,
    open_id: &'a str,
    scope: &'a str,
}

#[derive(serde::Serialize)]
struct BizRefreshRequest<'a> {
    client_key: &'a str,
    client_secret: &'a str,
    refresh_token: &'a str,
}

/// The business token of `open_id` and `scope` from a `biz_*` answer.
fn business(
    answer: &TokenResponse,
    open_id: &str,
    scope: &str,
    path: &str,
) -> Result<Token, Error> {
    let (biz_token, expires_in) = answer
        .require_access(path)
        .map_err(|_| missing(path, "biz_token and biz_expires_in"))?;
    let mut token = Token::new(biz_token, expires_in)
        .with_open_id(open_id)
        .with_scopes([scope]);
    if let Some(refresh) = answer.refresh_token() {
        token = token.with_refresh_token(
            refresh,
            answer.refresh_expires_in().unwrap_or(Duration::ZERO),
        );
    }
    Ok(token)
}

/// The current pair with the renewed refresh token from `answer`.
fn renewed(current: &Token, answer: &TokenResponse) -> Result<Token, Error> {
    let refresh_token = answer
        .refresh_token()
        .ok_or_else(|| missing(RENEW_PATH, "refresh_token"))?;
    let life = answer
        .refresh_expires_in()
        .or(answer.expires_in())
        .ok_or_else(|| missing(RENEW_PATH, "expires_in"))?;
    // The refresh token's lifetime counts from when the current token was obtained.
    let elapsed = Instant::now().saturating_duration_since(current.obtained_at());
    Ok(current
        .clone()
        .with_refresh_token(refresh_token, elapsed.saturating_add(life)))
}

/// The new pair from a refresh answer, keeping what the answer leaves out from `current`.
fn refreshed(current: &Token, answer: &TokenResponse) -> Result<Token, Error> {
    let (access_token, expires_in) = answer.require_access(REFRESH_PATH)?;
    let now = Instant::now();
    let mut token = Token::new(access_token, expires_in).with_obtained_at(now);
    if let Some(open_id) = answer.open_id().or(current.open_id()) {
        token = token.with_open_id(open_id);
    }
    let old_remaining = current
        .refresh_expires_at()
        .map(|at| at.saturating_duration_since(now));
    let refresh = match answer.refresh_token() {
        Some(new) => Some((new, answer.refresh_expires_in().or(old_remaining))),
        None => current.refresh_token().map(|old| (old, old_remaining)),
    };
    if let Some((refresh_token, life)) = refresh {
        token = token.with_refresh_token(refresh_token, life.unwrap_or(Duration::ZERO));
    }
    token = if answer.has_scope() {
        token.with_scopes(answer.scopes())
    } else {
        token.with_scopes(current.scopes().iter().cloned())
    };
    Ok(token)
}

impl<C: HttpClient> TokenSource for UserTokens<C> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetch_token().await.map_err(Into::into)
    }
}

impl<C> fmt::Debug for UserTokens<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens")
            .field("grant", &self.grant)
            .field("client_key", &self.client_key)
            .field("client_secret", &self.client_secret)
            .field("base_url", &self.base_url)
            .field("renew_window", &self.renew_window)
            .field("persist_hook", &self.hook.is_some())
            .field("current", &*self.snapshot.load())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex as StdMutex;

    use http::Method;

    use super::*;
    use crate::douyin::http::test_support::mock;

    const DAY: u64 = 24 * 60 * 60;

    const REFRESHED: &str = r#"{"data": {"access_token": "act.NEW", "description": "", "error_code": 0, "expires_in": 1296000,
        "open_id": "open-1", "refresh_expires_in": 2592000, "refresh_token": "rft.OLD", "scope": "user_info",
        "log_id": "L"}, "message": "success"}"#;
    const REFRESHED_NO_RT: &str = r#"{"data": {"access_token": "act.NEW", "error_code": "0", "expires_in": "1296000"}, "message": "<nil>"}"#;
    const RENEWED: &str = r#"{"data": {"description": "", "error_code": 0, "expires_in": 2592000, "refresh_token": "rft.RENEWED"}, "message": "success"}"#;
    const EXPIRED_RT: &str = r#"{"data": {"description": "refresh_token expired", "error_code": 10010},
        "extra": {"logid": "LOG10010", "now": 1594015876138}}"#;
    const RENEW_LIMIT: &str =
        r#"{"data": {"description": "renew limit", "error_code": "10020", "log_id": "LOG10020"}}"#;
    const BUSY: &str = r#"{"data": {"description": "system busy", "error_code": 2100004}}"#;

    /// A stored pair whose access token is near its end, so the first fetch refreshes.
    fn stored(refresh_days: u64) -> Token {
        Token::new("act.OLD", Duration::from_secs(10 * 60))
            .with_open_id("open-1")
            .with_refresh_token("rft.OLD", Duration::from_secs(refresh_days * DAY))
            .with_scopes(["user_info", "video.list"])
    }

    type Persisted = Arc<StdMutex<Vec<Token>>>;

    fn recording_hook(fail_first: usize) -> (impl PersistHook, Persisted) {
        let persisted: Persisted = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let log = persisted.clone();
        let hook = move |token: Token| {
            let log = log.clone();
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < fail_first {
                    return Err::<(), BoxError>("database down".into());
                }
                log.lock().unwrap().push(token);
                Ok(())
            }
        };
        (hook, persisted)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_token_with_life_left_is_adopted_without_a_call_then_refreshed() {
        let (client, seen) = mock(vec![(200, REFRESHED_NO_RT)]);
        let fresh = Token::new("act.STORED", Duration::from_secs(DAY))
            .with_open_id("open-1")
            .with_refresh_token("rft.OLD", Duration::from_secs(20 * DAY));
        let source = UserTokens::with_client("key1", "SECRET", fresh, client);
        assert_eq!(source.fetch().await.unwrap().secret(), "act.STORED");
        assert_eq!(seen.lock().unwrap().len(), 0);
        // Asked again (the cache found it stale or rejected): now it refreshes.
        assert_eq!(source.fetch().await.unwrap().secret(), "act.NEW");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_sends_the_form_and_keeps_the_refresh_token_expiry() {
        let (client, seen) = mock(vec![(200, REFRESHED_NO_RT)]);
        let source = UserTokens::with_client("key1", "SECRET", stored(20), client);
        tokio::time::advance(Duration::from_secs(5 * DAY)).await;
        let token = source.fetch().await.unwrap();

        assert_eq!(token.secret(), "act.NEW");
        assert_eq!(token.expires_in(), Duration::from_secs(15 * DAY));
        assert_eq!(token.open_id(), Some("open-1"));
        assert_eq!(token.refresh_token(), Some("rft.OLD"));
        // 20 days from the stored token, 5 of them gone: refreshing does not extend it.
        assert_eq!(
            token.refresh_expires_in(),
            Some(Duration::from_secs(15 * DAY))
        );
        assert_eq!(token.scopes(), ["user_info", "video.list"]);
        assert_eq!(source.current().secret(), "act.NEW");

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].uri, "https://open.douyin.com/oauth/refresh_token/");
        assert_eq!(seen[0].content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            seen[0].form(),
            [
                ("client_key".into(), "key1".into()),
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), "rft.OLD".into()),
            ]
        );
        assert!(!seen[0].body.contains("SECRET"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_token_in_the_answer_is_kept_with_its_expiry() {
        let body = r#"{"data": {"access_token": "act.NEW", "error_code": 0, "expires_in": 1296000,
            "refresh_token": "rft.FROM_REFRESH", "refresh_expires_in": "2000000", "scope": "a,b"}}"#;
        let (client, _) = mock(vec![(200, body)]);
        let source = UserTokens::with_client("k", "s", stored(20), client);
        let token = source.fetch_token().await.unwrap();
        assert_eq!(token.refresh_token(), Some("rft.FROM_REFRESH"));
        assert_eq!(
            token.refresh_expires_in(),
            Some(Duration::from_secs(2_000_000))
        );
        assert_eq!(token.scopes(), ["a", "b"]);
        assert_eq!(token.open_id(), Some("open-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn renews_first_when_the_refresh_token_is_close_to_expiry() {
        let (client, seen) = mock(vec![(200, RENEWED), (200, REFRESHED_NO_RT)]);
        let source = UserTokens::with_client("key1", "s", stored(10), client)
            .base_url("http://127.0.0.1:1/");
        let token = source.fetch_token().await.unwrap();
        assert_eq!(token.refresh_token(), Some("rft.RENEWED"));
        assert_eq!(
            token.refresh_expires_in(),
            Some(Duration::from_secs(30 * DAY))
        );

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].uri, "http://127.0.0.1:1/oauth/renew_refresh_token/");
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            seen[0].form(),
            [
                ("client_key".into(), "key1".into()),
                ("refresh_token".into(), "rft.OLD".into()),
            ]
        );
        assert_eq!(seen[1].uri, "http://127.0.0.1:1/oauth/refresh_token/");
        assert!(seen[1]
            .form()
            .contains(&("refresh_token".into(), "rft.RENEWED".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn renew_window_is_configurable() {
        let (client, seen) = mock(vec![(200, REFRESHED_NO_RT)]);
        let source =
            UserTokens::with_client("k", "s", stored(10), client).renew_window(Duration::ZERO);
        source.fetch_token().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_renewal_failure_still_refreshes() {
        let (client, seen) = mock(vec![(200, BUSY), (200, REFRESHED_NO_RT)]);
        let source = UserTokens::with_client("k", "s", stored(10), client);
        let token = source.fetch_token().await.unwrap();
        assert_eq!(token.refresh_token(), Some("rft.OLD"));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn code_10010_requires_reauthorization() {
        let (client, _) = mock(vec![(200, EXPIRED_RT)]);
        let source = UserTokens::with_client("k", "s", stored(20), client);
        let err = source.fetch_token().await.unwrap_err();
        let Error::ReauthorizationRequired { open_id, cause } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(open_id, "open-1");
        let cause = cause.as_ref().unwrap();
        assert_eq!(cause.code(), 10_010);
        assert_eq!(cause.log_id(), Some("LOG10010"));
        assert!(err.is_reauthorization_required());
    }

    #[tokio::test(start_paused = true)]
    async fn code_10020_on_renewal_keeps_refreshing_with_the_current_refresh_token() {
        let (client, seen) = mock(vec![
            (200, RENEW_LIMIT),
            (200, REFRESHED_NO_RT),
            (200, REFRESHED_NO_RT),
        ]);
        let source = UserTokens::with_client("k", "s", stored(3), client);
        let token = source.fetch().await.unwrap();
        assert_eq!(token.secret(), "act.NEW");
        assert_eq!(token.refresh_token(), Some("rft.OLD"));
        // No second renewal attempt: the limit is used up.
        source.fetch().await.unwrap();
        let paths: Vec<_> = seen.lock().unwrap().iter().map(|r| r.uri.clone()).collect();
        assert_eq!(
            paths,
            [
                "https://open.douyin.com/oauth/renew_refresh_token/",
                "https://open.douyin.com/oauth/refresh_token/",
                "https://open.douyin.com/oauth/refresh_token/",
            ]
        );
        // When the refresh token finally dies, the user must authorise again.
        tokio::time::advance(Duration::from_secs(3 * DAY)).await;
        let err = source.fetch_token().await.unwrap_err();
        assert!(
            matches!(err, Error::ReauthorizationRequired { .. }),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_or_missing_refresh_token_requires_reauthorization_without_a_call() {
        let (client, seen) = mock(vec![]);
        let source = UserTokens::with_client("k", "s", stored(1), client.clone());
        tokio::time::advance(Duration::from_secs(DAY + 1)).await;
        let err = source.fetch_token().await.unwrap_err();
        assert!(
            matches!(err, Error::ReauthorizationRequired { cause: None, .. }),
            "{err:?}"
        );

        let bare = Token::new("act.X", Duration::from_secs(60)).with_open_id("open-2");
        let source = UserTokens::with_client("k", "s", bare, client);
        let err = source.fetch_token().await.unwrap_err();
        assert!(
            matches!(&err, Error::ReauthorizationRequired { open_id, .. } if open_id == "open-2")
        );
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_pass_through() {
        let (client, _) = mock(vec![(200, BUSY), (503, "oops")]);
        let source = UserTokens::with_client("k", "s", stored(20), client);
        let err = source.fetch_token().await.unwrap_err();
        assert_eq!(err.douyin().map(DouyinError::code), Some(2_100_004));
        let err = source.fetch_token().await.unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert_eq!(source.current().secret(), "act.OLD");
    }

    #[tokio::test(start_paused = true)]
    async fn the_hook_sees_every_pair_before_fetch_returns_it() {
        let (client, _) = mock(vec![(200, RENEWED), (200, REFRESHED)]);
        let (hook, persisted) = recording_hook(0);
        let source = UserTokens::with_client("k", "s", stored(10), client).on_refresh(hook);
        let token = source.fetch_token().await.unwrap();
        let persisted = persisted.lock().unwrap();
        assert_eq!(persisted.len(), 1);
        assert_eq!(persisted[0], token);
        assert_eq!(persisted[0].refresh_token(), Some("rft.OLD"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_hook_keeps_the_pair_and_is_retried_first() {
        let (client, seen) = mock(vec![
            (200, RENEWED),
            (200, REFRESHED_NO_RT),
            (200, REFRESHED),
        ]);
        let (hook, persisted) = recording_hook(2);
        let source = UserTokens::with_client("k", "s", stored(10), client).on_refresh(hook);

        let err = source.fetch_token().await.unwrap_err();
        assert!(matches!(err, Error::Persist(_)), "{err:?}");
        // The renewed refresh token Douyin just issued is kept in memory.
        assert_eq!(source.current().secret(), "act.NEW");
        assert_eq!(source.current().refresh_token(), Some("rft.RENEWED"));
        assert_eq!(seen.lock().unwrap().len(), 2);

        // The hook fails again: no call to Douyin.
        let err = source.fetch_token().await.unwrap_err();
        assert!(matches!(err, Error::Persist(_)), "{err:?}");
        assert_eq!(seen.lock().unwrap().len(), 2);

        // The hook works: the pending pair is handed out, still without a call.
        let token = source.fetch_token().await.unwrap();
        assert_eq!(token.secret(), "act.NEW");
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(persisted.lock().unwrap().len(), 1);

        // Nothing pending any more: the next fetch refreshes again.
        source.fetch_token().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(persisted.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_pending_pair_is_persisted_then_refreshed() {
        let (client, seen) = mock(vec![(200, REFRESHED_NO_RT), (200, REFRESHED)]);
        let (hook, persisted) = recording_hook(1);
        let source = UserTokens::with_client("k", "s", stored(30), client)
            .renew_window(Duration::ZERO)
            .on_refresh(hook);
        assert!(matches!(source.fetch_token().await, Err(Error::Persist(_))));
        tokio::time::advance(Duration::from_secs(15 * DAY + 1)).await;
        source.fetch_token().await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        // The pending pair first, then the new one.
        assert_eq!(persisted.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn fetches_never_overlap() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let (i, m) = (in_flight.clone(), max.clone());
        let client = tower::service_fn(
            move |_req: http::Request<http_body_util::Full<bytes::Bytes>>| {
                let (i, m) = (i.clone(), m.clone());
                async move {
                    let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    i.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(
                            REFRESHED_NO_RT.as_bytes(),
                        )),
                    ))
                }
            },
        );
        let source = UserTokens::with_client("k", "s", stored(20), client);
        let clone = source.clone();
        let (a, b) = tokio::join!(source.fetch_token(), clone.fetch_token());
        a.unwrap();
        b.unwrap();
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn debug_shows_no_secret() {
        let (client, _) = mock(vec![]);
        let (hook, _) = recording_hook(0);
        let source =
            UserTokens::with_client("visible_key", "SECRET", stored(20), client).on_refresh(hook);
        let dbg = format!("{source:?}");
        assert!(
            dbg.contains("visible_key") && dbg.contains("open-1"),
            "{dbg}"
        );
        for secret in ["SECRET", "act.OLD", "rft.OLD"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
    }
}

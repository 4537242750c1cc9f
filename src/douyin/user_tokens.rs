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
use crate::source::BoxFuture;
use crate::token::Secret;
use crate::{BoxError, DouyinError, Error, Token, TokenSource};

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
}

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
    client_key: String,
    client_secret: Secret,
    client: C,
    base_url: String,
    renew_window: Duration,
    hook: Option<Arc<dyn DynPersistHook>>,
    state: Arc<Mutex<UserState>>,
    snapshot: Arc<ArcSwap<Token>>,
}

impl<C: Clone> Clone for UserTokens<C> {
    fn clone(&self) -> Self {
        Self {
            client_key: self.client_key.clone(),
            client_secret: self.client_secret.clone(),
            client: self.client.clone(),
            base_url: self.base_url.clone(),
            renew_window: self.renew_window,
            hook: self.hook.clone(),
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
            client_key: client_key.into(),
            client_secret: Secret::new(client_secret),
            client,
            base_url: DEFAULT_BASE_URL.to_owned(),
            renew_window: DEFAULT_RENEW_WINDOW,
            hook: None,
            snapshot: Arc::new(ArcSwap::from_pointee(token.clone())),
            state: Arc::new(Mutex::new(UserState {
                current: token,
                pending: false,
            })),
        }
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

    fn set_current(&self, state: &mut UserState, token: Token) {
        self.snapshot.store(Arc::new(token.clone()));
        state.current = token;
        state.pending = self.hook.is_some();
    }

    async fn persist(&self, state: &mut UserState) -> Result<(), Error> {
        if let Some(hook) = &self.hook {
            hook.persist_boxed(state.current.clone())
                .await
                .map_err(Error::Persist)?;
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

        if state.pending {
            self.persist(&mut state).await?;
            if !state.current.is_expired() {
                return Ok(state.current.clone());
            }
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

        if refresh_expires_at - now < self.renew_window {
            match self.renew(&state.current).await {
                Ok(renewed) => self.set_current(&mut state, renewed),
                Err(Error::Douyin(d))
                    if matches!(
                        d.kind(),
                        CodeKind::RefreshTokenExpired | CodeKind::RateLimited
                    ) =>
                {
                    return Err(reauth(Some(d)));
                }
                Err(e) => {
                    tracing::warn!(
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
                    if let Err(pe) = self.persist(&mut state).await {
                        tracing::warn!(open_id = %open_id, error = %pe, "persisting the renewed refresh token failed");
                    }
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
            .field("client_key", &self.client_key)
            .field("client_secret", &self.client_secret)
            .field("base_url", &self.base_url)
            .field("renew_window", &self.renew_window)
            .field("persist_hook", &self.hook.is_some())
            .field("current", &*self.snapshot.load())
            .finish_non_exhaustive()
    }
}

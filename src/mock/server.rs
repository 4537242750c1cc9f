//! [`MockDouyin`]: the server on loopback, its builder and its accept loop.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::config::{
    Config, DEFAULT_ACCESS_TOKEN_LIFETIME, DEFAULT_BUSINESS_TOKEN_LIFETIME, DEFAULT_CLIENT_KEY,
    DEFAULT_CLIENT_SECRET, DEFAULT_CLIENT_TOKEN_LIFETIME, DEFAULT_CLIENT_TOKEN_RATE_LIMIT,
    DEFAULT_CLIENT_TOKEN_RATE_WINDOW, DEFAULT_CODE_LIFETIME, DEFAULT_MAX_RENEWALS,
    DEFAULT_REFRESH_TOKEN_LIFETIME,
};
use super::handlers;
use super::state::State;
use super::types::{Counters, TokenFailure, UserGrant};

/// Configures a [`MockDouyin`] before it starts; see [`MockDouyin::builder`].
#[derive(Clone)]
pub struct MockDouyinBuilder {
    config: Config,
}

impl fmt::Debug for MockDouyinBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("MockDouyinBuilder")
            .field("client_key", &c.client_key)
            .field("client_secret", &"<redacted>")
            .field("client_token_lifetime", &c.client_token_lifetime)
            .field("access_token_lifetime", &c.access_token_lifetime)
            .field("refresh_token_lifetime", &c.refresh_token_lifetime)
            .field("code_lifetime", &c.code_lifetime)
            .field("max_renewals", &c.max_renewals)
            .field("rate_limit", &c.rate_limit)
            .field("rate_window", &c.rate_window)
            .finish()
    }
}

impl Default for MockDouyinBuilder {
    fn default() -> Self {
        Self {
            config: Config {
                client_key: DEFAULT_CLIENT_KEY.into(),
                client_secret: DEFAULT_CLIENT_SECRET.into(),
                client_token_lifetime: DEFAULT_CLIENT_TOKEN_LIFETIME,
                access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
                refresh_token_lifetime: DEFAULT_REFRESH_TOKEN_LIFETIME,
                code_lifetime: DEFAULT_CODE_LIFETIME,
                max_renewals: DEFAULT_MAX_RENEWALS,
                rate_limit: DEFAULT_CLIENT_TOKEN_RATE_LIMIT,
                rate_window: DEFAULT_CLIENT_TOKEN_RATE_WINDOW,
                business_token_lifetime: DEFAULT_BUSINESS_TOKEN_LIFETIME,
            },
        }
    }
}

impl MockDouyinBuilder {
    /// The `client_key` the mock accepts (default [`DEFAULT_CLIENT_KEY`]).
    pub fn client_key(mut self, client_key: impl Into<String>) -> Self {
        self.config.client_key = client_key.into();
        self
    }

    /// The `client_secret` the mock accepts (default [`DEFAULT_CLIENT_SECRET`]).
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.config.client_secret = client_secret.into();
        self
    }

    /// How long business tokens live (default 30 days); their refresh tokens live the
    /// [refresh-token lifetime](Self::refresh_token_lifetime).
    pub fn business_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.business_token_lifetime = lifetime;
        self
    }

    /// How long client tokens live (default 7200 s), and mini-app and mini-game app tokens.
    pub fn client_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.client_token_lifetime = lifetime;
        self
    }

    /// How long user access tokens live (default 1,296,000 s).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.access_token_lifetime = lifetime;
        self
    }

    /// How long refresh tokens live (default 2,592,000 s).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.refresh_token_lifetime = lifetime;
        self
    }

    /// How long authorization codes live (default 10 minutes).
    pub fn code_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.code_lifetime = lifetime;
        self
    }

    /// How many times one authorisation's refresh token may be renewed (default 5).
    pub fn max_renewals(mut self, max: u32) -> Self {
        self.config.max_renewals = max;
        self
    }

    /// Rate limit of `/oauth/client_token/`: at most `max_calls` successful-looking calls
    /// (right key and secret) per `window`, then 10020 until older calls leave the window
    /// (default 500 per 5 minutes, as Douyin documents). The stable endpoint is not limited.
    pub fn client_token_rate_limit(mut self, max_calls: usize, window: Duration) -> Self {
        self.config.rate_limit = max_calls;
        self.config.rate_window = window;
        self
    }

    /// Binds `127.0.0.1:0` and spawns the server on the current Tokio runtime.
    ///
    /// Fails if the port cannot be bound. Panics, as [`tokio::spawn`] does, outside a runtime.
    pub async fn start(self) -> io::Result<MockDouyin> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(self.config));
        let task = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(MockDouyin { state, addr, task })
    }
}

/// A running mock Douyin server; see the [module docs](crate::mock) for its routes and knobs.
///
/// Dropping it stops the server and closes its connections.
pub struct MockDouyin {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl fmt::Debug for MockDouyin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDouyin")
            .field("addr", &self.addr)
            .field("client_key", &self.state.config.client_key)
            .field("counters", &self.state.counters())
            .finish_non_exhaustive()
    }
}

impl Drop for MockDouyin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockDouyin {
    /// Starts a mock with the default key, secret and lifetimes.
    pub async fn start() -> io::Result<Self> {
        Self::builder().start().await
    }

    /// A builder to configure the key, secret and lifetimes before starting.
    pub fn builder() -> MockDouyinBuilder {
        MockDouyinBuilder::default()
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `client_key` the mock accepts.
    pub fn client_key(&self) -> &str {
        &self.state.config.client_key
    }

    /// The `client_secret` the mock accepts.
    pub fn client_secret(&self) -> &str {
        &self.state.config.client_secret
    }

    /// Stops the server and waits until its accept loop and connections are gone.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // Cancelled is the expected outcome; a panic in the server task is not the caller's.
        let _ = (&mut self.task).await;
    }

    /// Simulates `open_id` consenting to `scopes`: returns a single-use authorization code
    /// that lives 10 minutes (or the builder's code lifetime). The user's earlier unused code,
    /// if any, dies.
    pub fn authorize<S: Into<String>>(
        &self,
        open_id: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> String {
        self.state
            .authorize(open_id.into(), scopes.into_iter().map(Into::into).collect())
    }

    /// Creates an authorisation for `open_id` directly, as if a code had been exchanged
    /// (the code-exchange counter does not move).
    pub fn issue_user_tokens<S: Into<String>>(
        &self,
        open_id: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> UserGrant {
        self.state
            .issue_user_tokens(open_id.into(), scopes.into_iter().map(Into::into).collect())
    }

    /// Simulates `tt.login` in a mini-app or mini-game for the user `openid`: returns a
    /// single-use login code for `code2session` (both families), which lives the
    /// [code lifetime](MockDouyinBuilder::code_lifetime).
    pub fn login_code(&self, openid: impl Into<String>) -> String {
        let now = self.state.clock();
        self.state.apps.login_code(
            Some(openid.into()),
            None,
            now,
            self.state.config.code_lifetime,
        )
    }

    /// Simulates an anonymous `tt.login`: a single-use `anonymous_code` for
    /// `anonymous_openid`.
    pub fn anonymous_login_code(&self, anonymous_openid: impl Into<String>) -> String {
        let now = self.state.clock();
        self.state.apps.login_code(
            None,
            Some(anonymous_openid.into()),
            now,
            self.state.config.code_lifetime,
        )
    }

    /// Expires every current client token (plain and stable), every mini-app, mini-game and
    /// business token and every user access token now. Refresh tokens and codes stay valid, so
    /// refreshes work.
    pub fn expire_all_tokens(&self) {
        self.state.expire_all();
    }

    /// Expires one token of any kind (client, access, refresh, code) now; returns whether the
    /// mock knew it. An expired access token is answered as expired (2190008), not invalid.
    pub fn expire_token(&self, token: &str) -> bool {
        self.state.expire_token(token)
    }

    /// Revokes a token; returns whether the mock knew it. A client token or code is forgotten
    /// (answered as invalid); a user's access or refresh token kills that whole authorisation,
    /// as when the user revokes the app: APIs answer invalid, refresh answers 10010.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.state.revoke_token(token)
    }

    /// Revokes every authorisation and pending code of `open_id`; returns how many
    /// authorisations there were.
    pub fn revoke_user(&self, open_id: &str) -> usize {
        self.state.revoke_user(open_id)
    }

    /// Moves the mock's clock forward by `by` (on top of Tokio's clock), so tokens expire
    /// without pausing Tokio's clock.
    pub fn advance_clock(&self, by: Duration) {
        self.state.advance_clock(by);
    }

    /// How far [`advance_clock`](Self::advance_clock) has moved the mock's clock in total.
    pub fn clock_offset(&self) -> Duration {
        self.state.clock_offset()
    }

    /// Makes the next `n` calls to any token endpoint fail with `failure`, in order after any
    /// failures already queued. A failed call changes no state (but is counted).
    pub fn fail_next_token_calls(&self, n: usize, failure: TokenFailure) {
        self.state.push_failures(n, failure);
    }

    /// Forgets the queued token-endpoint failures.
    pub fn clear_token_failures(&self) {
        self.state.clear_failures();
    }

    /// Delays every token-endpoint answer by `latency` (zero turns it off). The server sleeps
    /// on Tokio's clock, so a test with a paused clock sees the time pass at once.
    pub fn set_token_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// When on, protected APIs answer an expired or invalid token with HTTP 401 (and the usual
    /// body) instead of HTTP 200.
    pub fn answer_401_on_expiry(&self, on: bool) {
        self.state.set_answer_401(on);
    }

    /// When on, successful token answers send their numbers as strings (`"error_code": "0"`,
    /// `"expires_in": "7200"`) and `"message": "<nil>"`, as some of Douyin's documented samples
    /// do, so clients can prove they accept both. The mini-app, mini-game, business-token and
    /// `code2session` answers then send every number as a string (`"err_no": "0"`), as the
    /// official SDK's models declare them.
    pub fn answer_numbers_as_strings(&self, on: bool) {
        self.state.set_numbers_as_strings(on);
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.state.reset_counters();
    }
}

/// The accept loop: one task per connection, all aborted when this future is dropped.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = std::future::poll_fn(|cx| {
            // Reap finished connections so the set does not grow without bound.
            while let std::task::Poll::Ready(Some(_)) = connections.poll_join_next(cx) {}
            listener.poll_accept(cx)
        })
        .await;
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |req| handlers::handle(Arc::clone(&state), req));
            // A connection error (the client went away) ends only that connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

//! An embedded mock of Douyin's OpenAPI token endpoints and protected APIs, for tests,
//! examples and the quickstart.
//!
//! [`MockDouyin::start`] binds a real HTTP/1.1 server to `127.0.0.1` on a random port and runs
//! it on the current Tokio runtime until the [`MockDouyin`] handle is dropped or
//! [`shutdown`](MockDouyin::shutdown) is called. It answers in Douyin's shapes (HTTP 200 with
//! the code in the JSON body) and follows the token rules of `douyin-protocol.md`: only the
//! newest two client tokens stay valid, the stable client token is idempotent, refreshing an
//! unexpired access token returns the same token with a later expiry, renewing a refresh token
//! kills the old one at once (at most five times per authorisation), codes work once.
//!
//! Lifetimes run on [`tokio::time::Instant`], so a test on a paused clock
//! (`#[tokio::test(start_paused = true)]` and `tokio::time::advance`) can let tokens expire;
//! [`MockDouyin::advance_clock`] shifts the mock's own notion of "now" without touching Tokio's
//! clock.
//!
//! # Routes
//!
//! Token endpoints (trailing slash optional; POST only; `client_key` and, where noted,
//! `client_secret` must match the mock's):
//!
//! | route | body | answers |
//! | --- | --- | --- |
//! | `POST /oauth/client_token/` | JSON, form-urlencoded or query | a new `clt.…` each call; only the newest two stay valid; over 500 calls in 5 minutes: 10020 |
//! | `POST /oauth/stable_client_token/` | JSON | the same `clt.…` while it is valid (with the seconds left), a new one after |
//! | `POST /oauth/access_token/` | form | code exchange: `act.…`, `rft.…`, `open_id`, `scope`, lifetimes |
//! | `POST /oauth/refresh_token/` | form | same `act.…` with a later expiry if unexpired, a new one if expired; refresh token not extended |
//! | `POST /oauth/renew_refresh_token/` | form | a new `rft.…`; the old one dies at once; at most 5 per authorisation |
//! | `GET /platform/oauth/connect/` | — | 200 with the query parameters echoed (no consent page) |
//!
//! Query parameters are read on every token endpoint; the body wins on conflicts. A body of the
//! wrong kind (JSON to a form endpoint, form to the stable endpoint) is a parameter error, so a
//! client that ignores Douyin's "form, not JSON" rule fails against the mock as it would
//! against Douyin. Success: `{"data": {…, "error_code": 0, "description": ""}, "message":
//! "success"}`. Errors: `{"data": {"description": …, "error_code": N}, "extra": {"logid": …,
//! "now": ms}}` with
//!
//! | code | when |
//! | --- | --- |
//! | 2100005 | a parameter is missing or wrong, or the body is of the wrong kind |
//! | 10003 | unknown `client_key` |
//! | 10013 | wrong `client_secret` |
//! | 10007 | the code is unknown, used or older than 10 minutes |
//! | 10010 | the refresh token is unknown, renewed away, revoked or expired |
//! | 10020 | the renewal limit is used up; on `/oauth/client_token/`, rate limited |
//!
//! The plain and the stable client tokens are independent: neither rotates the other out
//! (Douyin does not document how they interact).
//!
//! Protected APIs (any method, any other path): the token is read from the `access-token`
//! header, else `Authorization: Bearer …`, else the `access_token` query parameter. Client and
//! user tokens are both accepted everywhere. If the query has an `open_id` that differs from a
//! user token's, the answer is "open_id mismatch" (2190015, 28001015 in the `err_no` family).
//!
//! | route | body shape | expired | invalid (missing, unknown, rotated out, revoked) |
//! | --- | --- | --- | --- |
//! | `/goodlife/…` | shape 2: `{"data": {…}, "extra": {"error_code": N, "description", "logid", "now"}}` | 2190008 | 2190002 |
//! | `/api/…` | shape 3: `{"err_no": N, "err_msg", "log_id", "data": {…}}` | 28001008 | 28001003 |
//! | `/test/401/…` | shape 1, and HTTP **401** on expired or invalid | 2190008 | 2190002 |
//! | anything else (e.g. `/oauth/userinfo/`, `/data/external/user/fans/`) | shape 1: `{"data": {"error_code": N, "description"}, "extra": {"error_code": N, "description", "sub_error_code": 0, "sub_description": "", "logid", "now"}}` | 2190008 | 2190002 |
//!
//! All answer HTTP 200 unless [`MockDouyin::answer_401_on_expiry`] is on (or the path is under
//! `/test/401/`). Success is code 0 with `data` holding `token_type` (`"client"` or `"user"`),
//! `path`, and for a user token its `open_id`, `nickname` and `scope` (for a client token, the
//! queried `open_id` if any).
//!
//! # Knobs and counters
//!
//! - [`authorize`](MockDouyin::authorize): a user consents; returns a single-use code.
//!   [`issue_user_tokens`](MockDouyin::issue_user_tokens) skips the code exchange.
//! - [`expire_all_tokens`](MockDouyin::expire_all_tokens),
//!   [`expire_token`](MockDouyin::expire_token), [`revoke_token`](MockDouyin::revoke_token),
//!   [`revoke_user`](MockDouyin::revoke_user), [`advance_clock`](MockDouyin::advance_clock).
//! - [`fail_next_token_calls`](MockDouyin::fail_next_token_calls) with a [`TokenFailure`]
//!   (an error code, an HTTP status or a malformed body),
//!   [`set_token_latency`](MockDouyin::set_token_latency),
//!   [`answer_401_on_expiry`](MockDouyin::answer_401_on_expiry),
//!   [`answer_numbers_as_strings`](MockDouyin::answer_numbers_as_strings).
//! - [`counters`](MockDouyin::counters) returns a [`Counters`] snapshot.
//!
//! The handle's `Debug` shows the address and the counters, never a secret.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use douyin_auth::mock::{MockDouyin, TokenFailure};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let mock = MockDouyin::builder()
//!     .client_token_lifetime(Duration::from_secs(600))
//!     .start()
//!     .await?;
//! let base_url = mock.base_url(); // "http://127.0.0.1:PORT": point the crate's endpoints here
//! assert!(base_url.starts_with("http://127.0.0.1:"));
//!
//! // A user consents; the app exchanges the code at POST {base_url}/oauth/access_token/.
//! let code = mock.authorize("open-id-1", ["user_info"]);
//! assert!(code.starts_with("code."));
//!
//! // Make the next token call fail as Douyin does when it is busy.
//! mock.fail_next_token_calls(1, TokenFailure::Code(2_100_004));
//! // Every token the mock issued so far expires now.
//! mock.expire_all_tokens();
//! assert_eq!(mock.counters().client_token_calls, 0);
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

mod handlers;
mod state;

use state::{Config, State};

/// The `client_key` the mock accepts unless the builder sets another.
pub const DEFAULT_CLIENT_KEY: &str = "mock_client_key";
/// The `client_secret` the mock accepts unless the builder sets another.
pub const DEFAULT_CLIENT_SECRET: &str = "mock_client_secret";
/// Default client-token lifetime: 7200 s.
pub const DEFAULT_CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// Default user access-token lifetime: 1,296,000 s (15 days).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(1_296_000);
/// Default refresh-token lifetime: 2,592,000 s (30 days).
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(2_592_000);
/// Default authorization-code lifetime: 10 minutes.
pub const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Default number of refresh-token renewals per authorisation: 5.
pub const DEFAULT_MAX_RENEWALS: u32 = 5;

/// Default rate limit of `/oauth/client_token/`: 500 calls per
/// [`DEFAULT_CLIENT_TOKEN_RATE_WINDOW`].
pub const DEFAULT_CLIENT_TOKEN_RATE_LIMIT: usize = 500;
/// Default window of the client-token rate limit: 5 minutes.
pub const DEFAULT_CLIENT_TOKEN_RATE_WINDOW: Duration = Duration::from_secs(300);

/// How the next token-endpoint calls fail; see [`MockDouyin::fail_next_token_calls`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFailure {
    /// HTTP 200 with this Douyin error code in the token endpoints' error shape
    /// (e.g. 2100004 system busy, 10020 rate limited).
    Code(i64),
    /// This HTTP status with a non-JSON body (e.g. 500 or 502 from a gateway).
    HttpStatus(StatusCode),
    /// HTTP 200 with a truncated, unparseable JSON body.
    Malformed,
}

/// A snapshot of the mock's counters. Each counts requests as they arrive, including those
/// answered with an injected failure or an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Calls to `/oauth/client_token/`.
    pub client_token_calls: u64,
    /// Calls to `/oauth/stable_client_token/`.
    pub stable_client_token_calls: u64,
    /// Calls to `/oauth/access_token/` (code exchanges).
    pub code_exchanges: u64,
    /// Calls to `/oauth/refresh_token/`.
    pub refresh_calls: u64,
    /// Calls to `/oauth/renew_refresh_token/`.
    pub renew_calls: u64,
    /// Calls to protected APIs, whatever the answer.
    pub api_calls: u64,
    /// Protected-API calls rejected because the token had expired.
    pub api_expired: u64,
    /// Protected-API calls rejected because the token was missing, unknown or revoked.
    pub api_invalid: u64,
}

impl Counters {
    /// Calls to either client-token endpoint.
    pub fn all_client_token_calls(&self) -> u64 {
        self.client_token_calls + self.stable_client_token_calls
    }

    /// Protected-API calls rejected as expired or invalid.
    pub fn api_rejected(&self) -> u64 {
        self.api_expired + self.api_invalid
    }
}

/// A user's tokens made by [`MockDouyin::issue_user_tokens`]. `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserGrant {
    /// The user's `open_id`.
    pub open_id: String,
    /// The access token (`act.…`).
    pub access_token: String,
    /// The refresh token (`rft.…`).
    pub refresh_token: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
}

impl fmt::Debug for UserGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserGrant")
            .field("open_id", &self.open_id)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

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

    /// How long client tokens live (default 7200 s).
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

/// A running mock Douyin server; see the [module docs](self) for its routes and knobs.
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

    /// Expires every current client token (plain and stable) and every user access token
    /// now. Refresh tokens and codes stay valid, so refreshes work.
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
    /// do, so clients can prove they accept both.
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

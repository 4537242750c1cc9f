//! douyin-auth: hands-off Douyin (抖音) Open Platform authentication for tower, hyper, axum,
//! tonic and reqwest-middleware clients.
//!
//! # Overview
//!
//! Every call to a Douyin OpenAPI endpoint needs a token in the `access-token` header: the
//! app's client token (about 2 hours) or a user's access token (about 15 days, renewed with a
//! refresh token). [`DouyinAuthLayer`] is a tower [`Layer`](tower_layer::Layer) that
//!
//! - attaches the token to every request, from a cache read without a lock or an allocation;
//! - keeps it fresh: a stale token is served while exactly one background refresh runs, and
//!   only an expired or missing token makes requests wait (for that same one refresh);
//! - when the answer says the token expired (HTTP 401, or one of Douyin's error codes in any of
//!   its JSON body shapes, which Douyin sends with HTTP 200), drops the token, refreshes it
//!   and sends the request **once** more;
//! - never shows a secret in `Debug`, `Display`, errors or logs, and attaches tokens only to
//!   Douyin's hosts over HTTPS (and to loopback, for tests and the mock).
//!
//! Tokens come from a [`TokenSource`]: [`douyin::ClientCredentials`] for the client token,
//! [`douyin::UserTokens`] for one user's tokens (after [`douyin::OAuthClient`]'s code
//! exchange), [`douyin::MiniAppCredentials`] and [`douyin::MiniGameCredentials`] for mini-app
//! and mini-game app tokens, [`douyin::BusinessTokens`] for an account's business token,
//! [`source_fn`] for a closure, or your own implementation ([the `douyin` module](douyin) has
//! one example per family, and the mini-app and mini-game login, `code2session`).
//!
//! # Example
//!
//! A hyper-util client behind the layer, against the embedded [mock Douyin server](mock)
//! (feature `mock`, on by default) so it runs anywhere:
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "https"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), douyin_auth::BoxError> {
//! use bytes::Bytes;
//! use douyin_auth::douyin::ClientCredentials;
//! use douyin_auth::mock::MockDouyin;
//! use douyin_auth::DouyinAuthLayer;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let mock = MockDouyin::start().await?;
//! // In production: ClientCredentials::new("your_client_key", "your_client_secret").
//! let source = ClientCredentials::new(mock.client_key(), mock.client_secret())
//!     .base_url(mock.base_url());
//!
//! let client = ServiceBuilder::new()
//!     .layer(DouyinAuthLayer::new(source))
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
//!
//! // A client-token API (user APIs such as /data/external/user/fans/ take a user token).
//! let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
//! let answer = client.oneshot(http::Request::get(url).body(Full::default())?).await?;
//! let body = answer.into_body().collect().await?.to_bytes();
//! assert!(body.starts_with(br#"{"data":{"description":"","error_code":0"#));
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "https")))]
//! # fn main() {}
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `https` | yes | [`douyin::HttpsClient`] (hyper-util over rustls, `ring`, webpki roots), so `ClientCredentials::new`, `UserTokens::new` and `OAuthClient::new` need no HTTP client argument |
//! | `mock` | yes | [`mock::MockDouyin`], the embedded mock Douyin server for tests, examples and the quickstart; turn default features off (and `https` back on) to leave it out of production builds |
//! | `axum` | no | [`ReplayBody`] for `axum::body::Body` (axum 0.8), so the layer stacks on a hyper-util `Client<_, axum::body::Body>`; [`login::DouyinLogin`], the drop-in "log in with Douyin" router |
//! | `tonic` | no | [`ReplayBody`] for `tonic::body::Body` (tonic 0.14), so the layer stacks on a tonic `Channel` |
//! | `reqwest-middleware` | no | `DouyinAuthMiddleware`, the same cache and classifier as a `reqwest_middleware::Middleware` (reqwest-middleware 0.5, reqwest 0.13) |
//! | `redis` | no | [`store::RedisStore`]: one client token and each user's tokens shared by a fleet, on one Redis server or a Redis Cluster (redis 1.x, a Redis 6+ server) |
//! | `postgres` | no | [`store::PostgresStore`]: tokens and leases in a PostgreSQL table (sqlx 0.8, postgres + tokio only) |
//! | `test-util` | no | [`store::testing`]: the conformance kit that runs the whole `TokenStore` contract against your store |
//! | `webhook` | no | [`webhook::VerifyWebhookLayer`], [`webhook::VerifySpiLayer`]: Douyin's calls into the app, verified |
//! | `metrics` | no | counters, histograms and a gauge of the refreshes, waits, retries, back-offs, store errors and webhook rejections through the `metrics` facade (0.24): names and labels in [`metrics`] |
//! | `cli` | no | the `douyin` command (`cargo install douyin-auth --features cli`): `douyin api` calls any endpoint with the token handled (N times, C at a time, or following its pages), `douyin token` shows the token's kind and lifetime, `douyin mock` serves the mock standalone; turns on `https` and `mock` |
//!
//! Supported versions: hyper 1 with hyper-util 0.1, tower 0.5, axum 0.8 (axum-core 0.5),
//! tonic 0.14, reqwest-middleware 0.5 with reqwest 0.13. The minimum Rust version is 1.85.
//!
//! # Integrations
//!
//! ## hyper-util
//!
//! The layer wraps a hyper-util legacy `Client<C, B>` for any connector `C` and any request
//! body `B` that implements [`ReplayBody`] (`Full<Bytes>`, `String`, boxed bodies, and with
//! the features `axum::body::Body` and `tonic::body::Body`). The inner client keeps seeing the
//! body type it was built for; the response body is [`ResponseBody`], which yields the bytes
//! the server sent. See the [example above](#example) and `examples/hyper_client.rs`.
//!
//! ## axum
//!
//! Keep one layered client in the app state; clones share the connection pool and the token
//! cache, so every handler uses the same token and one refresh at a time
//! (`examples/axum_app.rs`; feature `axum` for `axum::body::Body` requests):
//!
//! ```no_run
//! # #[cfg(all(feature = "axum", feature = "https"))]
//! # mod demo {
//! use axum::{extract::State, routing::get, Router};
//! use douyin_auth::{douyin::ClientCredentials, DouyinAuth, DouyinAuthLayer};
//! use hyper_util::client::legacy::{connect::HttpConnector, Client};
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Layer, ServiceExt};
//!
//! type Douyin = DouyinAuth<Client<HttpConnector, axum::body::Body>>;
//!
//! async fn fans(State(douyin): State<Douyin>) -> axum::response::Response {
//!     let request = http::Request::get("https://open.douyin.com/data/extern/billboard/hot_video/")
//!         .body(axum::body::Body::empty())
//!         .expect("a valid request");
//!     match douyin.oneshot(request).await {
//!         Ok(answer) => answer.map(axum::body::Body::new),
//!         Err(e) => axum::response::IntoResponse::into_response((
//!             http::StatusCode::BAD_GATEWAY,
//!             e.to_string(),
//!         )),
//!     }
//! }
//!
//! pub fn app() -> Router {
//!     let source = ClientCredentials::new("your_client_key", "your_client_secret");
//!     let http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
//!     let douyin: Douyin = DouyinAuthLayer::new(source).layer(http);
//!     Router::new().route("/fans", get(fans)).with_state(douyin)
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! A real client calls `https://` URLs: build it over an HTTPS connector, or use the built-in
//! one, `douyin::HttpsClient::<axum::body::Body>::with_body()` (feature `https`).
//!
//! **If `douyin.oneshot(request)` fails with E0599**, "the method `oneshot` exists for struct
//! `DouyinAuth<…>`, but its trait bounds were not satisfied": the layer's service is a
//! `Service` only for request bodies it can replay ([`ReplayBody`]), and `axum::body::Body` is
//! one only with douyin-auth's **`axum` feature** (`tonic::body::Body`: the `tonic` feature).
//! rustc gives E0599 for a method call and does not show the crate's own message there;
//! written as a function call, `tower::ServiceExt::oneshot(douyin, request)`, the same mistake
//! is an E0277 that names the feature:
//!
//! ```compile_fail,E0277
//! // http-body-util's `Empty` is not replayable, as `axum::body::Body` is not without the
//! // feature: "`Empty<Bytes>` is not a request body the douyin-auth layer can replay …
//! // note: for `axum::body::Body` turn on douyin-auth's `axum` feature".
//! use bytes::Bytes;
//! use douyin_auth::{DouyinAuthLayer, StaticToken};
//! use http_body_util::{Empty, Full};
//! use tower::Layer;
//!
//! let inner = tower::service_fn(|_: http::Request<Empty<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
//! });
//! let douyin = DouyinAuthLayer::new(StaticToken::new("clt.t")).layer(inner);
//! let request = http::Request::new(Empty::<Bytes>::new());
//! let _answer = tower::ServiceExt::oneshot(douyin, request);
//! ```
//!
//! "Log in with Douyin" is [`login::DouyinLogin`] (feature `axum`): a router with `GET /login`
//! and `GET /callback` that handles the CSRF state in a signed cookie, the code exchange and the
//! user's tokens, then hands over to the app's `on_login` hook. `examples/axum_login.rs` is a
//! complete app on top of it, with `/me` called on the user's behalf through
//! [`users::UserTokenLayer`].
//!
//! ## tonic
//!
//! With the feature `tonic`, the layer stacks on a `Channel` and the result is a
//! `tonic::client::GrpcService<tonic::body::Body>`, usable with generated clients
//! (`MyClient::new(client)`). Use [`expiry::GrpcExpiry`] so `grpc-status: 16`
//! (UNAUTHENTICATED) counts as expiry:
//!
//! ```no_run
//! # #[cfg(feature = "tonic")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use douyin_auth::{expiry::GrpcExpiry, DouyinAuthLayer, StaticToken};
//! use tower::ServiceBuilder;
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await?;
//! let layer = DouyinAuthLayer::builder(StaticToken::new("clt.example"))
//!     .classifier(GrpcExpiry)
//!     .build();
//! let client = ServiceBuilder::new().layer(layer).service(channel);
//! // let mut greeter = GreeterClient::new(client);
//! # drop(client); Ok(()) }
//! # fn main() {}
//! ```
//!
//! tonic request bodies are streams of unknown size, so the layer cannot replay them: an
//! UNAUTHENTICATED answer reaches the caller as it came, the rejected token is dropped, and the
//! next call waits for the one refresh and carries the new token. Retry the call yourself if it
//! is idempotent.
//!
//! ## reqwest-middleware
//!
//! `DouyinAuthMiddleware` (feature `reqwest-middleware`) is a second front end of the same
//! core. `DouyinAuthMiddleware::from_layer(&layer)` shares a layer's cache, classifier and
//! options, so a tower client and a reqwest client of one app use one token:
//!
//! ```no_run
//! # #[cfg(all(feature = "reqwest-middleware", feature = "https"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use douyin_auth::{douyin::ClientCredentials, DouyinAuthMiddleware};
//!
//! let source = ClientCredentials::new("your_client_key", "your_client_secret");
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(DouyinAuthMiddleware::new(source))
//!     .build();
//! let answer = client
//!     .get("https://open.douyin.com/data/extern/billboard/hot_video/")
//!     .send()
//!     .await?;
//! # drop(answer); Ok(()) }
//! # fn main() {}
//! ```
//!
//! # Production builds
//!
//! The mock server is a default feature so the examples run without flags. Leave it out of what
//! you deploy (`default-features = false`), keep it for the tests, and give each environment
//! its own Redis key prefix so staging never adopts production's tokens:
//!
//! ```toml
//! [dependencies]
//! douyin-auth = { version = "0.1", default-features = false, features = ["https", "redis"] }
//!
//! [dev-dependencies]
//! douyin-auth = { version = "0.1", features = ["mock"] }
//! ```
//!
//! ```no_run
//! # #[cfg(all(feature = "redis", feature = "https"))]
//! # async fn demo() -> Result<(), douyin_auth::BoxError> {
//! use douyin_auth::douyin::OAuthClient;
//! use douyin_auth::store::{RedisConfig, RedisStore};
//! use douyin_auth::users::StoredUsers;
//!
//! let env = std::env::var("APP_ENV")?; // "prod", "staging", …
//! let config = RedisConfig::new("redis://127.0.0.1:6379").key_prefix(format!("my-app:{env}:douyin:"));
//! let store = RedisStore::open(config).await?;
//! // The app's key, secret, HTTP client and base URL, given once.
//! let oauth = OAuthClient::new("your_client_key", "your_client_secret");
//! let users = StoredUsers::from_oauth(&oauth, store);
//! # drop(users); Ok(()) }
//! # fn main() {}
//! ```
//!
//! # Retry semantics
//!
//! A request is sent at most twice. It is sent again only when
//!
//! - the classifier says the first answer means "expired or invalid token"
//!   ([`expiry::DouyinExpiry`] by default: HTTP 401, or an expiry code in a JSON body read up to
//!   the peek limit, 16 KiB; [`expiry::GrpcExpiry`] for gRPC; or your own
//!   [`expiry::ClassifyExpiry`]);
//! - the request can be replayed: with the tower layer, an empty body or one of exactly known
//!   size up to the replay limit (64 KiB); with the reqwest middleware, any body
//!   `reqwest::Request::try_clone` can clone (anything but a stream);
//! - retries are on ([`DouyinAuthLayerBuilder::retry_on_expiry`]) and the request carries no
//!   [`NoRetry`] extension.
//!
//! - a token other than the rejected one can be had (a different secret, compared byte for
//!   byte, not only a generation): one already in the cache, or the one refresh in flight, or
//!   a refresh started now, in which the source is told which token was rejected
//!   ([`TokenSource::fetch_replacing`]; [`douyin::ClientCredentials`] then asks the classic
//!   endpoint once when the stable one hands the same token back).
//!
//! The second answer reaches the caller whatever it says: never a third attempt. When the
//! request cannot be sent again (not replayable, no new token, the refresh failed, the cache
//! is backing off), the caller gets the first answer as the server sent it (status, headers,
//! body byte for byte) and the refresh failure is logged; the rejected token is still dropped
//! (a refresh starts for the next requests). Rejections cannot drive a refresh per request: a
//! token that a rejection's refresh brought and that is rejected again within the minimum
//! refresh interval (six times it for an "invalid" answer, [`expiry::Rejection::Invalid`])
//! drives no further one ([`DouyinAuthLayerBuilder::min_refresh_interval`]).
//!
//! A replayable body is read before the token is taken, so a slow body never carries a token
//! past its expiry; a body that ends with trailers is sent once, as it came. A JSON answer is
//! peeked at up to the peek limit and the peek timeout (5 s): a stalled body is handed over
//! unclassified, the bytes read so far in front of the rest.
//!
//! # Refresh and back-off
//!
//! One fetch runs per cache at a time, always: requests give up waiting at the refresh timeout
//! (30 s), the fetch runs on to its end and its token is used. A stale token (inside the
//! refresh margin) is served while one background refresh runs; a token inside its expiry
//! margin is never sent. After failures:
//!
//! ```text
//! t = 0      a request, no token: fetch #1 ─────────────── fails (Douyin down)
//!            back-off 1 s (floor; doubles per failure up to the cap, 60 s; while no token is
//!            usable at most the refresh timeout, 30 s)
//! t = 0.5 s  a request, no token: waits for the next attempt (it is within 30 s)
//! t = 1 s    fetch #2 ───── fails; both waiting requests get that error; back-off 1-2 s
//! t ≤ 3 s    fetch #3 ───── Douyin is back: the token; every waiting request is sent with it
//! ...        a rate-limit answer (10020) backs off for the whole cap: a request without a
//!            token then fails at once with Error::Backoff (the next attempt is over 30 s away)
//! after 2 min without a failure the count starts again from the floor
//! ```
//!
//! A background refresh of a still-valid token backs off the same way (up to the cap, 60 s)
//! while the valid token keeps being sent.
//!
//! # Metrics
//!
//! With the feature `metrics`, the crate records its refreshes (by outcome, token family and
//! source, with their duration), the token's remaining lifetime and expiry time, back-offs, stale tokens served,
//! requests that waited for a token and how long, expiry answers, retries, store errors and
//! webhook rejections through the `metrics` facade; any exporter works. The stable names and
//! labels, and a Prometheus example, are in [`metrics`]. No label carries a
//! secret or an unbounded value.
//!
//! # Tracing
//!
//! The crate logs through [`tracing`] with the target `douyin_auth` (filter with
//! `RUST_LOG=douyin_auth=debug` or `EnvFilter::new("douyin_auth=debug")`). Names and fields are
//! stable; no event or span ever carries a client secret, an access or refresh token, or an
//! authorization code (tokens are identified by `generation`, a counter per cache).
//!
//! | what | kind, level | message / name | fields |
//! | --- | --- | --- | --- |
//! | a refresh runs | span, INFO | `token_refresh` (a root span, `follows_from` the request that started it) | `source`: the token source's type, without its module path and generic parameters (`ClientCredentials`, `SharedSource`) |
//! | refresh start | event, DEBUG | `token refresh started` | `source` |
//! | refresh success | event, INFO | `token refresh finished` | `outcome`: `"fetched"` (the source fetched it: from Douyin, for the crate's sources), `"adopted"` (read from a store: another instance or an earlier run fetched it; see [`Provenance`]) or `"unchanged"` (the source handed back the token the cache had, as a stable endpoint does); `open_id` (a user's token: the per-user layer's user, or the token's own), `generation`, `duration_ms`, `expires_in_s` |
//! | refresh failure | event, WARN | `token refresh failed` | `outcome = "error"`, `open_id` (in the per-user layer), `duration_ms`, `error` (this crate's message), `cause` (the token source's error, if it failed) |
//! | stale token served | event, TRACE | `stale token served` | `generation` |
//! | expiry detected | event, DEBUG | `token expiry detected` | `generation` (of the rejected token), `retry` (whether the request is sent again) |
//! | rejected token dropped | event, DEBUG | `token invalidated` | `generation` |
//! | retry sent | event, DEBUG | `retry sent` | `generation` (of the new token) |
//! | persistence failure | event, WARN | `persisting a refreshed token failed` | `open_id`, `error` (the persistence hook's error) |
//! | refresh-token renewal failure | event, WARN | `renewing the refresh token failed; refreshing with the current one` | `open_id`, `error` |
//!
//! The refresh events are emitted inside the `token_refresh` span. The errors of your own
//! token source and persistence hook are logged with their `Display`: keep secrets out of
//! them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod body;
mod cache;
pub mod douyin;
mod error;
pub mod expiry;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod login;
pub mod metrics;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
mod net;
mod source;
pub mod store;
mod sync;
mod token;
pub mod users;
#[cfg(feature = "webhook")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhook")))]
pub mod webhook;

pub use auth::{
    DouyinAuth, DouyinAuthLayer, DouyinAuthLayerBuilder, NoRetry, TokenPlacement,
    ACCESS_TOKEN_HEADER, ACCESS_TOKEN_UNDERSCORE_HEADER, DEFAULT_HOSTS, DEFAULT_PEEK_LIMIT,
    DEFAULT_PEEK_TIMEOUT, DEFAULT_REPLAY_LIMIT, X_TOKEN_HEADER,
};
pub use body::{ReplayBody, ResponseBody};
pub use error::{BoxError, DouyinError, Error, SharedError};
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use middleware::DouyinAuthMiddleware;

/// The response future of [`DouyinAuth`].
pub mod future {
    pub use crate::auth::ResponseFuture;
}
pub use source::{source_fn, FnSource, StaticToken, TokenSource};
pub use token::{Provenance, Token};
#[cfg(feature = "webhook")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhook")))]
pub use webhook::{VerifySpiLayer, VerifyWebhookLayer};

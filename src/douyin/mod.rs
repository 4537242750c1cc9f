//! The Douyin Open Platform wire protocol: token endpoints, error codes, OAuth.
//!
//! - [`ClientCredentials`]: the app's client token (stable endpoint by default).
//! - [`MiniAppCredentials`]: a mini-app's app token (`developer.toutiao.com`).
//! - [`MiniGameCredentials`]: a mini-game's app token (stable endpoint by default, a capped
//!   forced refresh after a rejection).
//! - [`BusinessTokens`]: one account's business (经营) token for one scope, refreshed with its
//!   `biz_refresh_token` and persisted before use.
//! - [`code2session`]: mini-app and mini-game login ([`LoginCode`] → [`Session`]).
//! - [`UserTokens`]: one user's access token, refreshed (and its refresh token renewed) from the
//!   stored refresh token, with a persistence hook.
//! - [`OAuthClient`], [`AuthorizationUrl`], [`State`]: the authorization-code flow.
//! - [`parse_token_response`]: the lenient parser of token answers.
//!
//! Everything talks HTTP through any tower service ([`HttpClient`]); the `https` feature (on by
//! default) adds `HttpsClient`, the built-in client.
//!
//! # One example per family
//!
//! Each runs against the embedded [mock](crate::mock) (features `mock` and `https`, on by
//! default); in production leave out `base_url`.
//!
//! A mini-app's app token, shared by a fleet through a store (a new token cuts the previous one
//! to five minutes), with the mini-app code table:
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "https"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), douyin_auth::BoxError> {
//! use douyin_auth::douyin::{codes::Family, MiniAppCredentials};
//! use douyin_auth::expiry::DouyinExpiry;
//! use douyin_auth::store::{MemoryStore, SharedSource};
//! use douyin_auth::DouyinAuthLayer;
//! # use http_body_util::{BodyExt, Full};
//! # use tower::{Layer, ServiceExt};
//! # let mock = douyin_auth::mock::MockDouyin::start().await?;
//! # let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//! #     .build_http::<Full<bytes::Bytes>>();
//!
//! let app = MiniAppCredentials::new(mock.client_key(), mock.client_secret()) // appid, secret
//!     .base_url(mock.base_url());
//! let shared = SharedSource::new(app, MemoryStore::new(), "mini_app_token:my_app");
//! let client = DouyinAuthLayer::builder(shared)
//!     .classifier(DouyinExpiry::for_family(Family::MiniApp))
//!     .build()
//!     .layer(http);
//! let url = format!("{}/api/apps/v2/qrcode/create/", mock.base_url());
//! let answer = client.oneshot(http::Request::post(url).body(Full::default())?).await?;
//! let body = answer.into_body().collect().await?.to_bytes();
//! let answer: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(answer["err_no"], 0);
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "https")))]
//! # fn main() {}
//! ```
//!
//! A mini-game's app token from the stable endpoint, in the `access_token` header the
//! mini-game server APIs read:
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "https"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), douyin_auth::BoxError> {
//! use douyin_auth::douyin::MiniGameCredentials;
//! use douyin_auth::{DouyinAuthLayer, TokenPlacement};
//! # use http_body_util::{BodyExt, Full};
//! # use tower::{Layer, ServiceExt};
//! # let mock = douyin_auth::mock::MockDouyin::start().await?;
//! # let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//! #     .build_http::<Full<bytes::Bytes>>();
//!
//! let game = MiniGameCredentials::new(mock.client_key(), mock.client_secret())
//!     .base_url(mock.base_url());
//! let client = DouyinAuthLayer::builder(game)
//!     .placement(TokenPlacement::access_token_underscore())
//!     .build()
//!     .layer(http);
//! let url = format!("{}/mgplatform/api/apps/set_user_storage/", mock.base_url());
//! let answer = client.oneshot(http::Request::post(url).body(Full::default())?).await?;
//! let body = answer.into_body().collect().await?.to_bytes();
//! let answer: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(answer["errcode"], 0);
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "https")))]
//! # fn main() {}
//! ```
//!
//! An account's business token for one scope, written to your store before it is used:
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "https"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), douyin_auth::BoxError> {
//! use douyin_auth::douyin::BusinessTokens;
//! use douyin_auth::{BoxError, Token, TokenSource};
//! # let mock = douyin_auth::mock::MockDouyin::start().await?;
//! # mock.issue_user_tokens("ACCOUNT_OPEN_ID", ["data.external.item"]);
//!
//! let biz = BusinessTokens::new(
//!     mock.client_key(),
//!     mock.client_secret(),
//!     "ACCOUNT_OPEN_ID",
//!     "data.external.item",
//! )
//! .base_url(mock.base_url())
//! .on_refresh(|token: Token| async move {
//!     // write token.secret(), token.refresh_token() and their lifetimes to the database
//!     Ok::<_, BoxError>(())
//! });
//! let token = biz.fetch().await?; // or DouyinAuthLayer::new(biz)
//! assert!(token.refresh_token().is_some());
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "https")))]
//! # fn main() {}
//! ```
//!
//! A mini-app (or mini-game) login, `code2session`:
//!
//! ```
//! # #[cfg(all(feature = "mock", feature = "https"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), douyin_auth::BoxError> {
//! use douyin_auth::douyin::{LoginCode, MiniAppCredentials};
//! # let mock = douyin_auth::mock::MockDouyin::start().await?;
//! # let code_from_tt_login = mock.login_code("user-1");
//!
//! let app = MiniAppCredentials::new(mock.client_key(), mock.client_secret())
//!     .base_url(mock.base_url());
//! let session = app.code2session(&LoginCode::new(code_from_tt_login)).await?;
//! assert_eq!(session.openid(), Some("user-1"));
//! let _session_key = session.session_key(); // a secret: never logged, never in Debug
//! # Ok(()) }
//! # #[cfg(not(all(feature = "mock", feature = "https")))]
//! # fn main() {}
//! ```

mod business;
mod client_credentials;
pub mod code2session;
pub mod codes;
mod http;
mod mini_app;
mod mini_game;
mod oauth;
mod user_tokens;
mod wire;

pub use self::business::{BusinessTokens, BUSINESS_TOKEN_PATH, REFRESH_BIZ_TOKEN_PATH};
pub use self::client_credentials::{ClientCredentials, ClientTokenEndpoint};
pub use self::code2session::{LoginCode, Session};
#[cfg(feature = "https")]
#[cfg_attr(docsrs, doc(cfg(feature = "https")))]
pub use self::http::HttpsClient;
pub use self::http::{HttpClient, DEFAULT_BASE_URL, MAX_RESPONSE_BYTES};
pub use self::mini_app::{MiniAppCredentials, MINI_APP_BASE_URL};
pub use self::mini_game::{
    MiniGameCredentials, MiniGameTokenEndpoint, DEFAULT_FORCE_REFRESH_INTERVAL,
    DEFAULT_MAX_FORCE_REFRESHES, MINI_GAME_BASE_URL,
};
pub use self::oauth::{verify_state, AuthorizationUrl, OAuthClient, State};
pub use self::user_tokens::{PersistHook, UserTokens, ADOPT_MIN_REMAINING, DEFAULT_RENEW_WINDOW};
pub use self::wire::{check_answer, parse_token_response, TokenResponse};

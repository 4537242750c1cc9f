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
pub use self::wire::{parse_token_response, TokenResponse};

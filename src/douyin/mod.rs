//! The Douyin Open Platform wire protocol: token endpoints, error codes, OAuth.
//!
//! - [`ClientCredentials`]: the app's client token (stable endpoint by default).
//! - [`UserTokens`]: one user's access token, refreshed (and its refresh token renewed) from the
//!   stored refresh token, with a persistence hook.
//! - [`OAuthClient`], [`AuthorizationUrl`], [`State`]: the authorization-code flow.
//! - [`parse_token_response`]: the lenient parser of token answers.
//!
//! Everything talks HTTP through any tower service ([`HttpClient`]); the `https` feature (on by
//! default) adds `HttpsClient`, the built-in client.

mod client_credentials;
pub mod codes;
mod http;
mod oauth;
mod user_tokens;
mod wire;

pub use self::client_credentials::{ClientCredentials, ClientTokenEndpoint};
#[cfg(feature = "https")]
#[cfg_attr(docsrs, doc(cfg(feature = "https")))]
pub use self::http::HttpsClient;
pub use self::http::{HttpClient, DEFAULT_BASE_URL, MAX_RESPONSE_BYTES};
pub use self::oauth::{verify_state, AuthorizationUrl, OAuthClient, State};
pub use self::user_tokens::{PersistHook, UserTokens, ADOPT_MIN_REMAINING, DEFAULT_RENEW_WINDOW};
pub use self::wire::{parse_token_response, TokenResponse};

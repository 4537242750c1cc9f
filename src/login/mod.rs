//! A drop-in "log in with Douyin" for axum (feature `axum`).
//!
//! [`DouyinLogin`] is built from an [`OAuthClient`](crate::douyin::OAuthClient), a
//! [`TokenStore`](crate::store::TokenStore) for the users' tokens, the redirect URI, the scopes
//! and an `on_login` hook that starts the app's own session. Its [`router`](DouyinLogin::router)
//! serves two routes:
//!
//! - `GET /login`: a fresh random [`State`](crate::douyin::State), bound to the browser in a
//!   short-lived cookie (`HttpOnly`, `SameSite=Lax` so that it survives the cross-site return
//!   from Douyin, `Secure` except on plain-HTTP loopback, `Path` of the redirect URI), signed
//!   with HMAC-SHA256 under a [`LoginKey`] so that it cannot be forged or extended; then a
//!   `302` to Douyin's authorization page.
//! - `GET /callback`: Douyin's error parameters become [`LoginError::Denied`]; otherwise the
//!   cookie's signature and expiry are checked, its state compared with the `state`
//!   parameter in constant time and marked used (a second callback with it is
//!   [`LoginError::ReplayedState`]), the code exchanged, and the user's tokens written to the
//!   store under [`StoredUsers::key_for`](crate::users::StoredUsers::key_for) **before** the
//!   hook runs, so a [`StoredUsers`](crate::users::StoredUsers) over the same store (behind a
//!   [`UserTokenLayer`](crate::users::UserTokenLayer)) acts for the user at once. Every
//!   callback answer deletes the state cookie.
//!
//! Each failure is a [`LoginError`] handed to the error hook (by default a small HTML page
//! with the error's [`kind`](LoginError::kind) and a link to log in again). Nothing panics;
//! logs (target `douyin_auth`: `login started`, `login completed` with the `open_id`, `login
//! refused` with the error's kind) never carry a code, a state, a token or the key.
//!
//! Used states are remembered in this process until their cookie expires. Behind a load
//! balancer give every instance the same [`LoginKey`]; a callback replayed to another
//! instance still fails there, at Douyin's code exchange (a code works once), and the
//! browser's state cookie is gone after the first callback.
//!
//! # Example
//!
//! ```
//! # #[cfg(all(feature = "https", feature = "mock"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::response::Redirect;
//! use douyin_auth::douyin::OAuthClient;
//! use douyin_auth::login::{DouyinLogin, LoggedIn};
//! use douyin_auth::store::MemoryStore;
//! # use tower::ServiceExt;
//!
//! let store = MemoryStore::new(); // the users' tokens; share it with `StoredUsers`
//! let login = DouyinLogin::builder(OAuthClient::new("client_key", "client_secret"), store)
//!     .redirect_uri("https://app.example/callback")
//!     .scope("user_info")
//!     .on_login(|user: LoggedIn| async move {
//!         // start your session for `user.open_id()` here
//!         Redirect::to("/me")
//!     })
//!     .build()?;
//! let app: axum::Router = axum::Router::new().merge(login.router());
//!
//! let answer = app
//!     .oneshot(http::Request::get("/login").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(answer.status(), http::StatusCode::FOUND);
//! let location = answer.headers()["location"].to_str()?;
//! assert!(location.starts_with("https://open.douyin.com/platform/oauth/connect/?client_key=client_key"));
//! let cookie = answer.headers()["set-cookie"].to_str()?;
//! assert!(cookie.contains("HttpOnly; SameSite=Lax; Secure"));
//! # Ok(()) }
//! # #[cfg(not(all(feature = "https", feature = "mock")))]
//! # fn main() {}
//! ```
//!
//! `examples/axum_login.rs` is a complete app on top of it, with a session, a `/me` page
//! through [`UserTokenLayer`](crate::users::UserTokenLayer) and a logout.

mod cookie;
mod error;
mod flow;
mod hooks;
mod key;
mod page;
mod routes;
mod used;

pub use self::error::{LoginConfigError, LoginError};
pub use self::flow::{
    DouyinLogin, DouyinLoginBuilder, DEFAULT_CALLBACK_PATH, DEFAULT_LOGIN_PATH, DEFAULT_STATE_TTL,
};
pub use self::hooks::LoggedIn;
pub use self::key::{LoginKey, MIN_KEY_BYTES};

//! Many Douyin users: the layer picks the user per request ([`OpenId`]), keeps one token slot
//! per user, and refreshes each user's tokens from a [`TokenStore`](crate::store::TokenStore) under a lease.
//!
//! - [`UserTokenLayer`] / [`DouyinUserAuth`]: the per-user layer and its service. Each request
//!   names its user with an [`OpenId`] request extension; each user has a cache slot of their
//!   own (the same arc-swapped cache as [`DouyinAuthLayer`](crate::DouyinAuthLayer)), with its own
//!   single-flight refresh, so one user's refresh never blocks another's requests. The slot map
//!   is bounded: idle slots are evicted first, then the least recently used.
//! - [`StoredUsers`] / [`StoredUser`]: each user's tokens come from a [`TokenStore`](crate::store::TokenStore) (your
//!   database, Redis or memory) and go back to it: a refreshed pair is written to the store
//!   before it is used, under the user's lease, so two instances never refresh or renew one
//!   user at the same time (renewal kills the old refresh token at once).
//! - [`UserSource`]: how the layer gets a [`TokenSource`](crate::TokenSource) for a user; implement it (or pass a
//!   closure) to plug in your own.
//!
//! ```
//! use douyin_auth::douyin::UserTokens;
//! use douyin_auth::store::MemoryStore;
//! use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
//!
//! # #[cfg(feature = "https")]
//! # fn demo() {
//! let users = StoredUsers::new("my_client_key", "my_client_secret", MemoryStore::new());
//! let layer = UserTokenLayer::builder(users).max_users(10_000).build();
//! let mut request = http::Request::new(http_body_util::Full::<bytes::Bytes>::default());
//! request.extensions_mut().insert(OpenId::new("the-users-open-id"));
//! # drop((layer, request)); }
//! ```

mod layer;
mod open_id;
mod service;
mod slots;
mod source;
mod stored_user;
mod stored_users;

pub use self::layer::{UserTokenLayer, UserTokenLayerBuilder};
pub use self::open_id::OpenId;
pub use self::service::{DouyinUserAuth, UserResponseFuture};
pub use self::slots::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_USERS};
pub use self::source::{KeepSlot, UserSource};
pub use self::stored_user::StoredUser;
pub use self::stored_users::StoredUsers;

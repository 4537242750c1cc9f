//! Token stores: where tokens are shared between instances or kept for good.
//!
//! A [`TokenStore`] holds tokens under keys and hands out short *leases*, so that across a
//! fleet one instance at a time refreshes a token:
//!
//! - [`SharedSource`] wraps any [`TokenSource`](crate::TokenSource) (typically
//!   [`ClientCredentials`](crate::douyin::ClientCredentials)) so that a fleet shares one client
//!   token: the instance that needs a refresh takes the lease, fetches and writes the token; the
//!   others adopt the stored token instead of fetching.
//! - [`StoredUsers`](crate::users::StoredUsers) keeps each user's tokens in a store and refreshes
//!   (and renews) them under the same kind of lease, writing every new pair before it is used.
//!
//! Stores: [`MemoryStore`] (one process; tests; user tokens of an app without a database),
//! with the `redis` feature `RedisStore` (single node or cluster), with the `postgres` feature
//! `PostgresStore` (durable: the home of user tokens), and [`EncryptedStore`], which seals every
//! secret at rest over any of them. Implement the trait for your own database:
//! [`TokenRecord`](crate::TokenRecord) is a serializable form of a token, and the `test-util`
//! feature's `testing::check_store` runs the whole contract against your store.
//!
//! # Keys
//!
//! Callers pass *logical* keys (`client_token:<client_key>`, `user:<open_id>`); a store may add a
//! prefix (`RedisStore` does, configurable). A key never contains a secret: neither the
//! `client_secret` nor a token.
//!
//! # Time
//!
//! A store reports how long a token has left, and the token it returns carries that as a local
//! monotonic deadline ([`tokio::time::Instant`]): no host's wall clock matters.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{BoxError, Token};

mod encrypted;
mod lease;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod shared;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use self::encrypted::{EncryptedStore, EncryptionError};
pub use self::lease::Lease;
pub use self::memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::{PostgresStore, DEFAULT_TABLE};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisConfig, RedisStore, DEFAULT_KEY_PREFIX};
pub use self::shared::{
    SharedSource, SharedSourceBuilder, DEFAULT_LEASE_TTL, DEFAULT_MAX_WAIT, DEFAULT_MIN_REMAINING,
    DEFAULT_POLL_INTERVAL, DEFAULT_STORE_TIMEOUT,
};
pub use crate::token::TokenRecord;

/// Where tokens are kept between refreshes and shared between instances.
///
/// Every method may fail (the store is down); callers decide what that means: the client token
/// falls back to fetching on its own ([`SharedSource`]), a user's tokens are not refreshed
/// without the store (their refresh token must not be consumed without writing the new pair).
///
/// Implementations must make [`put_if_leased`](Self::put_if_leased) atomic: the write happens
/// only if the lease is still the holder's, so a late writer never overwrites a newer token.
pub trait TokenStore: Send + Sync + 'static {
    /// The token stored under `key`, with its lifetimes counted from now, or `None`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Token>, BoxError>> + Send;

    /// Writes `token` under `key` whatever holds it, e.g. a user's first tokens after the OAuth
    /// code exchange. The entry lives as long as the longer of the access and refresh tokens.
    fn put(&self, key: &str, token: &Token) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Takes the lease on `key` for `ttl`, if nobody holds it.
    fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, BoxError>> + Send;

    /// Writes `token` under `key` if `lease` still holds the key, atomically. `Ok(false)`: the
    /// lease had ended (or another took it) and nothing was written.
    fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Makes `lease` last `ttl` from now if it still holds `key`, atomically (compare, then set
    /// the expiry). `Ok(false)`: the lease had ended (or another took it) and nothing changed.
    ///
    /// A holder that works longer than it expected keeps its lease this way, so that nobody
    /// takes it meanwhile. [`Lease::expires_at`] keeps the lifetime the lease was taken with.
    fn extend(
        &self,
        key: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Ends `lease` if it still holds `key` (compare and delete); another holder's lease is left
    /// alone.
    fn release(
        &self,
        key: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

impl<T: TokenStore> TokenStore for Arc<T> {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Token>, BoxError>> + Send {
        (**self).get(key)
    }

    fn put(&self, key: &str, token: &Token) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).put(key, token)
    }

    fn try_lease(
        &self,
        key: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, BoxError>> + Send {
        (**self).try_lease(key, ttl)
    }

    fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        (**self).put_if_leased(key, lease, token)
    }

    fn extend(
        &self,
        key: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        (**self).extend(key, lease, ttl)
    }

    fn release(
        &self,
        key: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).release(key, lease)
    }
}

/// How long a stored entry lives: as long as the longer of the access and refresh tokens.
pub(crate) fn entry_lifetime(token: &Token) -> Duration {
    let access = token.remaining();
    let refresh = token
        .refresh_expires_at()
        .map(|at| at.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::ZERO);
    access.max(refresh)
}

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
//! [`TokenRecord`] is a serializable form of a token, and the `test-util`
//! feature's `testing::check_store` runs the whole contract against your store.
//!
//! # Your own store
//!
//! A store over your own database is a few lines of glue around [`TokenRecord`] (the token with
//! absolute UTC expiries, serde) plus the lease: a holder id and an end per key, taken only when
//! free or ended, and compared on every write, extend and release. Here rows in a map stand in
//! for a table; with SQL each method is one statement (see `PostgresStore` for the full set),
//! and the lease times should come from the database's clock (`now()`), not the host's. Check it
//! with the conformance kit, `testing::check_store` (feature `test-util`).
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Mutex, MutexGuard};
//! use std::time::{Duration, SystemTime};
//!
//! use douyin_auth::store::{Lease, TokenRecord, TokenStore};
//! use douyin_auth::{BoxError, Token};
//!
//! /// A `tokens` table: key → the record as JSON, and the lease (holder, end).
//! #[derive(Default)]
//! struct MyStore(Mutex<HashMap<String, Row>>);
//!
//! #[derive(Default)]
//! struct Row {
//!     record: Option<String>,
//!     lease: Option<(String, SystemTime)>,
//! }
//!
//! impl MyStore {
//!     fn rows(&self) -> Result<MutexGuard<'_, HashMap<String, Row>>, BoxError> {
//!         self.0.lock().map_err(|_| "poisoned".into())
//!     }
//! }
//!
//! fn held_by(row: &Row, lease: &Lease) -> bool {
//!     matches!(&row.lease, Some((id, end)) if id == lease.id() && SystemTime::now() < *end)
//! }
//!
//! impl TokenStore for MyStore {
//!     // SELECT record FROM tokens WHERE key = $1 (AND the later expiry is in the future)
//!     async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
//!         let Some(json) = self.rows()?.get(key).and_then(|row| row.record.clone()) else {
//!             return Ok(None);
//!         };
//!         let token = Token::from(serde_json::from_str::<TokenRecord>(&json)?);
//!         let ended = token.is_expired() && token.refresh_remaining().unwrap_or_default().is_zero();
//!         Ok((!ended).then_some(token))
//!     }
//!
//!     // INSERT … ON CONFLICT (key) DO UPDATE SET record = $2
//!     async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
//!         let json = serde_json::to_string(&TokenRecord::from(token))?;
//!         self.rows()?.entry(key.to_owned()).or_default().record = Some(json);
//!         Ok(())
//!     }
//!
//!     // INSERT … ON CONFLICT (key) DO UPDATE SET lease_id = $2, lease_end = now() + $3
//!     //   WHERE lease_end IS NULL OR lease_end <= now()
//!     async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
//!         let mut rows = self.rows()?;
//!         let row = rows.entry(key.to_owned()).or_default();
//!         if matches!(&row.lease, Some((_, end)) if SystemTime::now() < *end) {
//!             return Ok(None);
//!         }
//!         let lease = Lease::generate(ttl)?;
//!         row.lease = Some((lease.id().to_owned(), SystemTime::now() + ttl));
//!         Ok(Some(lease))
//!     }
//!
//!     // UPDATE tokens SET record = $3 WHERE key = $1 AND lease_id = $2 AND lease_end > now()
//!     async fn put_if_leased(&self, key: &str, lease: &Lease, token: &Token) -> Result<bool, BoxError> {
//!         let json = serde_json::to_string(&TokenRecord::from(token))?;
//!         let mut rows = self.rows()?;
//!         match rows.get_mut(key) {
//!             Some(row) if held_by(row, lease) => {
//!                 row.record = Some(json);
//!                 Ok(true)
//!             }
//!             _ => Ok(false),
//!         }
//!     }
//!
//!     // UPDATE tokens SET lease_end = now() + $3 WHERE key = $1 AND lease_id = $2 AND lease_end > now()
//!     async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
//!         let mut rows = self.rows()?;
//!         match rows.get_mut(key) {
//!             Some(row) if held_by(row, lease) => {
//!                 row.lease = Some((lease.id().to_owned(), SystemTime::now() + ttl));
//!                 Ok(true)
//!             }
//!             _ => Ok(false),
//!         }
//!     }
//!
//!     // UPDATE tokens SET lease_id = NULL, lease_end = NULL WHERE key = $1 AND lease_id = $2
//!     async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
//!         if let Some(row) = self.rows()?.get_mut(key) {
//!             if matches!(&row.lease, Some((id, _)) if id == lease.id()) {
//!                 row.lease = None;
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! # let store = MyStore::default();
//! # let t = Token::new("act.x", Duration::from_secs(60)).with_refresh_token("rft.x", Duration::from_secs(600));
//! # let lease = store.try_lease("user:o1", Duration::from_secs(5)).await?.unwrap();
//! # assert!(store.try_lease("user:o1", Duration::from_secs(5)).await?.is_none());
//! # assert!(store.put_if_leased("user:o1", &lease, &t).await?);
//! # assert_eq!(store.get("user:o1").await?.unwrap().refresh_token(), Some("rft.x"));
//! # Ok(())
//! # }
//! ```
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

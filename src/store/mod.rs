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
//! Stores: [`MemoryStore`] (one process; tests; user tokens of an app without a database) and,
//! with the `redis` feature, `RedisStore`. Implement the trait for your own database.
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::{BoxError, Error, Token};

#[cfg(feature = "redis")]
mod redis;
pub(crate) mod shared;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisConfig, RedisStore, DEFAULT_KEY_PREFIX};
pub use self::shared::{
    SharedSource, SharedSourceBuilder, DEFAULT_LEASE_TTL, DEFAULT_MAX_WAIT, DEFAULT_MIN_REMAINING,
    DEFAULT_POLL_INTERVAL, DEFAULT_STORE_TIMEOUT,
};

/// A lease on a key: while it lasts, its holder is the only one that may write the key's token.
///
/// A lease is an id of 128 random bits with a lifetime. It ends when its holder releases it, or
/// by itself after its lifetime, so a holder that dies costs the others at most one lease time.
/// Its `Debug` shows its lifetime, never its id.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    id: String,
    ttl: Duration,
    acquired_at: Instant,
}

impl Lease {
    /// A new lease with a random id, lasting `ttl` from now. For [`TokenStore`] implementations.
    pub fn generate(ttl: Duration) -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let mut id = String::with_capacity(32);
        for b in bytes {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 15)]));
        }
        Ok(Self {
            id,
            ttl,
            acquired_at: Instant::now(),
        })
    }

    /// The lease's random id (32 hex digits), as a store compares it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long the lease lasts from when it was taken.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The monotonic instant at which the lease ends by itself.
    pub fn expires_at(&self) -> Instant {
        // Saturates: a huge `ttl` means "far in the future", never an overflow.
        crate::token::deadline(self.acquired_at, self.ttl)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("ttl", &self.ttl)
            .field(
                "remaining",
                &self.expires_at().saturating_duration_since(Instant::now()),
            )
            .finish_non_exhaustive()
    }
}

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

struct Entry {
    token: Token,
    until: Instant,
}

#[derive(Default)]
struct MemoryInner {
    tokens: HashMap<String, Entry>,
    leases: HashMap<String, (String, Instant)>,
}

/// A [`TokenStore`] in this process's memory.
///
/// For one process (several layers sharing a token), tests, and the user tokens of an app that
/// has no database (they are lost when the process ends). Clones share the same store. Entries
/// and leases end by their lifetimes on [`tokio::time::Instant`], so a paused test clock moves
/// them. Its `Debug` shows the number of entries, never a token.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of unexpired tokens stored.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .tokens
            .values()
            .filter(|e| now < e.until)
            .count()
    }

    /// Whether no unexpired token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(inner: &mut MemoryInner, key: &str, token: &Token) {
        let until = crate::token::deadline(Instant::now(), entry_lifetime(token));
        inner.tokens.insert(
            key.to_owned(),
            Entry {
                token: token.clone(),
                until,
            },
        );
    }

    fn holds(inner: &MemoryInner, key: &str, lease: &Lease) -> bool {
        inner
            .leases
            .get(key)
            .is_some_and(|(id, until)| *id == lease.id && Instant::now() < *until)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tokens", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.tokens.get(key) {
            Some(e) if now < e.until => Ok(Some(e.token.clone())),
            Some(_) => {
                inner.tokens.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
        Self::write(&mut self.lock(), key, token);
        Ok(())
    }

    async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
        let mut inner = self.lock();
        let now = Instant::now();
        if inner.leases.get(key).is_some_and(|(_, until)| now < *until) {
            return Ok(None);
        }
        let lease = Lease::generate(ttl)?;
        inner
            .leases
            .insert(key.to_owned(), (lease.id.clone(), lease.expires_at()));
        Ok(Some(lease))
    }

    async fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> Result<bool, BoxError> {
        let mut inner = self.lock();
        if !Self::holds(&inner, key, lease) {
            return Ok(false);
        }
        Self::write(&mut inner, key, token);
        Ok(true)
    }

    async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
        let mut inner = self.lock();
        if !Self::holds(&inner, key, lease) {
            return Ok(false);
        }
        let until = crate::token::deadline(Instant::now(), ttl);
        if let Some(held) = inner.leases.get_mut(key) {
            held.1 = until;
        }
        Ok(true)
    }

    async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
        let mut inner = self.lock();
        if inner.leases.get(key).is_some_and(|(id, _)| *id == lease.id) {
            inner.leases.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_store_leases_and_writes() {
        let store = MemoryStore::new();
        let t1 = Token::new("clt.1", Duration::from_secs(60));
        assert!(store.get("k").await.unwrap().is_none());

        let a = store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none());
        assert!(store.put_if_leased("k", &a, &t1).await.unwrap());
        assert_eq!(store.get("k").await.unwrap().unwrap().secret(), "clt.1");

        // The lease ends by itself; a late write of its old holder is rejected.
        tokio::time::advance(Duration::from_secs(6)).await;
        let b = store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let t2 = Token::new("clt.2", Duration::from_secs(60));
        assert!(!store.put_if_leased("k", &a, &t2).await.unwrap());
        // Extending works for the holder only.
        assert!(!store.extend("k", &a, Duration::from_secs(5)).await.unwrap());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(store.extend("k", &b, Duration::from_secs(5)).await.unwrap());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none());
        // Releasing a lease that is not one's own leaves the holder's alone.
        store.release("k", &a).await.unwrap();
        assert!(store.put_if_leased("k", &b, &t2).await.unwrap());
        store.release("k", &b).await.unwrap();
        assert!(store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .is_some());

        // Entries end with their token.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.get("k").await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn huge_lease_times_saturate_instead_of_overflowing() {
        let lease = Lease::generate(Duration::MAX).unwrap();
        assert!(lease.expires_at() > Instant::now());
        let _ = format!("{lease:?}");
        let store = MemoryStore::new();
        let lease = store.try_lease("k", Duration::MAX).await.unwrap().unwrap();
        let t = Token::new("clt.1", Duration::MAX);
        assert!(store.put_if_leased("k", &lease, &t).await.unwrap());
        assert!(store.try_lease("k", Duration::MAX).await.unwrap().is_none());
        let _ = shared::jittered(Duration::MAX);
    }

    #[test]
    fn lease_debug_hides_the_id() {
        let lease = Lease::generate(Duration::from_secs(1)).unwrap();
        assert_eq!(lease.id().len(), 32);
        assert!(!format!("{lease:?}").contains(lease.id()));
    }
}

//! [`MemoryStore`]: a [`TokenStore`] in this process's memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{entry_lifetime, Lease, TokenStore};
use crate::token::Provenance;
use crate::{BoxError, Token};

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
                // The token, not how the writer came by it: a store that serializes
                // tokens drops that too.
                token: token.clone().with_provenance(Provenance::Fetched),
                until,
            },
        );
    }

    fn holds(inner: &MemoryInner, key: &str, lease: &Lease) -> bool {
        inner
            .leases
            .get(key)
            .is_some_and(|(id, until)| *id == lease.id() && Instant::now() < *until)
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
            .insert(key.to_owned(), (lease.id().to_owned(), lease.expires_at()));
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
        if inner
            .leases
            .get(key)
            .is_some_and(|(id, _)| *id == lease.id())
        {
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
        let _ = super::super::shared::jittered(Duration::MAX);
    }
}

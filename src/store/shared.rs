//! [`SharedSource`]: one token for a whole fleet, through a [`TokenStore`] and a lease.

use std::fmt;
use std::future::Future as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Lease, TokenStore};
use crate::douyin::{ClientCredentials, HttpClient};
use crate::token::Provenance;
use crate::{BoxError, Token, TokenSource};

/// Default lease time: how long one instance may take to fetch a token before another may.
///
/// Comfortably longer than the layer's refresh timeout (30 seconds by default), so the lease
/// never ends under a holder that is still working: a fetch that the refresh timeout cancels
/// releases its lease as it is dropped, and the lease's own end only matters for a holder that
/// died. Keep [`lease_ttl`](SharedSourceBuilder::lease_ttl) longer than the refresh timeout
/// when you change either.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);
/// Default time an instance waits for another's lease before it stops waiting: a
/// [`SharedSource`] then fetches on its own, a [`StoredUser`](crate::users::StoredUser) fails
/// with [`Error::Store`](crate::Error::Store).
///
/// Shorter than the layer's refresh timeout (30 seconds by default), so the waiting instance
/// falls back before its cache gives up on the refresh. Keep
/// [`max_wait`](SharedSourceBuilder::max_wait) shorter than the refresh timeout when you change
/// either.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(20);
/// Default interval at which an instance waiting for another's refresh polls the store
/// (with jitter: between half and one and a half times it).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default time a stored token must have left to be adopted.
pub const DEFAULT_MIN_REMAINING: Duration = Duration::from_secs(60);
/// Default time one store operation may take before the store counts as down.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`TokenSource`] that shares the tokens of another source between instances through a
/// [`TokenStore`], so that a fleet fetches one token where each instance would fetch its own.
///
/// Each [`fetch`](TokenSource::fetch) (the cache calls it when its token turns stale, expires
/// or is rejected):
/// 1. reads the store; a stored token that this source has not handed out yet (another instance
///    fetched it) and that has more than [`min_remaining`](SharedSourceBuilder::min_remaining)
///    left is adopted: no token call;
/// 2. otherwise takes the key's lease (`SET NX PX` on Redis). The winner reads the store once
///    more, then fetches from the wrapped source, writes the token only if its lease is still
///    its own (a late writer never overwrites a newer token; it adopts the stored one instead),
///    and releases the lease;
/// 3. the others poll the store with jitter until the token appears or the lease ends, and
///    adopt it or take the lease in turn. A holder that died costs at most one lease time, and
///    an instance waits at most [`max_wait`](SharedSourceBuilder::max_wait) before it fetches
///    on its own (without writing the token, since the lease is not its own).
///
/// The defaults fit the layer's 30-second refresh timeout: the lease
/// ([`DEFAULT_LEASE_TTL`], 60 s) outlives any fetch the cache lets run, and a waiting instance
/// falls back ([`DEFAULT_MAX_WAIT`], 20 s) before the cache's timeout fires.
///
/// Freshness comes from the store (Redis's remaining TTL), turned into a local monotonic
/// deadline, so no host's wall clock matters. Reads of the token stay in the layer's local
/// cache; the store is touched only around refreshes.
///
/// If the store fails or does not answer within the
/// [store timeout](SharedSourceBuilder::store_timeout), the instance fetches on its own, logs a
/// warning (once, until the store works again) and keeps serving; the next refresh tries the
/// store again. A token fetched while the store was down is not written to it.
///
/// A token the cache rejects (Douyin answered "invalid") is never adopted again from the store:
/// the next fetch takes the lease and gets a new one.
///
/// Clones share the same state. Its `Debug` shows the key, never a secret.
///
/// ```
/// use douyin_auth::store::{MemoryStore, SharedSource};
/// use douyin_auth::{DouyinAuthLayer, StaticToken};
///
/// let store = MemoryStore::new(); // or `RedisStore` (feature `redis`) for a fleet
/// let source = SharedSource::new(StaticToken::new("clt.x"), store, "client_token:my_app");
/// let layer = DouyinAuthLayer::new(source);
/// # drop(layer);
/// ```
pub struct SharedSource<T, St> {
    inner: Arc<Inner<T, St>>,
}

impl<T, St> Clone for SharedSource<T, St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<T, St> {
    source: T,
    store: Arc<St>,
    key: String,
    lease_ttl: Duration,
    poll: Duration,
    max_wait: Duration,
    min_remaining: Duration,
    store_timeout: Duration,
    /// The token this source handed out last: never adopted again from the store.
    last: Mutex<Option<Token>>,
    /// The store failed last time (to warn once per outage).
    degraded: AtomicBool,
}

impl<T, St> fmt::Debug for SharedSource<T, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("SharedSource")
            .field("source", &std::any::type_name::<T>())
            .field("store", &std::any::type_name::<St>())
            .field("key", &i.key)
            .field("lease_ttl", &i.lease_ttl)
            .field("poll", &i.poll)
            .field("max_wait", &i.max_wait)
            .field("min_remaining", &i.min_remaining)
            .field("store_timeout", &i.store_timeout)
            .field("degraded", &i.degraded.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: TokenSource, St: TokenStore> SharedSource<T, St> {
    /// Shares `source`'s tokens through `store` under `key` (a name that is not secret, e.g.
    /// `client_token:<client_key>`), with the default options.
    pub fn new(source: T, store: St, key: impl Into<String>) -> Self {
        Self::builder(source, store, key).build()
    }

    /// A builder, to set options.
    pub fn builder(source: T, store: St, key: impl Into<String>) -> SharedSourceBuilder<T, St> {
        SharedSourceBuilder {
            source,
            store,
            key: key.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            poll: DEFAULT_POLL_INTERVAL,
            max_wait: DEFAULT_MAX_WAIT,
            min_remaining: DEFAULT_MIN_REMAINING,
            store_timeout: DEFAULT_STORE_TIMEOUT,
        }
    }

    /// The store key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The wrapped source.
    pub fn get_ref(&self) -> &T {
        &self.inner.source
    }

    /// Re-reads the store every `every` (with jitter) in a background task and hands a newer
    /// token that another instance stored to `layer`'s cache, so an instance picks up a rotated
    /// token before Douyin rejects the old one. Never on the request path; the store is read
    /// once per interval. The task holds only weak references and stops when the last clone of
    /// the layer (and its services) is dropped. `layer` must have been built from this source
    /// (or a clone of it). Needs a Tokio runtime.
    pub fn reread_every<C>(
        &self,
        layer: &crate::DouyinAuthLayer<C>,
        every: Duration,
    ) -> Result<(), crate::Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| crate::Error::NoRuntime)?;
        let cache = Arc::downgrade(&layer.shared().cache);
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(async move {
            loop {
                tokio::time::sleep(jittered(every)).await;
                let (Some(cache), Some(inner)) = (cache.upgrade(), weak.upgrade()) else {
                    break;
                };
                match timed(inner.store_timeout, inner.store.get(&inner.key)).await {
                    // Never a token this source handed out last: after the cache dropped a
                    // rejected token it is empty, and `offer` would publish it again.
                    Ok(Some(t)) if inner.adoptable(&t) => {
                        let t = t.with_provenance(Provenance::Adopted);
                        if cache.offer(t.clone()) {
                            inner.hand_out(t);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(target: "douyin_auth", key = %inner.key, error = %e, "background re-read of the store failed");
                    }
                }
            }
        });
        Ok(())
    }

    /// Whether the last store operation failed (the instance fetches on its own meanwhile).
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }
}

impl<C: HttpClient, St: TokenStore> SharedSource<ClientCredentials<C>, St> {
    /// Shares the app's client token through `store`, under the key
    /// `client_token:<client_key>` (the `client_key` is not secret; the `client_secret` never
    /// goes into a key).
    pub fn client_token(credentials: ClientCredentials<C>, store: St) -> Self {
        let key = format!("client_token:{}", credentials.client_key());
        Self::new(credentials, store, key)
    }
}

/// Options of a [`SharedSource`]; from [`SharedSource::builder`].
#[must_use]
pub struct SharedSourceBuilder<T, St> {
    source: T,
    store: St,
    key: String,
    lease_ttl: Duration,
    poll: Duration,
    max_wait: Duration,
    min_remaining: Duration,
    store_timeout: Duration,
}

impl<T, St> fmt::Debug for SharedSourceBuilder<T, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSourceBuilder")
            .field("key", &self.key)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl<T: TokenSource, St: TokenStore> SharedSourceBuilder<T, St> {
    /// How long the lease lasts: longer than the layer's
    /// [refresh timeout](crate::DouyinAuthLayerBuilder::refresh_timeout) (so it never ends under
    /// a holder that still works), short enough that a holder that died does not keep the fleet
    /// waiting long. Default: [`DEFAULT_LEASE_TTL`] (60 seconds).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often an instance waiting for another's refresh reads the store (with jitter).
    /// Default: 200 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval;
        self
    }

    /// How long an instance waits for another's lease (polling the store) before it fetches on
    /// its own: shorter than the layer's
    /// [refresh timeout](crate::DouyinAuthLayerBuilder::refresh_timeout), or the cache gives up
    /// first and the fallback never runs. Default: [`DEFAULT_MAX_WAIT`] (20 seconds).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How long a stored token must still live to be adopted. Default: 1 minute.
    pub fn min_remaining(mut self, remaining: Duration) -> Self {
        self.min_remaining = remaining;
        self
    }

    /// How long one store operation may take before the store counts as down and the instance
    /// fetches on its own. Default: 2 seconds.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Builds the source.
    pub fn build(self) -> SharedSource<T, St> {
        SharedSource {
            inner: Arc::new(Inner {
                source: self.source,
                store: Arc::new(self.store),
                key: self.key,
                lease_ttl: self.lease_ttl,
                poll: self.poll,
                max_wait: self.max_wait,
                min_remaining: self.min_remaining,
                store_timeout: self.store_timeout,
                last: Mutex::new(None),
                degraded: AtomicBool::new(false),
            }),
        }
    }
}

/// Runs a store operation with a timeout.
pub(crate) async fn timed<R>(
    timeout: Duration,
    op: impl std::future::Future<Output = Result<R, BoxError>>,
) -> Result<R, BoxError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(r) => r,
        Err(_) => Err(format!("the token store did not answer within {timeout:?}").into()),
    }
}

/// A random duration between half and one and a half times `d`.
pub(crate) fn jittered(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos((nanos / 2).saturating_add(fastrand::u64(0..=nanos)))
}

/// Runs `work` while keeping `lease` on `key` alive: every third of `ttl` the lease is extended
/// to `ttl` from then, so nobody takes it while its holder still works. Once the store says the
/// lease is no longer the holder's, it stops (the holder's write will be rejected); a store
/// error is logged and the next extension tried. The extensions run in the same task as `work`
/// and stop with it.
pub(crate) async fn while_leased<St: TokenStore, F: std::future::Future>(
    store: &St,
    key: &str,
    lease: &Lease,
    ttl: Duration,
    timeout: Duration,
    work: F,
) -> F::Output {
    let every = (ttl / 3).max(Duration::from_millis(1));
    let keeper = async {
        loop {
            tokio::time::sleep(every).await;
            match timed(timeout.min(every), store.extend(key, lease, ttl)).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(target: "douyin_auth", key = %key, "the lease ended while its holder still worked");
                    break;
                }
                Err(e) => {
                    tracing::debug!(target: "douyin_auth", key = %key, error = %e, "extending the lease failed; trying again");
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let mut work = std::pin::pin!(work);
    let mut keeper = std::pin::pin!(keeper);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(out);
        }
        let _ = keeper.as_mut().poll(cx);
        std::task::Poll::Pending
    })
    .await
}

/// Releases a lease when dropped before it was released (the fetch was cancelled).
pub(crate) struct LeaseGuard<St: TokenStore> {
    pub(crate) store: Arc<St>,
    pub(crate) key: String,
    pub(crate) lease: Option<Lease>,
}

impl<St: TokenStore> LeaseGuard<St> {
    pub(crate) async fn release(mut self, timeout: Duration) {
        if let Some(lease) = self.lease.take() {
            if let Err(e) = timed(timeout, self.store.release(&self.key, &lease)).await {
                tracing::debug!(target: "douyin_auth", key = %self.key, error = %e, "releasing the lease failed; it ends by itself");
            }
        }
    }
}

impl<St: TokenStore> Drop for LeaseGuard<St> {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let store = Arc::clone(&self.store);
                let key = std::mem::take(&mut self.key);
                handle.spawn(async move {
                    let _ = store.release(&key, &lease).await;
                });
            }
        }
    }
}

enum Step {
    Adopted(Token),
    Leased(Lease),
    Wait,
}

impl<T: TokenSource, St: TokenStore> Inner<T, St> {
    fn adoptable(&self, stored: &Token) -> bool {
        if stored.remaining() <= self.min_remaining {
            return false;
        }
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.as_ref() {
            None => true,
            Some(l) => l != stored || stored.expires_at() > l.expires_at() + Duration::from_secs(1),
        }
    }

    fn hand_out(&self, token: Token) -> Token {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        token
    }

    /// Hands out a token read from the store, marked as adopted (another instance fetched it).
    fn adopt(&self, stored: Token) -> Token {
        self.hand_out(stored.with_provenance(Provenance::Adopted))
    }

    fn store_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "douyin_auth", key = %self.key, "token store reachable again; sharing tokens through it");
        }
    }

    fn store_failed(&self, op: &str, e: &BoxError) {
        crate::metrics::store_error(op);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "douyin_auth", key = %self.key, op, error = %e, "token store failed; this instance fetches tokens on its own until it is back");
        } else {
            tracing::debug!(target: "douyin_auth", key = %self.key, op, error = %e, "token store still failing");
        }
    }

    async fn alone(&self, rejected: Option<&Token>) -> Result<Token, BoxError> {
        let token = match rejected {
            Some(r) => self.source.fetch_replacing(r).await?,
            None => self.source.fetch().await?,
        };
        Ok(self.hand_out(token))
    }

    async fn step(&self) -> Result<Step, (&'static str, BoxError)> {
        let stored = timed(self.store_timeout, self.store.get(&self.key))
            .await
            .map_err(|e| ("get", e))?;
        if let Some(t) = stored.filter(|t| self.adoptable(t)) {
            return Ok(Step::Adopted(t));
        }
        let lease = timed(
            self.store_timeout,
            self.store.try_lease(&self.key, self.lease_ttl),
        )
        .await
        .map_err(|e| ("lease", e))?;
        Ok(lease.map_or(Step::Wait, Step::Leased))
    }
}

impl<T: TokenSource, St: TokenStore> SharedSource<T, St> {
    async fn fetch_shared(&self, rejected: Option<&Token>) -> Result<Token, BoxError> {
        let inner = &self.inner;
        // Before the cache's refresh timeout, so the fallback below gets to run.
        let give_up = crate::token::deadline(Instant::now(), inner.max_wait);
        loop {
            match inner.step().await {
                Err((op, e)) => {
                    inner.store_failed(op, &e);
                    return inner.alone(rejected).await;
                }
                Ok(Step::Adopted(t)) => {
                    inner.store_ok();
                    tracing::debug!(target: "douyin_auth", key = %inner.key, "adopted the stored token");
                    return Ok(inner.adopt(t));
                }
                Ok(Step::Leased(lease)) => {
                    inner.store_ok();
                    return self.fetch_leased(lease, rejected).await;
                }
                Ok(Step::Wait) => {
                    inner.store_ok();
                    if Instant::now() >= give_up {
                        tracing::warn!(target: "douyin_auth", key = %inner.key, "no token appeared in the store while another instance held the lease; fetching on our own");
                        return inner.alone(rejected).await;
                    }
                    tokio::time::sleep(jittered(inner.poll)).await;
                }
            }
        }
    }

    async fn fetch_leased(
        &self,
        lease: Lease,
        rejected: Option<&Token>,
    ) -> Result<Token, BoxError> {
        let inner = &self.inner;
        let guard = LeaseGuard {
            store: Arc::clone(&inner.store),
            key: inner.key.clone(),
            lease: Some(lease.clone()),
        };
        // Another instance may have written just before we took the lease.
        if let Ok(Some(t)) = timed(inner.store_timeout, inner.store.get(&inner.key)).await {
            if inner.adoptable(&t) {
                guard.release(inner.store_timeout).await;
                return Ok(inner.adopt(t));
            }
        }
        tracing::debug!(target: "douyin_auth", key = %inner.key, "lease taken; fetching a token");
        let fetched = match rejected {
            Some(r) => inner.source.fetch_replacing(r).await,
            None => inner.source.fetch().await,
        };
        let token = match fetched {
            Ok(t) => t,
            Err(e) => {
                guard.release(inner.store_timeout).await;
                return Err(e);
            }
        };
        match timed(
            inner.store_timeout,
            inner.store.put_if_leased(&inner.key, &lease, &token),
        )
        .await
        {
            Ok(true) => {
                guard.release(inner.store_timeout).await;
                Ok(inner.hand_out(token))
            }
            Ok(false) => {
                drop(guard);
                tracing::warn!(target: "douyin_auth", key = %inner.key, "the lease ended before the token was written; the write was rejected");
                // A newer token may be stored: the fleet converges on it. Not a token this
                // source handed out last (it may be the one Douyin rejected, still stored when
                // nobody else wrote since): then the token just fetched is the one to use.
                match timed(inner.store_timeout, inner.store.get(&inner.key)).await {
                    Ok(Some(stored)) if inner.adoptable(&stored) => Ok(inner.adopt(stored)),
                    _ => Ok(inner.hand_out(token)),
                }
            }
            Err(e) => {
                inner.store_failed("put", &e);
                guard.release(inner.store_timeout).await;
                Ok(inner.hand_out(token))
            }
        }
    }
}

impl<T: TokenSource, St: TokenStore> TokenSource for SharedSource<T, St> {
    fn fetch(&self) -> impl std::future::Future<Output = Result<Token, BoxError>> + Send {
        self.fetch_shared(None)
    }

    fn fetch_replacing(
        &self,
        rejected: &Token,
    ) -> impl std::future::Future<Output = Result<Token, BoxError>> + Send {
        self.fetch_shared(Some(rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::{DouyinAuthLayer, StaticToken};

    #[tokio::test(start_paused = true)]
    async fn the_background_reread_picks_up_a_newer_stored_token_and_stops_with_the_layer() {
        let store = MemoryStore::new();
        let first = Token::new("clt.1", Duration::from_secs(3600));
        let shared = SharedSource::new(StaticToken::from(first), store.clone(), "k");
        let layer = DouyinAuthLayer::new(shared.clone());
        shared
            .reread_every(&layer, Duration::from_secs(60))
            .unwrap();
        assert_eq!(shared.fetch().await.unwrap().secret(), "clt.1");
        assert!(layer.cached_token().is_none());

        // Another instance stores a newer token: the cache takes it without a fetch.
        let lease = store
            .try_lease("k", Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        let newer = Token::new("clt.2", Duration::from_secs(7200));
        assert!(store.put_if_leased("k", &lease, &newer).await.unwrap());
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert_eq!(layer.cached_token().unwrap().secret(), "clt.2");

        // An older token is never taken.
        let older = Token::new("clt.0", Duration::from_secs(100));
        store.put("k", &older).await.unwrap();
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert_eq!(layer.cached_token().unwrap().secret(), "clt.2");

        // The task holds only weak references: the source is freed with the layer.
        let weak = Arc::downgrade(&shared.inner);
        drop((layer, shared));
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert!(weak.upgrade().is_none());
    }

    /// Hands out `<name>.<n>` after `delay`.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
        n: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl TokenSource for Slow {
        async fn fetch(&self) -> Result<Token, BoxError> {
            tokio::time::sleep(self.delay).await;
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token::new(format!("new.{n}"), Duration::from_secs(3600)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_never_hands_the_rejected_token_back() {
        let store = MemoryStore::new();
        let source = Slow {
            delay: Duration::from_secs(2),
            n: Arc::default(),
        };
        let shared = SharedSource::builder(source, store.clone(), "k")
            .lease_ttl(Duration::from_secs(1))
            .build();
        // Another instance stored X; this one adopts it.
        let x = Token::new("clt.x", Duration::from_secs(3600));
        store.put("k", &x).await.unwrap();
        assert_eq!(shared.fetch().await.unwrap().secret(), "clt.x");

        // Douyin rejects X: the next fetch takes the lease and fetches slowly, past the lease.
        // Its write is rejected, and the store still holds X: X must not come back.
        let token = shared.fetch().await.unwrap();
        assert_eq!(token.secret(), "new.1");
        assert_eq!(store.get("k").await.unwrap().unwrap().secret(), "clt.x");
    }

    #[tokio::test(start_paused = true)]
    async fn the_background_reread_never_republishes_an_invalidated_token() {
        let store = MemoryStore::new();
        let x = Token::new("clt.x", Duration::from_secs(3600));
        let shared = SharedSource::new(StaticToken::from(x), store.clone(), "k");
        let layer = DouyinAuthLayer::new(shared.clone());
        shared
            .reread_every(&layer, Duration::from_secs(60))
            .unwrap();
        let cache = Arc::clone(&layer.shared().cache);
        let ready = Arc::clone(&cache).wait().await.unwrap();
        assert_eq!(store.get("k").await.unwrap().unwrap().secret(), "clt.x");

        // Douyin rejects X: the cache drops it. The store still holds X; the re-read must not
        // put it back.
        assert!(cache.invalidate(ready.generation));
        tokio::time::sleep(Duration::from_secs(91)).await;
        assert!(layer.cached_token().is_none());
    }

    #[test]
    fn the_defaults_fit_the_refresh_timeout() {
        let timeout = crate::cache::DEFAULT_REFRESH_TIMEOUT;
        assert!(
            DEFAULT_LEASE_TTL >= timeout * 2,
            "the lease outlives any fetch"
        );
        assert!(
            DEFAULT_MAX_WAIT + DEFAULT_POLL_INTERVAL * 2 + DEFAULT_STORE_TIMEOUT * 2 < timeout,
            "a waiting instance falls back before the cache gives up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_defaults_a_waiting_instance_falls_back_before_the_refresh_timeout() {
        let store = MemoryStore::new();
        // Another instance took the lease and died.
        store
            .try_lease("k", DEFAULT_LEASE_TTL)
            .await
            .unwrap()
            .unwrap();
        let x = Token::new("clt.own", Duration::from_secs(3600));
        let layer = DouyinAuthLayer::new(SharedSource::new(StaticToken::from(x), store, "k"));
        let started = Instant::now();
        let cache = Arc::clone(&layer.shared().cache);
        cache.wait().await.unwrap();
        assert_eq!(layer.cached_token().unwrap().secret(), "clt.own");
        assert!(started.elapsed() < crate::cache::DEFAULT_REFRESH_TIMEOUT);
    }
}

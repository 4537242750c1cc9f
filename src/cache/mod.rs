//! The token cache: an arc-swapped token with its prebuilt header value, single-flight refresh,
//! stale and expiry margins, jitter and back-off.
//!
//! The hot path ([`TokenCache::lookup_with`] with a fresh token) is one relaxed pointer load
//! through the service's [`TokenHandle`] (an `ArcSwap` load when the token changed since the
//! service last read it), one clock read and one `HeaderValue` clone: no lock, no allocation.
//! Everything else (refresh, waiting, failure book-keeping) happens on the refresh path under
//! a `std` mutex that the hot path never touches.

mod config;

#[cfg(test)]
pub(crate) use self::config::DEFAULT_REFRESH_TIMEOUT;
pub(crate) use self::config::{CacheConfig, HeaderFormat};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::douyin::codes::CodeKind;

use crate::error::{find_douyin, Error, SharedError};
use crate::source::DynTokenSource;
use crate::token::deadline;
use crate::token::Token;

/// A token as the cache holds it: with its header value and deadlines computed once.
pub(crate) struct CachedToken {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    pub(crate) stale_at: Instant,
    pub(crate) usable_until: Instant,
    pub(crate) token: Token,
}

/// What a request needs of the cached token.
#[derive(Clone, Debug)]
pub(crate) struct Ready {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
}

/// Why a refresh failed; shared by all the requests that waited for it.
#[derive(Clone, Debug)]
enum Failure {
    Source(SharedError),
    Timeout(Duration),
    InvalidHeader,
    ExpiredOnArrival,
    Cancelled,
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Failure::Source(e) => Error::TokenSource(e.clone()),
            Failure::Timeout(d) => Error::RefreshTimeout(*d),
            Failure::InvalidHeader => Error::InvalidHeaderValue,
            Failure::ExpiredOnArrival => Error::ExpiredToken,
            Failure::Cancelled => Error::RefreshCancelled,
        }
    }

    fn shared(&self) -> SharedError {
        match self {
            Failure::Source(e) => e.clone(),
            other => SharedError::new(Box::new(other.to_error())),
        }
    }

    /// The token source's own error, for the log (the crate's sources never put a secret in
    /// theirs).
    fn cause(&self) -> Option<&SharedError> {
        match self {
            Failure::Source(e) => Some(e),
            _ => None,
        }
    }

    fn is_rate_limited(&self) -> bool {
        match self {
            Failure::Source(e) => {
                find_douyin(e.get_ref()).is_some_and(|d| d.kind() == CodeKind::RateLimited)
            }
            _ => false,
        }
    }
}

type Outcome = Result<Arc<CachedToken>, Failure>;

#[derive(Default)]
struct RefreshState {
    flight: Option<watch::Receiver<Option<Outcome>>>,
    failures: u32,
    retry_at: Option<Instant>,
    last_failure: Option<Failure>,
}

enum Joined {
    Ready(Ready),
    Wait(watch::Receiver<Option<Outcome>>),
    Fail(Error),
}

/// One service's handle on the cached token (`arc_swap::Cache`): it keeps a reference to the
/// token it last read and checks with one relaxed pointer load that it is still the current
/// one, instead of an `ArcSwap` load (two atomic read-modify-writes on a debt slot) per
/// request. A replaced or dropped token is seen at the next request, as with a load: the
/// handle compares with the cache's current pointer every time. Its only cost is that an idle
/// service keeps the last token it used in memory until its next request or its drop.
#[derive(Clone)]
pub(crate) struct TokenHandle(arc_swap::Cache<CurrentOf, Option<Arc<CachedToken>>>);

impl TokenHandle {
    pub(crate) fn new(cache: &Arc<TokenCache>) -> Self {
        Self(arc_swap::Cache::new(CurrentOf(Arc::clone(cache))))
    }
}

/// The `current` slot of a cache, for [`TokenHandle`].
#[derive(Clone)]
pub(crate) struct CurrentOf(Arc<TokenCache>);

impl std::ops::Deref for CurrentOf {
    type Target = ArcSwapOption<CachedToken>;

    fn deref(&self) -> &Self::Target {
        &self.0.current
    }
}

/// The cache shared by a layer, its services and all their clones.
pub(crate) struct TokenCache {
    current: ArcSwapOption<CachedToken>,
    source: Arc<dyn DynTokenSource>,
    config: CacheConfig,
    format: HeaderFormat,
    state: Mutex<RefreshState>,
    /// Mirrors `state.flight.is_some()` so the stale path can skip the lock.
    refreshing: AtomicBool,
    /// Nanoseconds after `epoch` before which no background refresh starts (back-off).
    next_attempt: AtomicU64,
    epoch: Instant,
    generation: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.current.load();
        f.debug_struct("TokenCache")
            .field("source", &self.source.type_name())
            .field("generation", &cur.as_ref().map(|c| c.generation))
            .field("token", &cur.as_ref().map(|c| &c.token))
            .field("refreshing", &self.refreshing.load(Ordering::Relaxed))
            .field("config", &self.config)
            .finish()
    }
}

fn lock(m: &Mutex<RefreshState>) -> MutexGuard<'_, RefreshState> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TokenCache {
    pub(crate) fn new(
        source: Box<dyn DynTokenSource>,
        config: CacheConfig,
        format: HeaderFormat,
    ) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            source: Arc::from(source),
            config,
            format,
            state: Mutex::new(RefreshState::default()),
            refreshing: AtomicBool::new(false),
            next_attempt: AtomicU64::new(0),
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
        }
    }

    /// The hot path: the token to use now, if one is usable. A stale token is returned and one
    /// background refresh is started; an expired or missing one returns `None` (wait instead).
    #[inline]
    pub(crate) fn lookup(self: &Arc<Self>) -> Option<Ready> {
        let guard = self.current.load();
        self.usable_or_stale(guard.as_ref()?)
    }

    /// [`lookup`](Self::lookup) through a service's own [`TokenHandle`] on this cache: the
    /// same answer, without the `ArcSwap` load when the token has not changed since the
    /// handle last read it.
    #[inline]
    pub(crate) fn lookup_with(self: &Arc<Self>, handle: &mut TokenHandle) -> Option<Ready> {
        debug_assert!(std::ptr::eq(handle.0.arc_swap(), &self.current));
        self.usable_or_stale(handle.0.load().as_ref()?)
    }

    #[inline]
    fn usable_or_stale(self: &Arc<Self>, cached: &CachedToken) -> Option<Ready> {
        let now = Instant::now();
        if now < cached.stale_at {
            return Some(Ready {
                header: cached.header.clone(),
                generation: cached.generation,
            });
        }
        self.stale_or_expired(cached, now)
    }

    /// The rest of [`usable_or_stale`](Self::usable_or_stale), out of line so that the fresh
    /// path stays small.
    #[cold]
    #[inline(never)]
    fn stale_or_expired(self: &Arc<Self>, cached: &CachedToken, now: Instant) -> Option<Ready> {
        if now < cached.usable_until {
            tracing::trace!(
                target: "douyin_auth",
                generation = cached.generation,
                "stale token served"
            );
            self.refresh_in_background(now);
            return Some(Ready {
                header: cached.header.clone(),
                generation: cached.generation,
            });
        }
        None
    }

    /// Waits for a usable token: the cached one if it is usable by then, else the outcome of
    /// the one refresh in flight (started if none is). Fails with the refresh's error, or at
    /// once while backing off after a failure.
    pub(crate) async fn wait(self: Arc<Self>) -> Result<Ready, Error> {
        // The same rule as the fast path, so a token published meanwhile is used as is.
        if let Some(ready) = self.lookup() {
            return Ok(ready);
        }
        let rx = match self.join_or_start(Instant::now()) {
            Joined::Ready(r) => return Ok(r),
            Joined::Fail(e) => return Err(e),
            Joined::Wait(rx) => rx,
        };
        match wait_outcome(rx).await {
            Ok(c) => Ok(Ready {
                header: c.header.clone(),
                generation: c.generation,
            }),
            Err(f) => Err(f.to_error()),
        }
    }

    /// Drops the cached token if it is still the one with `generation` (the one a request used
    /// and the server rejected). A newer token is left alone.
    pub(crate) fn invalidate(&self, generation: u64) -> bool {
        let cur = self.current.load();
        match cur.as_ref() {
            Some(c) if c.generation == generation => {
                let prev = self.current.compare_and_swap(&*cur, None);
                let swapped = prev.as_ref().is_some_and(|p| p.generation == generation);
                if swapped {
                    tracing::debug!(target: "douyin_auth", generation, "token invalidated");
                }
                swapped
            }
            _ => false,
        }
    }

    /// Publishes `token`, read from a shared store by a background re-read, when no refresh
    /// runs and it outlives the cached token (a newer token another instance fetched). Never
    /// on the request path. Whether it was published.
    pub(crate) fn offer(&self, token: Token) -> bool {
        let st = lock(&self.state);
        if st.flight.is_some() {
            return false;
        }
        if let Some(c) = self.current.load().as_ref() {
            if token.expires_at() <= c.token.expires_at() {
                return false;
            }
        }
        match self.prepare(token) {
            Ok(c) => {
                tracing::debug!(target: "douyin_auth", generation = c.generation, "token adopted from the store");
                self.current.store(Some(c));
                true
            }
            Err(_) => false,
        }
    }

    /// The token currently cached, if any (expired or not).
    pub(crate) fn current_token(&self) -> Option<Token> {
        self.current.load().as_ref().map(|c| c.token.clone())
    }

    fn refresh_in_background(self: &Arc<Self>, now: Instant) {
        if self.refreshing.load(Ordering::Acquire) {
            return;
        }
        if self.nanos_since_epoch(now) < self.next_attempt.load(Ordering::Acquire) {
            return;
        }
        let mut st = lock(&self.state);
        if st.flight.is_some() || st.retry_at.is_some_and(|t| now < t) {
            return;
        }
        // Errors here (no runtime) leave the still-valid token in use; the next request that
        // must wait reports them.
        let _ = self.start(&mut st);
    }

    fn join_or_start(self: &Arc<Self>, now: Instant) -> Joined {
        let mut st = lock(&self.state);
        if let Some(rx) = &st.flight {
            return Joined::Wait(rx.clone());
        }
        // A refresh may have finished between our look and the lock.
        if let Some(ready) = self.usable_now(now) {
            return Joined::Ready(ready);
        }
        if let (Some(retry_at), Some(last)) = (st.retry_at, &st.last_failure) {
            if now < retry_at {
                return Joined::Fail(Error::Backoff {
                    retry_in: retry_at - now,
                    last: last.shared(),
                });
            }
        }
        match self.start(&mut st) {
            Ok(rx) => Joined::Wait(rx),
            Err(e) => Joined::Fail(e),
        }
    }

    fn usable_now(&self, now: Instant) -> Option<Ready> {
        let guard = self.current.load();
        let c = guard.as_ref()?;
        (now < c.usable_until).then(|| Ready {
            header: c.header.clone(),
            generation: c.generation,
        })
    }

    /// Starts the one refresh; the caller holds the state lock and has checked none runs.
    fn start(
        self: &Arc<Self>,
        st: &mut RefreshState,
    ) -> Result<watch::Receiver<Option<Outcome>>, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (tx, rx) = watch::channel(None);
        st.flight = Some(rx.clone());
        self.refreshing.store(true, Ordering::Release);
        let guard = FlightGuard {
            cache: Arc::clone(self),
            finished: false,
        };
        // The refresh outlives the request that started it: its own root span, linked to the
        // request's span (if any) by `follows_from`.
        let span = tracing::info_span!(
            target: "douyin_auth",
            parent: None,
            "token_refresh",
            source = self.source.type_name()
        );
        span.follows_from(tracing::Span::current());
        handle.spawn(tracing::Instrument::instrument(
            run_refresh(guard, tx),
            span,
        ));
        Ok(rx)
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn prepare(&self, token: Token) -> Outcome {
        let now = Instant::now();
        let expires_at = token.expires_at();
        if expires_at <= now {
            return Err(Failure::ExpiredOnArrival);
        }
        let header = match self.format {
            HeaderFormat::Raw => HeaderValue::from_str(token.secret()),
            HeaderFormat::Bearer => HeaderValue::from_str(&format!("Bearer {}", token.secret())),
        };
        let mut header = header.map_err(|_| Failure::InvalidHeader)?;
        header.set_sensitive(true);
        // Promote the bytes to their shared form now, so that every clone on the hot path is
        // a reference-count increment and never an allocation.
        drop(header.clone());

        let lifetime = expires_at - now;
        let cfg = &self.config;
        let refresh_margin = cfg.refresh_margin.min(lifetime / 2);
        let expiry_margin = cfg.expiry_margin.min(lifetime / 4);
        let jitter = random_up_to(cfg.jitter.min(refresh_margin / 2));
        let earliest = now + cfg.min_refresh_interval.min(lifetime / 2);
        let stale_at = (expires_at - refresh_margin)
            .checked_sub(jitter)
            .unwrap_or(now)
            .max(earliest);
        Ok(Arc::new(CachedToken {
            header,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            stale_at,
            usable_until: expires_at - expiry_margin,
            token,
        }))
    }

    /// Records the outcome of the refresh in flight: publishes a new token, or keeps the old
    /// one and backs off.
    fn finish(&self, outcome: &Outcome) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        match outcome {
            Ok(c) => {
                self.current.store(Some(Arc::clone(c)));
                st.failures = 0;
                st.retry_at = None;
                st.last_failure = None;
                self.next_attempt.store(0, Ordering::Release);
            }
            Err(f) => {
                st.failures = st.failures.saturating_add(1);
                let delay = self.backoff(st.failures, f);
                let retry_at = deadline(now, delay);
                st.retry_at = Some(retry_at);
                st.last_failure = Some(f.clone());
                self.next_attempt
                    .store(self.nanos_since_epoch(retry_at), Ordering::Release);
            }
        }
        st.flight = None;
        self.refreshing.store(false, Ordering::Release);
    }

    fn backoff(&self, failures: u32, failure: &Failure) -> Duration {
        let cfg = &self.config;
        if failure.is_rate_limited() {
            return cfg.backoff_cap;
        }
        let exp = failures.saturating_sub(1).min(20);
        let full = cfg
            .backoff_floor
            .saturating_mul(1 << exp)
            .min(cfg.backoff_cap);
        // "Equal jitter": half fixed, half random, never below the floor.
        (full / 2 + random_up_to(full / 2)).max(cfg.backoff_floor.min(cfg.backoff_cap))
    }
}

async fn wait_outcome(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or(Err(Failure::Cancelled)),
        Err(_) => Err(Failure::Cancelled),
    }
}

/// Clears the in-flight marker if the refresh task is dropped before it finishes (runtime
/// shutting down), so the cache is never stuck "refreshing".
struct FlightGuard {
    cache: Arc<TokenCache>,
    finished: bool,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.finished {
            let mut st = lock(&self.cache.state);
            st.flight = None;
            self.cache.refreshing.store(false, Ordering::Release);
        }
    }
}

async fn run_refresh(mut guard: FlightGuard, tx: watch::Sender<Option<Outcome>>) {
    let cache = Arc::clone(&guard.cache);
    let started = Instant::now();
    tracing::debug!(target: "douyin_auth", source = cache.source.type_name(), "token refresh started");
    let timeout = cache.config.refresh_timeout;
    // The fetch runs in a task of its own and always to completion (a refresh token consumed
    // by Douyin must not be dropped half-way): the refresh timeout only stops the waiting.
    // A fetch that hangs far beyond it is abandoned at last, so nothing lingers for ever.
    let source = Arc::clone(&cache.source);
    let hard_limit = timeout.saturating_mul(10);
    let mut fetch =
        tokio::spawn(async move { tokio::time::timeout(hard_limit, source.fetch_boxed()).await });
    let outcome = match tokio::time::timeout(timeout, &mut fetch).await {
        Ok(Ok(Ok(Ok(token)))) => cache.prepare(token),
        Ok(Ok(Ok(Err(e)))) => Err(Failure::Source(SharedError::new(e))),
        Ok(Ok(Err(_))) => Err(Failure::Timeout(timeout)),
        Ok(Err(join)) => Err(Failure::Source(SharedError::new(Box::from(
            if join.is_panic() {
                "the token source panicked"
            } else {
                "the token source's task was cancelled"
            },
        )))),
        Err(_) => {
            // Publish the late token if it still helps (no newer one, no refresh running).
            let weak = Arc::downgrade(&cache);
            tokio::spawn(async move {
                if let Ok(Ok(Ok(token))) = fetch.await {
                    if let Some(cache) = weak.upgrade() {
                        cache.offer(token);
                    }
                }
            });
            Err(Failure::Timeout(timeout))
        }
    };
    cache.finish(&outcome);
    guard.finished = true;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match &outcome {
        Ok(c) => tracing::info!(
            target: "douyin_auth",
            outcome = "ok",
            generation = c.generation,
            duration_ms,
            expires_in_s = c.token.remaining().as_secs(),
            "token refresh finished"
        ),
        Err(f) => tracing::warn!(
            target: "douyin_auth",
            outcome = "error",
            duration_ms,
            error = %f.to_error(),
            cause = f.cause().map(tracing::field::display),
            "token refresh failed"
        ),
    }
    // Nobody listening is fine: the outcome is recorded in the cache already.
    let _ = tx.send(Some(outcome));
}

/// A random duration in `[0, max]`; not for secrets.
fn random_up_to(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

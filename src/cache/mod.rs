//! The token cache: an arc-swapped token with its prebuilt header value, single-flight refresh,
//! stale and expiry margins, jitter and back-off.
//!
//! The hot path ([`TokenCache::lookup_with`] with a fresh token) is one relaxed pointer load
//! through the service's [`TokenHandle`] (an `ArcSwap` load when the token changed since the
//! service last read it), one clock read and one `HeaderValue` clone: no lock, no allocation.
//! Everything else (refresh, waiting, failure book-keeping) happens on the refresh path under
//! a `std` mutex that the hot path never touches.
//!
//! The rules it keeps (the crate docs' "Refresh and back-off" has a timeline):
//! - one fetch in flight, always: the flight ends when the fetch does, not when waiters give up
//!   at the refresh timeout;
//! - `stale_at <= usable_until` for every token, so the fast path never serves a token inside
//!   its expiry margin; a token handed back unchanged is usable to its real expiry, with the
//!   next refresh planned then;
//! - a rejection ([`TokenCache::rejected`]) retries only with another secret, tells the source
//!   which token was rejected, and is bounded for replacements that are rejected again;
//! - back-off: exponential from the floor to the cap for background refreshes; at most the
//!   refresh timeout while no token is usable, so a request waits for the next attempt; the
//!   cap for a rate-limit answer; the failure count starts again after twice the cap of quiet.

mod backoff;
mod config;

#[cfg(test)]
pub(crate) use self::config::DEFAULT_REFRESH_TIMEOUT;
pub(crate) use self::config::{CacheConfig, HeaderFormat};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::watch;
use tokio::time::Instant;

use self::backoff::{random_up_to, Failures};
use crate::douyin::codes::CodeKind;
use crate::error::{find_douyin, Error, SharedError};
use crate::expiry::Rejection;
use crate::source::DynTokenSource;
use crate::token::{deadline, Token};

/// A token as the cache holds it: with its header value and deadlines computed once.
pub(crate) struct CachedToken {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    pub(crate) stale_at: Instant,
    pub(crate) usable_until: Instant,
    pub(crate) token: Token,
    /// For a token a rejection's refresh brought: when that refresh started, and how many
    /// replacements in a row, each rejected soon after it came, led to it.
    replaced: Option<Replaced>,
}

impl CachedToken {
    fn ready(&self) -> Ready {
        Ready {
            header: self.header.clone(),
            generation: self.generation,
        }
    }
}

/// Where a replacement token came from; see [`TokenCache::rejected`].
#[derive(Clone, Copy, Debug)]
struct Replaced {
    at: Instant,
    chain: u32,
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

/// How many published tokens the cache remembers, to find the secret of a rejected one.
const RECENT: usize = 4;

#[derive(Default)]
struct RefreshState {
    /// The one fetch in flight: it stays here until the fetch really ends.
    flight: Option<watch::Receiver<Option<Outcome>>>,
    failures: Failures,
    retry_at: Option<Instant>,
    last_failure: Option<Failure>,
    /// The tokens published last, newest last (the current one among them).
    recent: VecDeque<Arc<CachedToken>>,
}

/// What a request whose token was rejected does next; see [`TokenCache::rejected`].
pub(crate) enum AfterRejection {
    /// Send it again with this token (another one was in place already).
    Retry(Ready),
    /// Wait for the refresh in flight; retry only with a token other than the rejected one.
    Wait(RejectionWait),
    /// No other token can be had now: the caller gets the server's answer.
    GiveUp,
}

/// A wait for the refresh a rejection started or joined.
pub(crate) struct RejectionWait {
    rx: watch::Receiver<Option<Outcome>>,
    rejected: Arc<CachedToken>,
    give_up: Instant,
}

impl RejectionWait {
    /// The new token, unless the refresh failed, timed out, or handed back the rejected one.
    pub(crate) async fn new_token(mut self) -> Option<Ready> {
        let outcome = tokio::time::timeout_at(self.give_up, wait_outcome(&mut self.rx)).await;
        match outcome {
            Ok(Ok(c)) if c.token.secret() != self.rejected.token.secret() => Some(c.ready()),
            Ok(Ok(_)) => {
                tracing::warn!(
                    target: "douyin_auth",
                    generation = self.rejected.generation,
                    "the token source handed back the rejected token; the answer goes to the caller"
                );
                None
            }
            Ok(Err(f)) => {
                tracing::warn!(
                    target: "douyin_auth",
                    error = %f.to_error(),
                    cause = f.cause().map(tracing::field::display),
                    "no new token after a rejection; the answer goes to the caller"
                );
                None
            }
            Err(_) => {
                tracing::warn!(
                    target: "douyin_auth",
                    "no new token within the refresh timeout after a rejection; the answer goes to the caller"
                );
                None
            }
        }
    }
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

/// What a waiting request does next, decided under the lock and done after it.
enum Next {
    Wait(watch::Receiver<Option<Outcome>>),
    Sleep(Instant),
}

/// The cache shared by a layer, its services and all their clones.
pub(crate) struct TokenCache {
    current: ArcSwapOption<CachedToken>,
    source: Arc<dyn DynTokenSource>,
    /// The source's metric labels, worked out once.
    labels: crate::metrics::SourceLabels,
    // Shared by all the caches a per-user layer makes (one pointer a user, not 112 bytes).
    config: Arc<CacheConfig>,
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
        config: Arc<CacheConfig>,
        format: HeaderFormat,
    ) -> Self {
        Self {
            current: ArcSwapOption::empty(),
            labels: crate::metrics::SourceLabels::of(source.full_type_name()),
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

    /// [`lookup`](Self::lookup) at `now`, a clock reading the caller just took (the per-user
    /// layer's, for its slot): one clock read per request.
    #[inline]
    pub(crate) fn lookup_at(self: &Arc<Self>, now: Instant) -> Option<Ready> {
        let guard = self.current.load();
        self.usable_or_stale_at(guard.as_ref()?, now)
    }

    /// [`lookup`](Self::lookup) through a service's own [`TokenHandle`] on this cache: the
    /// same answer, without the `ArcSwap` load when the token has not changed since the
    /// handle last read it.
    #[inline]
    pub(crate) fn lookup_with(self: &Arc<Self>, handle: &mut TokenHandle) -> Option<Ready> {
        debug_assert!(std::ptr::eq(handle.0.arc_swap(), &self.current));
        self.usable_or_stale(handle.0.load().as_ref()?)
    }

    /// The user whose tokens this cache holds, for a per-user layer's cache.
    pub(crate) fn open_id(&self) -> Option<&str> {
        self.source.open_id()
    }

    /// `stale_at` is never after `usable_until` (see `prepare`), so a token before its stale
    /// point is always inside its usable life.
    #[inline]
    fn usable_or_stale(self: &Arc<Self>, cached: &CachedToken) -> Option<Ready> {
        self.usable_or_stale_at(cached, Instant::now())
    }

    #[inline]
    fn usable_or_stale_at(self: &Arc<Self>, cached: &CachedToken, now: Instant) -> Option<Ready> {
        if now < cached.stale_at {
            return Some(cached.ready());
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
            crate::metrics::stale_served(self.labels);
            self.refresh_in_background(now);
            return Some(cached.ready());
        }
        None
    }

    /// Waits for a usable token: the cached one if it is usable by then, else the outcome of
    /// the one refresh in flight (started if none is), at most the refresh timeout. While
    /// backing off after a failure, waits for the next attempt if it starts within the refresh
    /// timeout (and then for that attempt, at most the refresh timeout again), and fails at
    /// once with [`Error::Backoff`] if it does not.
    pub(crate) async fn wait(self: Arc<Self>) -> Result<Ready, Error> {
        let timeout = self.config.refresh_timeout;
        let mut give_up = deadline(Instant::now(), timeout);
        let mut slept = false;
        loop {
            // The same rule as the fast path, so a token published meanwhile is used as is.
            if let Some(ready) = self.lookup() {
                return Ok(ready);
            }
            let now = Instant::now();
            let next = {
                let mut st = lock(&self.state);
                if let Some(rx) = &st.flight {
                    Next::Wait(rx.clone())
                } else if let Some(ready) = self.usable_now(now) {
                    return Ok(ready);
                } else if let Some(retry_at) = st.retry_at.filter(|t| now < *t) {
                    if slept || retry_at > give_up {
                        let last = st.last_failure.as_ref().map(Failure::shared);
                        return Err(Error::Backoff {
                            retry_in: retry_at - now,
                            last: last.unwrap_or_else(|| {
                                SharedError::new(Box::new(Error::RefreshTimeout(timeout)))
                            }),
                        });
                    }
                    Next::Sleep(retry_at)
                } else {
                    Next::Wait(self.start(&mut st, None)?)
                }
            };
            let mut rx = match next {
                Next::Wait(rx) => rx,
                Next::Sleep(until) => {
                    tokio::time::sleep_until(until).await;
                    // The attempt it waited for gets a whole refresh timeout of its own.
                    give_up = deadline(until, timeout);
                    slept = true;
                    continue;
                }
            };
            return match tokio::time::timeout_at(give_up, wait_outcome(&mut rx)).await {
                Ok(Ok(c)) => Ok(c.ready()),
                Ok(Err(f)) => Err(f.to_error()),
                Err(_) => Err(Error::RefreshTimeout(timeout)),
            };
        }
    }

    /// The server rejected the token of `generation` (`rejection` says why). Drops it from the
    /// cache and says what the request does next:
    ///
    /// - another token (a different secret) is in place already: retry with it;
    /// - a refresh is in flight: wait for it, and retry only if it brings another secret;
    /// - otherwise start one refresh, telling the source which token was rejected
    ///   ([`TokenSource::fetch_replacing`](crate::TokenSource::fetch_replacing)), unless the
    ///   rejected token ends a chain of replacements each rejected soon after it came (within
    ///   the minimum refresh interval for an "expired" answer, six times that for "invalid"):
    ///   an invalid replacement ends the chain at once, an expired one after one more try.
    ///   Then the token is kept and the caller gets the server's answer, so an API that
    ///   rejects every token costs no fetch per request. Nor does a rejection start a refresh
    ///   while the cache is backing off after a failed one.
    ///
    /// `path` names the request in the warning, when the request was kept.
    pub(crate) fn rejected(
        self: &Arc<Self>,
        generation: u64,
        rejection: Rejection,
        path: Option<&str>,
    ) -> AfterRejection {
        let now = Instant::now();
        let cur = self.current.load_full();
        let mut st = lock(&self.state);
        let rejected = st
            .recent
            .iter()
            .find(|c| c.generation == generation)
            .cloned();
        // Another token (another secret) is in place already: retry with it, by the fast
        // path's rule (a stale one starts a background refresh).
        let other = cur.as_ref().filter(|c| {
            rejected
                .as_ref()
                .is_none_or(|r| c.token.secret() != r.token.secret())
        });
        if let Some(c) = other.filter(|c| now < c.usable_until).cloned() {
            drop(st);
            return match self.usable_or_stale(&c) {
                Some(ready) => AfterRejection::Retry(ready),
                None => AfterRejection::GiveUp,
            };
        }
        let give_up = deadline(now, self.config.refresh_timeout);
        // Another token is in place but past its usable life: wait for the ordinary refresh.
        if let Some(c) = other.cloned() {
            let rx = match &st.flight {
                Some(rx) => rx.clone(),
                None if st.retry_at.is_some_and(|t| now < t) => return AfterRejection::GiveUp,
                None => match self.start(&mut st, None) {
                    Ok(rx) => rx,
                    Err(_) => return AfterRejection::GiveUp,
                },
            };
            let rejected = rejected.unwrap_or(c);
            return AfterRejection::Wait(RejectionWait {
                rx,
                rejected,
                give_up,
            });
        }
        let Some(rejected) = rejected else {
            return AfterRejection::GiveUp;
        };
        if let Some(rx) = &st.flight {
            return AfterRejection::Wait(RejectionWait {
                rx: rx.clone(),
                rejected,
                give_up,
            });
        }
        // A replacement rejected soon after it came: an invalid one ends the chain at once
        // (the API rejects fresh tokens), an expired one after one more try.
        let (bound, longest_chain) = match rejection {
            Rejection::Invalid => (self.config.min_refresh_interval.saturating_mul(6), 1),
            _ => (self.config.min_refresh_interval, 2),
        };
        let chain = match rejected.replaced {
            Some(r) if now.saturating_duration_since(r.at) < bound => r.chain,
            _ => 0,
        };
        if chain >= longest_chain {
            tracing::warn!(
                target: "douyin_auth",
                generation,
                verdict = ?rejection,
                path = path.unwrap_or("(not kept)"),
                "the API keeps rejecting fresh tokens (wrong token kind, missing scope or permission?); no refresh for this rejection"
            );
            return AfterRejection::GiveUp;
        }
        if st.retry_at.is_some_and(|t| now < t) {
            return AfterRejection::GiveUp;
        }
        if let Some(c) = cur.filter(|c| c.token.secret() == rejected.token.secret()) {
            let prev = self.current.compare_and_swap(&c, None);
            if prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, &c)) {
                tracing::debug!(target: "douyin_auth", generation = c.generation, "token invalidated");
            }
        }
        let replaced = Replaced {
            at: now,
            chain: chain + 1,
        };
        match self.start(&mut st, Some((rejected.token.clone(), replaced))) {
            Ok(rx) => AfterRejection::Wait(RejectionWait {
                rx,
                rejected,
                give_up,
            }),
            Err(_) => AfterRejection::GiveUp,
        }
    }

    /// Drops the cached token if it is still the one with `generation`. For tests.
    #[cfg(test)]
    pub(crate) fn invalidate(&self, generation: u64) -> bool {
        let cur = self.current.load();
        match cur.as_ref() {
            Some(c) if c.generation == generation => {
                let prev = self.current.compare_and_swap(&*cur, None);
                prev.as_ref().is_some_and(|p| p.generation == generation)
            }
            _ => false,
        }
    }

    /// Publishes `token`, read from a shared store by a background re-read, when no refresh
    /// runs and it outlives the cached token (a newer token another instance fetched). Never
    /// on the request path. Whether it was published.
    pub(crate) fn offer(&self, token: Token) -> bool {
        let mut st = lock(&self.state);
        if st.flight.is_some() {
            return false;
        }
        if let Some(c) = self.current.load().as_ref() {
            if token.expires_at() <= c.token.expires_at() {
                return false;
            }
        }
        match self.prepare(token, false, None) {
            Ok(c) => {
                tracing::debug!(target: "douyin_auth", generation = c.generation, "token adopted from the store");
                crate::metrics::published(self.labels, c.token.remaining());
                self.publish(&mut st, c);
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
        let _ = self.start(&mut st, None);
    }

    fn usable_now(&self, now: Instant) -> Option<Ready> {
        let guard = self.current.load();
        let c = guard.as_ref()?;
        (now < c.usable_until).then(|| c.ready())
    }

    /// Starts the one refresh (told which token was rejected, if one was); the caller holds
    /// the state lock and has checked none runs.
    fn start(
        self: &Arc<Self>,
        st: &mut RefreshState,
        rejected: Option<(Token, Replaced)>,
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
            run_refresh(guard, tx, rejected),
            span,
        ));
        Ok(rx)
    }

    fn nanos_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The cached form of `token`, with its deadlines:
    ///
    /// - `usable_until`: the expiry less the expiry margin (at most a quarter of the lifetime);
    ///   for a token the source handed back `unchanged` (a stable endpoint has no newer one
    ///   until it expires), its real expiry;
    /// - `stale_at`: the expiry less the refresh margin (at most half the lifetime) and the
    ///   jitter, not before the minimum refresh interval, and never after `usable_until`
    ///   (whatever the margins, no token is served inside its expiry margin); for an unchanged
    ///   token, its expiry: the next attempt is when a new token can be had.
    fn prepare(&self, token: Token, unchanged: bool, replaced: Option<Replaced>) -> Outcome {
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

        let (stale_at, usable_until) = if unchanged {
            (expires_at, expires_at)
        } else {
            let lifetime = expires_at - now;
            let cfg = &self.config;
            let refresh_margin = cfg.refresh_margin.min(lifetime / 2);
            let expiry_margin = cfg.expiry_margin.min(lifetime / 4);
            let usable_until = expires_at - expiry_margin;
            let jitter = random_up_to(cfg.jitter.min(refresh_margin / 2));
            let earliest = now + cfg.min_refresh_interval.min(lifetime / 2);
            let stale_at = (expires_at - refresh_margin)
                .checked_sub(jitter)
                .unwrap_or(now)
                .max(earliest)
                .min(usable_until);
            (stale_at, usable_until)
        };
        Ok(Arc::new(CachedToken {
            header,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            stale_at,
            usable_until,
            token,
            replaced,
        }))
    }

    /// Whether `token` is the one the cache published last (the same secret): a source that
    /// hands it back unchanged.
    fn is_unchanged(&self, token: &Token) -> bool {
        let st = lock(&self.state);
        st.recent
            .back()
            .is_some_and(|c| c.token.secret() == token.secret())
    }

    fn publish(&self, st: &mut RefreshState, c: Arc<CachedToken>) {
        if st.recent.len() == RECENT {
            st.recent.pop_front();
        }
        st.recent.push_back(Arc::clone(&c));
        self.current.store(Some(c));
    }

    /// Records the outcome of the refresh in flight: publishes a new token, or keeps the old
    /// one and backs off.
    fn finish(&self, outcome: &Outcome) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        match outcome {
            Ok(c) => {
                self.publish(&mut st, Arc::clone(c));
                st.failures.reset();
                st.retry_at = None;
                st.last_failure = None;
                self.next_attempt.store(0, Ordering::Release);
            }
            Err(f) => {
                let usable = self.usable_now(now).is_some();
                let delay = st.failures.record(
                    now,
                    &self.config,
                    f.is_rate_limited(),
                    usable,
                    self.config.refresh_timeout,
                );
                let retry_at = deadline(now, delay);
                crate::metrics::backoff(self.labels, f.is_rate_limited());
                st.retry_at = Some(retry_at);
                st.last_failure = Some(f.clone());
                self.next_attempt
                    .store(self.nanos_since_epoch(retry_at), Ordering::Release);
            }
        }
        st.flight = None;
        self.refreshing.store(false, Ordering::Release);
    }
}

async fn wait_outcome(rx: &mut watch::Receiver<Option<Outcome>>) -> Outcome {
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

/// The `outcome` of a refresh that brought a token: `unchanged` when the source handed back
/// the token the cache had (a stable endpoint), else where the token came from (`fetched`,
/// `adopted` from a store).
fn refreshed_how(c: &CachedToken, unchanged: bool) -> &'static str {
    if unchanged {
        "unchanged"
    } else {
        c.token.provenance().as_str()
    }
}

/// The one refresh: runs the fetch to completion (a refresh token Douyin consumed must not be
/// dropped half-way) and only then ends the flight, so no second fetch ever starts beside it.
/// The refresh timeout bounds how long requests wait for it, not the fetch; a fetch that hangs
/// ten times that long is abandoned at last, so nothing lingers for ever.
async fn run_refresh(
    mut guard: FlightGuard,
    tx: watch::Sender<Option<Outcome>>,
    rejected: Option<(Token, Replaced)>,
) {
    let cache = Arc::clone(&guard.cache);
    let started = Instant::now();
    let replaced = rejected.as_ref().map(|(_, r)| *r);
    tracing::debug!(target: "douyin_auth", source = cache.source.type_name(), "token refresh started");
    let timeout = cache.config.refresh_timeout;
    let source = Arc::clone(&cache.source);
    let hard_limit = timeout.saturating_mul(10);
    // In a task of its own, so that a panicking source is an error, not a lost flight.
    let fetch = tokio::spawn(async move {
        let fetch = async {
            match &rejected {
                Some((r, _)) => source.fetch_replacing_boxed(r).await,
                None => source.fetch_boxed().await,
            }
        };
        tokio::time::timeout(hard_limit, fetch).await
    });
    let mut unchanged = false;
    let outcome = match fetch.await {
        Ok(Ok(Ok(token))) => {
            unchanged = cache.is_unchanged(&token);
            cache.prepare(token, unchanged, replaced)
        }
        Ok(Ok(Err(e))) => Err(Failure::Source(SharedError::new(e))),
        Ok(Err(_)) => Err(Failure::Timeout(hard_limit)),
        Err(join) => Err(Failure::Source(SharedError::new(Box::from(
            if join.is_panic() {
                "the token source panicked"
            } else {
                "the token source's task was cancelled"
            },
        )))),
    };
    cache.finish(&outcome);
    crate::metrics::refreshed(
        cache.labels,
        outcome.as_ref().ok().map(|c| c.token.remaining()),
        started.elapsed(),
    );
    guard.finished = true;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Whose token it is: the per-user layer's user, else the token's own (never a secret).
    let open_id = cache.source.open_id();
    match &outcome {
        Ok(c) => tracing::info!(
            target: "douyin_auth",
            outcome = refreshed_how(c, unchanged),
            open_id = open_id.or(c.token.open_id()),
            generation = c.generation,
            duration_ms,
            expires_in_s = c.token.remaining().as_secs(),
            "token refresh finished"
        ),
        Err(f) => tracing::warn!(
            target: "douyin_auth",
            outcome = "error",
            open_id,
            duration_ms,
            error = %f.to_error(),
            cause = f.cause().map(tracing::field::display),
            "token refresh failed"
        ),
    }
    // Nobody listening is fine: the outcome is recorded in the cache already.
    let _ = tx.send(Some(outcome));
}

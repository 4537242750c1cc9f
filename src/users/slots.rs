//! The per-user layer's bounded map of token slots, one cache per user.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::source::KeepSlot;
use crate::cache::{CacheConfig, HeaderFormat, TokenCache};
use crate::error::BoxError;
use crate::source::{BoxFuture, DynTokenSource};
use crate::sync::lock;
use crate::token::Token;

/// Default bound of the per-user slot map.
pub const DEFAULT_MAX_USERS: usize = 10_000;
/// Default time after which an unused slot may be evicted.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub(crate) type Factory =
    Box<dyn Fn(&str) -> (Box<dyn DynTokenSource>, Option<KeepSlot>) + Send + Sync>;

/// A user's source in its slot: the user's own source, and whose it is, so that the refresh
/// logs name the user. The rest is the user's source (its name, its fetches).
struct UserSlotSource {
    open_id: Box<str>,
    inner: Box<dyn DynTokenSource>,
}

impl DynTokenSource for UserSlotSource {
    fn fetch_boxed(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        self.inner.fetch_boxed()
    }

    fn fetch_replacing_boxed<'a>(
        &'a self,
        rejected: &'a Token,
    ) -> BoxFuture<'a, Result<Token, BoxError>> {
        self.inner.fetch_replacing_boxed(rejected)
    }

    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    fn full_type_name(&self) -> &'static str {
        self.inner.full_type_name()
    }

    fn open_id(&self) -> Option<&str> {
        Some(&self.open_id)
    }
}

pub(crate) struct Slot {
    pub(crate) cache: Arc<TokenCache>,
    /// When the slot was last used, in nanoseconds after the map's epoch: stored by each
    /// request without a lock (relaxed: it only ranks slots for eviction).
    last_used: AtomicU64,
    pub(crate) keep: Option<KeepSlot>,
}

impl Slot {
    /// Whether dropping the slot loses nothing: no request or refresh holds its cache, and its
    /// source has nothing to keep (an unsaved pair, a fetch running).
    pub(crate) fn evictable(&self) -> bool {
        Arc::strong_count(&self.cache) == 1 && !self.keep.as_ref().is_some_and(|keep| keep())
    }
}

/// The per-user slots: a lock-free map (papaya's: a request pins the map's epoch, finds its
/// slot and clones its cache's `Arc`, with no lock and no allocation once the slot exists).
pub(crate) struct Slots {
    pub(crate) map: papaya::HashMap<Box<str>, Slot>,
    /// Taken only to evict (when a new user finds the map full), so two evictions do not race
    /// each other; requests never take it.
    evicting: Mutex<()>,
    epoch: Instant,
    factory: Factory,
    config: Arc<CacheConfig>,
    format: HeaderFormat,
    pub(crate) max_users: usize,
    pub(crate) idle_timeout: Duration,
    /// The query parameter the request's `open_id` goes in, if the APIs want it there.
    pub(crate) open_id_param: Option<std::borrow::Cow<'static, str>>,
}

impl Slots {
    pub(crate) fn new(
        factory: Factory,
        config: CacheConfig,
        format: HeaderFormat,
        max_users: usize,
        idle_timeout: Duration,
        open_id_param: Option<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            map: papaya::HashMap::new(),
            evicting: Mutex::new(()),
            epoch: Instant::now(),
            factory,
            config: Arc::new(config),
            format,
            max_users,
            idle_timeout,
            open_id_param,
        }
    }

    /// `now` as a slot's `last_used`.
    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The cache of `open_id`, made on first use, and the time it was looked up at (the
    /// request's clock reading). No lock, and no allocation unless the slot is new.
    pub(crate) fn cache_for(&self, open_id: &str) -> (Arc<TokenCache>, Instant) {
        let now = Instant::now();
        let stamp = self.stamp(now);
        let map = self.map.pin();
        if let Some(slot) = map.get(open_id) {
            slot.last_used.store(stamp, Ordering::Relaxed);
            return (Arc::clone(&slot.cache), now);
        }
        if map.len() >= self.max_users {
            self.evict(now);
        }
        // Two first requests of one user may both make a slot; the map keeps one.
        let slot = map.get_or_insert_with(Box::from(open_id), || self.slot(open_id, stamp));
        slot.last_used.store(stamp, Ordering::Relaxed);
        (Arc::clone(&slot.cache), now)
    }

    fn slot(&self, open_id: &str, stamp: u64) -> Slot {
        let (source, keep) = (self.factory)(open_id);
        let source = Box::new(UserSlotSource {
            open_id: Box::from(open_id),
            inner: source,
        });
        Slot {
            cache: Arc::new(TokenCache::new(
                source,
                Arc::clone(&self.config),
                self.format,
            )),
            last_used: AtomicU64::new(stamp),
            keep,
        }
    }

    /// Drops the idle slots, and if none was idle, the least recently used one. A slot in use
    /// (a request or a refresh holds it) or whose source must keep it
    /// ([`UserSource::keep_slot`]: an unsaved pair, a fetch running) is never dropped: the map
    /// then grows past its bound until such slots are free. A slot is removed only if it is
    /// still free at that moment (`remove_if`).
    pub(crate) fn evict(&self, now: Instant) {
        let _one = lock(&self.evicting);
        let map = self.map.pin();
        if map.len() < self.max_users {
            // Another eviction made room meanwhile.
            return;
        }
        let before = map.len();
        let idle_since = self
            .stamp(now)
            .saturating_sub(u64::try_from(self.idle_timeout.as_nanos()).unwrap_or(u64::MAX));
        let idle: Vec<Box<str>> = map
            .iter()
            .filter(|(_, s)| s.last_used.load(Ordering::Relaxed) <= idle_since && s.evictable())
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            let _ = map.remove_if(&key, |_, s| s.evictable());
        }
        while map.len() >= self.max_users.max(1) {
            let Some(oldest) = map
                .iter()
                .filter(|(_, s)| s.evictable())
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if !matches!(map.remove_if(&oldest, |_, s| s.evictable()), Ok(Some(_))) {
                // Taken into use meanwhile: leave the rest for the next new user.
                break;
            }
        }
        tracing::debug!(target: "douyin_auth", evicted = before.saturating_sub(map.len()), "user slots evicted");
    }
}

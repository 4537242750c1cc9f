//! The per-user layer's bounded map of token slots, one cache per user.

use std::collections::HashMap;
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
    pub(crate) last_used: Instant,
    pub(crate) keep: Option<KeepSlot>,
}

impl Slot {
    /// Whether dropping the slot loses nothing: no request or refresh holds its cache, and its
    /// source has nothing to keep (an unsaved pair, a fetch running).
    pub(crate) fn evictable(&self) -> bool {
        Arc::strong_count(&self.cache) == 1 && !self.keep.as_ref().is_some_and(|keep| keep())
    }
}

pub(crate) struct Slots {
    pub(crate) map: Mutex<HashMap<Box<str>, Slot>>,
    pub(crate) factory: Factory,
    pub(crate) config: CacheConfig,
    pub(crate) format: HeaderFormat,
    pub(crate) max_users: usize,
    pub(crate) idle_timeout: Duration,
    /// The query parameter the request's `open_id` goes in, if the APIs want it there.
    pub(crate) open_id_param: Option<std::borrow::Cow<'static, str>>,
}

impl Slots {
    /// The cache of `open_id`, made on first use, and the time it was looked up at (the
    /// request's clock reading). One short lock per request, to find the slot (no allocation
    /// unless the slot is new).
    pub(crate) fn cache_for(&self, open_id: &str) -> (Arc<TokenCache>, Instant) {
        let now = Instant::now();
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(open_id) {
            slot.last_used = now;
            return (Arc::clone(&slot.cache), now);
        }
        if map.len() >= self.max_users {
            self.evict(&mut map, now);
        }
        let (source, keep) = (self.factory)(open_id);
        let source = Box::new(UserSlotSource {
            open_id: Box::from(open_id),
            inner: source,
        });
        let cache = Arc::new(TokenCache::new(source, self.config.clone(), self.format));
        map.insert(
            Box::from(open_id),
            Slot {
                cache: Arc::clone(&cache),
                last_used: now,
                keep,
            },
        );
        (cache, now)
    }

    /// Drops the idle slots, and if none was idle, the least recently used one. A slot in use
    /// (a request or a refresh holds it) or whose source must keep it
    /// ([`UserSource::keep_slot`]: an unsaved pair, a fetch running) is never dropped: the map
    /// then grows past its bound until such slots are free.
    pub(crate) fn evict(&self, map: &mut HashMap<Box<str>, Slot>, now: Instant) {
        let before = map.len();
        map.retain(|_, s| {
            now.saturating_duration_since(s.last_used) < self.idle_timeout || !s.evictable()
        });
        while map.len() >= self.max_users.max(1) {
            let Some(oldest) = map
                .iter()
                .filter(|(_, s)| s.evictable())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        tracing::debug!(target: "douyin_auth", evicted = before - map.len(), "user slots evicted");
    }
}

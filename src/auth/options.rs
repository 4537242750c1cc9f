//! What the services of one layer share: the cache and the options the layer was built with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;

use super::placement::TokenPlacement;
use super::targets::Targets;
use crate::cache::TokenCache;

/// Default size up to which a request body is buffered so it can be replayed: 64 KiB.
pub const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// Default time a JSON answer's body may keep the peek waiting before the answer is handed on
/// unclassified: 5 seconds.
pub const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// Default size up to which a JSON response body is read to look for an expiry code: 16 KiB.
///
/// Douyin's expiry answers carry a code and a message and no data: each is under 1 KiB. An
/// answer declared larger than the limit (a list of videos or comments) cannot be one, and is
/// handed on without being read; one of unknown size is read up to the limit, and past it
/// handed on unclassified, what was read first.
pub const DEFAULT_PEEK_LIMIT: usize = 16 * 1024;

/// Everything the services of one layer share: the cache and the configuration.
pub(crate) struct Shared<C> {
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) placement: TokenPlacement,
    pub(crate) header_name: Option<HeaderName>,
    pub(crate) classifier: C,
    pub(crate) peek_limit: usize,
    pub(crate) peek_timeout: Duration,
    pub(crate) replay_limit: usize,
    pub(crate) retry: bool,
    pub(crate) targets: Targets,
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("cache", &self.cache)
            .field("placement", &self.placement)
            .field("classifier", &std::any::type_name::<C>())
            .field("peek_limit", &self.peek_limit)
            .field("peek_timeout", &self.peek_timeout)
            .field("replay_limit", &self.replay_limit)
            .field("retry", &self.retry)
            .field("targets", &self.targets)
            .finish()
    }
}

//! The cache's timing options and their defaults, and how the header value is built.

use std::time::Duration;

/// Timing options of the cache. The defaults suit Douyin (see [`DouyinAuthLayerBuilder`]).
///
/// [`DouyinAuthLayerBuilder`]: crate::DouyinAuthLayerBuilder
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    pub(crate) refresh_margin: Duration,
    pub(crate) expiry_margin: Duration,
    pub(crate) jitter: Duration,
    pub(crate) min_refresh_interval: Duration,
    pub(crate) backoff_floor: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) refresh_timeout: Duration,
}

/// Refresh this long before expiry (stale window).
pub(crate) const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);
/// Treat a token as expired this long before its real expiry (clock and network slack).
pub(crate) const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Start the background refresh up to this much earlier, at random, so a fleet spreads out.
pub(crate) const DEFAULT_JITTER: Duration = Duration::from_secs(60);
/// After a refresh, wait at least this long before the next background refresh.
pub(crate) const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// First back-off after a failed refresh.
pub(crate) const DEFAULT_BACKOFF_FLOOR: Duration = Duration::from_secs(1);
/// Longest back-off after failed refreshes.
pub(crate) const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A refresh that takes longer fails with [`Error::RefreshTimeout`].
pub(crate) const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            jitter: DEFAULT_JITTER,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            backoff_floor: DEFAULT_BACKOFF_FLOOR,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
        }
    }
}

/// How the header value is built from the token, once per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderFormat {
    /// The token as it is (`access-token: clt.…`, or the query parameter).
    Raw,
    /// `Bearer clt.…`
    Bearer,
}

//! [`DouyinAuthLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::options::{Shared, DEFAULT_PEEK_LIMIT, DEFAULT_PEEK_TIMEOUT, DEFAULT_REPLAY_LIMIT};
use super::placement::TokenPlacement;
use super::service::DouyinAuth;
use super::targets::Targets;
use crate::cache::{CacheConfig, HeaderFormat, TokenCache};
use crate::expiry::{ClassifyExpiry, DouyinExpiry};
use crate::source::{DynTokenSource, TokenSource};
use crate::token::Token;

/// A tower [`Layer`] that attaches a Douyin token to every request, keeps the token fresh,
/// and, when Douyin answers that the token expired, refreshes it and sends the request once
/// more.
///
/// The cache is created here, in [`new`](Self::new) or [`DouyinAuthLayerBuilder::build`]:
/// every service built from this layer, every clone of the layer and every clone of those
/// services share one cache and one refresh at a time. Build one layer per token (per app for
/// the client token, per user for a user token) and clone it freely.
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use douyin_auth::{DouyinAuthLayer, StaticToken};
/// use http_body_util::Full;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let api = service_fn(|req: http::Request<Full<Bytes>>| async move {
///     assert_eq!(req.headers()["access-token"], "clt.example");
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("{}"))))
/// });
/// let client = ServiceBuilder::new()
///     .layer(DouyinAuthLayer::new(StaticToken::new("clt.example")))
///     .service(api);
/// let response = client.oneshot(http::Request::new(Full::default())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub struct DouyinAuthLayer<C = DouyinExpiry> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for DouyinAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for DouyinAuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinAuthLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl DouyinAuthLayer {
    /// A layer with the default options, fetching tokens from `source`.
    pub fn new<T: TokenSource>(source: T) -> Self {
        Self::builder(source).build()
    }

    /// A builder for a layer fetching tokens from `source`, to set options.
    pub fn builder<T: TokenSource>(source: T) -> DouyinAuthLayerBuilder {
        DouyinAuthLayerBuilder {
            source: Box::new(source),
            config: CacheConfig::default(),
            placement: TokenPlacement::default(),
            classifier: DouyinExpiry::default(),
            peek_limit: DEFAULT_PEEK_LIMIT,
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            retry: true,
            targets: Targets::default(),
        }
    }
}

impl<C> DouyinAuthLayer<C> {
    pub(crate) fn shared(&self) -> &Arc<Shared<C>> {
        &self.shared
    }

    /// The token cached now, if any (it may be stale or expired). Handle with care.
    pub fn cached_token(&self) -> Option<Token> {
        self.shared.cache.current_token()
    }
}

impl<S, C> DouyinAuth<S, C> {
    /// Wraps `inner` with `layer`'s cache and options (the same as `layer.layer(inner)`).
    pub fn new(inner: S, layer: &DouyinAuthLayer<C>) -> Self {
        Self::from_shared(inner, Arc::clone(&layer.shared))
    }
}

impl<S, C> Layer<S> for DouyinAuthLayer<C> {
    type Service = DouyinAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        DouyinAuth::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// Options of a [`DouyinAuthLayer`]; from [`DouyinAuthLayer::builder`].
///
/// The defaults suit Douyin: its client token lives 2 hours and a user token 15 days, so a
/// token is refreshed in the background from 10 minutes before it expires (minus up to one
/// minute of jitter, so a fleet spreads out), and is never sent in its last 30 seconds.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::{DouyinAuthLayer, StaticToken, TokenPlacement};
///
/// let layer = DouyinAuthLayer::builder(StaticToken::new("clt.example"))
///     .refresh_margin(Duration::from_secs(15 * 60))
///     .refresh_timeout(Duration::from_secs(10))
///     .placement(TokenPlacement::Bearer)
///     .build();
/// # drop(layer);
/// ```
#[must_use]
pub struct DouyinAuthLayerBuilder<C = DouyinExpiry> {
    source: Box<dyn DynTokenSource>,
    config: CacheConfig,
    placement: TokenPlacement,
    classifier: C,
    peek_limit: usize,
    peek_timeout: Duration,
    replay_limit: usize,
    retry: bool,
    targets: Targets,
}

impl<C> fmt::Debug for DouyinAuthLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinAuthLayerBuilder")
            .field("source", &self.source.type_name())
            .field("config", &self.config)
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

impl<C> DouyinAuthLayerBuilder<C> {
    /// How long before expiry a token counts as stale: it is still sent, and one background
    /// refresh starts. Default: 10 minutes. For a token that lives less than twice this long,
    /// half its lifetime is used instead.
    ///
    /// Whatever the margins, a token is stale no later than its expiry margin begins: with a
    /// refresh margin smaller than the expiry margin, the refresh starts where the expiry
    /// margin does, and no token is ever sent inside its expiry margin.
    ///
    /// A refresh that hands back the token already cached (the same secret: Douyin's stable
    /// client-token endpoint does until the token expires, as a user-token refresh does
    /// before) cannot buy a newer one: that token is then served until its real expiry (never
    /// after it) and the next refresh planned for that moment, so a token lifetime costs at
    /// most two token calls and requests at its end wait for one call at most.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.config.refresh_margin = margin;
        self
    }

    /// How long before its real expiry a token counts as expired and is no longer sent
    /// (slack for clock drift and network time). Default: 30 seconds; at most a quarter of a
    /// token's lifetime is used. The one exception: a token the source handed back unchanged
    /// (see [`refresh_margin`](Self::refresh_margin)) is sent until its real expiry, since no
    /// newer one exists before it; an "expired" answer at that very edge is retried with the
    /// new token.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin;
        self
    }

    /// The most the background refresh starts earlier, at random, so that instances started
    /// together do not refresh together. Default: 1 minute; `Duration::ZERO` turns it off.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// The least time between a refresh and the next background refresh, so that a source
    /// returning short-lived tokens cannot cause a refresh storm. Default: 10 seconds.
    ///
    /// It also bounds the refreshes that rejections drive: a token that came from such a
    /// refresh and is rejected again within this interval (six times it for an "invalid"
    /// answer) drives no further refresh (an "expired" one gets one more try); the token is
    /// kept, the caller gets the server's answer and a warning names the path. So an API that rejects every token (wrong token
    /// kind, missing scope) costs no token call per request.
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.config.min_refresh_interval = interval;
        self
    }

    /// The back-off after failed refreshes: starts at `floor`, doubles per failure, at most
    /// `cap` (with jitter, never below `floor`). A rate-limit answer from Douyin backs off for
    /// `cap` at once. Defaults: 1 second and 1 minute. The failure count starts again after a
    /// quiet period of twice `cap` without a failure.
    ///
    /// A still-valid token keeps being sent meanwhile (background refreshes back off up to
    /// `cap`). While no token is usable the back-off is at most the refresh timeout, and a
    /// request waits for the next attempt and gets its outcome; only when that attempt is
    /// further away than the refresh timeout (a rate-limit answer's `cap`) does a request
    /// fail at once with [`Error::Backoff`](crate::Error::Backoff). See the crate docs'
    /// "Refresh and back-off" for a timeline.
    pub fn backoff(mut self, floor: Duration, cap: Duration) -> Self {
        self.config.backoff_floor = floor;
        self.config.backoff_cap = cap.max(floor);
        self
    }

    /// How long a request waits for a refresh before it fails with
    /// [`Error::RefreshTimeout`](crate::Error::RefreshTimeout). Default: 30 seconds.
    ///
    /// The refresh itself is not cut short (a refresh token Douyin consumed must not be lost):
    /// it stays the one fetch in flight until it ends, and its token is used then; later
    /// requests wait for that same fetch. A fetch that hangs ten times this long is abandoned.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.config.refresh_timeout = timeout;
        self
    }

    /// Where the token goes. Default: the `access-token` header.
    pub fn placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// How much of a JSON response is read, at most, to look for an expiry code. A larger
    /// answer is passed on untouched and not classified by its body. Default: 16 KiB
    /// ([`DEFAULT_PEEK_LIMIT`](crate::DEFAULT_PEEK_LIMIT): Douyin's expiry answers are under
    /// 1 KiB); raise it for a classifier that reads larger answers.
    pub fn peek_limit(mut self, bytes: usize) -> Self {
        self.peek_limit = bytes;
        self
    }

    /// How long a JSON answer's body may keep the layer waiting while it reads the body for
    /// the classifier. Past it, the caller gets the answer at once, unclassified, with the
    /// bytes read so far in front of the rest, so a stalled body never holds the response head.
    /// Default: 5 seconds ([`DEFAULT_PEEK_TIMEOUT`](crate::DEFAULT_PEEK_TIMEOUT)).
    pub fn peek_timeout(mut self, timeout: Duration) -> Self {
        self.peek_timeout = timeout;
        self
    }

    /// The largest request body that is buffered so the request can be sent again after an
    /// expiry. Larger bodies and bodies of unknown size go out once. Default: 64 KiB.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Whether a request whose token was rejected is sent once more with a new token.
    /// Default: true. Turned off, nothing is buffered and the rejected token is still dropped
    /// from the cache, so the next request gets a new one.
    pub fn retry_on_expiry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// Also sends the token to `host` (exact name, any case), over HTTPS.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.targets.hosts.push(host.into().into_boxed_str());
        self
    }

    /// Sends the token to any host. Use it only when the inner service decides the host.
    pub fn allow_any_host(mut self) -> Self {
        self.targets.any_host = true;
        self
    }

    /// Sends the token over plain HTTP to non-loopback hosts too (loopback always may).
    /// Default: false.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.targets.allow_http = allow;
        self
    }

    /// Uses `classifier` to decide whether a response means the token expired.
    /// Default: [`DouyinExpiry`].
    pub fn classifier<C2: ClassifyExpiry>(self, classifier: C2) -> DouyinAuthLayerBuilder<C2> {
        DouyinAuthLayerBuilder {
            source: self.source,
            config: self.config,
            placement: self.placement,
            classifier,
            peek_limit: self.peek_limit,
            peek_timeout: self.peek_timeout,
            replay_limit: self.replay_limit,
            retry: self.retry,
            targets: self.targets,
        }
    }

    /// The layer's shared state (with a cache of the builder's source) and what a further
    /// cache needs: for the per-user layer, which makes one cache per user.
    pub(crate) fn build_parts(self) -> (Arc<Shared<C>>, CacheConfig, HeaderFormat) {
        let config = self.config.clone();
        let format = self.placement.header_format();
        (self.build().shared, config, format)
    }

    /// Builds the layer and its cache.
    pub fn build(self) -> DouyinAuthLayer<C> {
        let cache = TokenCache::new(
            self.source,
            Arc::new(self.config),
            self.placement.header_format(),
        );
        DouyinAuthLayer {
            shared: Arc::new(Shared {
                cache: Arc::new(cache),
                header_name: self.placement.header_name(),
                placement: self.placement,
                classifier: self.classifier,
                peek_limit: self.peek_limit,
                peek_timeout: self.peek_timeout,
                replay_limit: self.replay_limit,
                retry: self.retry,
                targets: self.targets,
            }),
        }
    }
}

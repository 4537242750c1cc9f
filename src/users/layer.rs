//! [`UserTokenLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::DouyinUserAuth;
use super::slots::{Factory, Slots, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_USERS};
use super::source::UserSource;
use crate::auth::options::Shared;
use crate::auth::{DouyinAuthLayer, DouyinAuthLayerBuilder};
use crate::error::{BoxError, Error};
use crate::expiry::DouyinExpiry;
use crate::source::TokenSource;
use crate::token::Token;

/// The cache the per-user layer's shared state carries but never uses: every request gets its
/// user's cache, and a request without a user fails before any cache is asked.
pub(crate) struct NoUser;

impl TokenSource for NoUser {
    async fn fetch(&self) -> Result<Token, BoxError> {
        Err(Box::new(Error::MissingOpenId))
    }
}

/// A tower [`Layer`] that attaches each request's user's token: the user is named by the
/// [`OpenId`](crate::users::OpenId) request extension, and each user has a token slot of their own.
///
/// A slot is the same cache as [`DouyinAuthLayer`]'s (arc-swapped, single-flight refresh,
/// stale-while-refresh, retry once on expiry), so one user's refresh never blocks another
/// user's requests. Finding the slot takes no lock (a lookup in a lock-free map, no
/// allocation once the slot exists), nor does reading the token. The
/// map holds at most [`max_users`](UserTokenLayerBuilder::max_users) slots: when it is full,
/// slots unused for the [idle timeout](UserTokenLayerBuilder::idle_timeout) are evicted, else
/// the least recently used one. A slot in use (a request or a refresh holds it) or that its
/// source keeps ([`UserSource::keep_slot`]; a [`StoredUser`](crate::users::StoredUser) with a pair not yet written, or a
/// fetch running) is not evicted; the map grows past its bound meanwhile.
///
/// A request without [`OpenId`](crate::users::OpenId) fails with [`Error::MissingOpenId`]. Errors of a user's
/// refresh are surfaced as [`Error::ReauthorizationRequired`], [`Error::Persist`] and
/// [`Error::Store`] when those are behind them; others as from [`DouyinAuthLayer`].
///
/// Clones share the slots.
pub struct UserTokenLayer<C = DouyinExpiry> {
    shared: Arc<Shared<C>>,
    slots: Arc<Slots>,
}

impl<C> Clone for UserTokenLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<C> fmt::Debug for UserTokenLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokenLayer")
            .field("users", &self.users())
            .field("max_users", &self.slots.max_users)
            .field("idle_timeout", &self.slots.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl UserTokenLayer {
    /// A builder of a layer whose users' sources `users` makes.
    pub fn builder<U: UserSource>(users: U) -> UserTokenLayerBuilder {
        let users = Arc::new(users);
        UserTokenLayerBuilder {
            base: DouyinAuthLayer::builder(NoUser),
            factory: Box::new(move |id: &str| {
                let source = users.source_for(id);
                let keep = users.keep_slot(&source);
                (Box::new(source), keep)
            }),
            max_users: DEFAULT_MAX_USERS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            open_id_param: None,
        }
    }

    /// A layer with the default options.
    pub fn new<U: UserSource>(users: U) -> Self {
        Self::builder(users).build()
    }
}

impl<C> UserTokenLayer<C> {
    /// The number of user slots held now.
    pub fn users(&self) -> usize {
        self.slots.map.len()
    }

    /// Whether a slot for `open_id` is held now.
    pub fn has_user(&self, open_id: &str) -> bool {
        self.slots.map.pin().contains_key(open_id)
    }

    /// The token cached for `open_id`, if its slot is held and has one. Handle with care.
    pub fn cached_token(&self, open_id: &str) -> Option<Token> {
        let cache = self
            .slots
            .map
            .pin()
            .get(open_id)
            .map(|s| Arc::clone(&s.cache))?;
        cache.current_token()
    }
}

impl<S, C> Layer<S> for UserTokenLayer<C> {
    type Service = DouyinUserAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        DouyinUserAuth {
            inner,
            shared: Arc::clone(&self.shared),
            slots: Arc::clone(&self.slots),
        }
    }
}

/// Options of a [`UserTokenLayer`]; from [`UserTokenLayer::builder`].
#[must_use]
pub struct UserTokenLayerBuilder<C = DouyinExpiry> {
    base: DouyinAuthLayerBuilder<C>,
    factory: Factory,
    max_users: usize,
    idle_timeout: Duration,
    open_id_param: Option<std::borrow::Cow<'static, str>>,
}

impl<C> fmt::Debug for UserTokenLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokenLayerBuilder")
            .field("base", &self.base)
            .field("max_users", &self.max_users)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<C> UserTokenLayerBuilder<C> {
    /// The most user slots held at once (default [`DEFAULT_MAX_USERS`]; at least 1).
    pub fn max_users(mut self, max: usize) -> Self {
        self.max_users = max.max(1);
        self
    }

    /// Also puts each request's user in the query parameter `name` (Douyin's user APIs read
    /// `open_id`), replacing any `name` the request had: the token and the `open_id` always
    /// belong to the same user, so a caller cannot send one user's token with another's
    /// `open_id`. Off by default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use douyin_auth::users::UserTokenLayer;
    /// use douyin_auth::Token;
    ///
    /// let layer = UserTokenLayer::builder(|open_id: &str| {
    ///     douyin_auth::StaticToken::from(Token::new(format!("act.{open_id}"), Duration::from_secs(3600)))
    /// })
    /// .open_id_query("open_id")
    /// .build();
    /// # drop(layer);
    /// ```
    pub fn open_id_query(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.open_id_param = Some(name.into());
        self
    }

    /// How long a slot stays unused before it is evicted first when the map is full
    /// (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Sets the options every user's slot shares, those of [`DouyinAuthLayerBuilder`]: margins,
    /// jitter, back-off, placement, limits, hosts, classifier.
    ///
    /// ```
    /// use std::time::Duration;
    /// use douyin_auth::users::UserTokenLayer;
    /// use douyin_auth::{BoxError, Token};
    ///
    /// let layer = UserTokenLayer::builder(|open_id: &str| {
    ///     let token = Token::new(format!("act.{open_id}"), Duration::from_secs(3600));
    ///     douyin_auth::StaticToken::from(token)
    /// })
    /// .options(|o| o.refresh_margin(Duration::from_secs(300)))
    /// .build();
    /// # drop(layer);
    /// ```
    pub fn options<C2>(
        self,
        f: impl FnOnce(DouyinAuthLayerBuilder<C>) -> DouyinAuthLayerBuilder<C2>,
    ) -> UserTokenLayerBuilder<C2> {
        UserTokenLayerBuilder {
            base: f(self.base),
            factory: self.factory,
            max_users: self.max_users,
            idle_timeout: self.idle_timeout,
            open_id_param: self.open_id_param,
        }
    }

    /// Builds the layer.
    pub fn build(self) -> UserTokenLayer<C> {
        let (shared, config, format) = self.base.build_parts();
        UserTokenLayer {
            shared,
            slots: Arc::new(Slots::new(
                self.factory,
                config,
                format,
                self.max_users,
                self.idle_timeout,
                self.open_id_param,
            )),
        }
    }
}

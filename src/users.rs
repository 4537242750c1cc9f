//! Many Douyin users: the layer picks the user per request ([`OpenId`]), keeps one token slot
//! per user, and refreshes each user's tokens from a [`TokenStore`] under a lease.
//!
//! - [`UserTokenLayer`] / [`DouyinUserAuth`]: the per-user layer and its service. Each request
//!   names its user with an [`OpenId`] request extension; each user has a cache slot of their
//!   own (the same arc-swapped cache as [`DouyinAuthLayer`]), with its own
//!   single-flight refresh, so one user's refresh never blocks another's requests. The slot map
//!   is bounded: idle slots are evicted first, then the least recently used.
//! - [`StoredUsers`] / [`StoredUser`]: each user's tokens come from a [`TokenStore`] (your
//!   database, Redis or memory) and go back to it: a refreshed pair is written to the store
//!   before it is used, under the user's lease, so two instances never refresh or renew one
//!   user at the same time (renewal kills the old refresh token at once).
//! - [`UserSource`]: how the layer gets a [`TokenSource`] for a user; implement it (or pass a
//!   closure) to plug in your own.
//!
//! ```
//! use douyin_auth::douyin::UserTokens;
//! use douyin_auth::store::MemoryStore;
//! use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
//!
//! # #[cfg(feature = "https")]
//! # fn demo() {
//! let users = StoredUsers::new("my_client_key", "my_client_secret", MemoryStore::new());
//! let layer = UserTokenLayer::builder(users).max_users(10_000).build();
//! let mut request = http::Request::new(http_body_util::Full::<bytes::Bytes>::default());
//! request.extensions_mut().insert(OpenId::new("the-users-open-id"));
//! # drop((layer, request)); }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{ReplayBody, ResponseBody};
use crate::cache::{CacheConfig, HeaderFormat, TokenCache};
use crate::douyin::{HttpClient, UserTokens, DEFAULT_BASE_URL, DEFAULT_RENEW_WINDOW};
use crate::expiry::{ClassifyExpiry, DouyinExpiry};
use crate::layer::Shared;
use crate::service::{Lookup, ResponseFuture};
use crate::source::DynTokenSource;
use crate::store::shared::{jittered, timed, while_leased, LeaseGuard};
use crate::store::{
    Lease, TokenStore, DEFAULT_LEASE_TTL, DEFAULT_MAX_WAIT, DEFAULT_MIN_REMAINING,
    DEFAULT_POLL_INTERVAL, DEFAULT_STORE_TIMEOUT,
};
use crate::token::Secret;
use crate::{BoxError, DouyinAuthLayer, DouyinAuthLayerBuilder, Error, Token, TokenSource};

/// The request extension that names the Douyin user a request acts for, by `open_id`.
///
/// ```
/// let mut req = http::Request::new(http_body_util::Full::<bytes::Bytes>::default());
/// req.extensions_mut().insert(douyin_auth::users::OpenId::new("open-id-1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpenId(pub String);

impl OpenId {
    /// The user with `open_id`.
    pub fn new(open_id: impl Into<String>) -> Self {
        Self(open_id.into())
    }

    /// The `open_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Makes the [`TokenSource`] of one user, when the per-user layer first sees them (or sees
/// them again after their slot was evicted).
///
/// [`StoredUsers`] is the ready-made one; a closure `Fn(&str) -> impl TokenSource` works too.
pub trait UserSource: Send + Sync + 'static {
    /// The source type.
    type Source: TokenSource;

    /// The token source of the user with `open_id`.
    fn source_for(&self, open_id: &str) -> Self::Source;

    /// A check the per-user layer runs before it evicts the slot of `source`: while it returns
    /// true, the slot is kept (past the slot bound if need be), because dropping it would lose
    /// state, e.g. a refreshed pair not yet written or a refresh in flight. `None` (the default):
    /// the slot may be evicted whenever it is unused.
    fn keep_slot(&self, source: &Self::Source) -> Option<KeepSlot> {
        let _ = source;
        None
    }
}

/// The check of [`UserSource::keep_slot`]: true while the slot must not be evicted.
pub type KeepSlot = Box<dyn Fn() -> bool + Send + Sync>;

impl<F, T> UserSource for F
where
    F: Fn(&str) -> T + Send + Sync + 'static,
    T: TokenSource,
{
    type Source = T;

    fn source_for(&self, open_id: &str) -> T {
        self(open_id)
    }
}

// ---------------------------------------------------------------------------------------------
// Stored users

struct UsersConfig<C, St> {
    client_key: String,
    client_secret: Secret,
    client: C,
    base_url: String,
    renew_window: Duration,
    store: Arc<St>,
    lease_ttl: Duration,
    poll: Duration,
    max_wait: Duration,
    min_remaining: Duration,
    store_timeout: Duration,
    /// The users' states alive now (held by a slot, a fetch or a background retry), so that a
    /// user's source made again (after its slot was evicted) shares the state of the one before:
    /// its unsaved pair, its last token.
    live: Mutex<HashMap<String, Weak<UserInner<C, St>>>>,
}

/// Users' tokens kept in a [`TokenStore`] and refreshed from it: the [`UserSource`] for apps
/// that act for many Douyin users.
///
/// Store a user's tokens with [`save`](Self::save) after the OAuth code exchange; from then on
/// each user's [`StoredUser`] source reads them from the store, refreshes the access token
/// (and renews the refresh token before it dies, as [`UserTokens`] does) under the user's
/// lease, and writes every new pair to the store before it is used. Keys are
/// `user:<open_id>`, never a secret.
///
/// Clones share the settings and the store. Its `Debug` shows the `client_key`, never the
/// `client_secret`.
pub struct StoredUsers<C, St> {
    config: Arc<UsersConfig<C, St>>,
}

impl<C, St> Clone for StoredUsers<C, St> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

impl<C, St> fmt::Debug for StoredUsers<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("StoredUsers")
            .field("client_key", &c.client_key)
            .field("client_secret", &c.client_secret)
            .field("base_url", &c.base_url)
            .field("renew_window", &c.renew_window)
            .field("store", &std::any::type_name::<St>())
            .field("lease_ttl", &c.lease_ttl)
            .field("max_wait", &c.max_wait)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "https")]
impl<St: TokenStore> StoredUsers<crate::douyin::HttpsClient, St> {
    /// Users of the app `client_key`, refreshed over the built-in HTTPS client (feature
    /// `https`), their tokens kept in `store`.
    pub fn new(client_key: impl Into<String>, client_secret: impl Into<String>, store: St) -> Self {
        Self::with_client(
            client_key,
            client_secret,
            crate::douyin::HttpsClient::new(),
            store,
        )
    }
}

impl<C, St: TokenStore> StoredUsers<C, St> {
    /// Users of the app `client_key`, refreshed through `client` (any tower HTTP service),
    /// their tokens kept in `store`.
    pub fn with_client(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        client: C,
        store: St,
    ) -> Self {
        Self {
            config: Arc::new(UsersConfig {
                client_key: client_key.into(),
                client_secret: Secret::new(client_secret),
                client,
                base_url: DEFAULT_BASE_URL.to_owned(),
                renew_window: DEFAULT_RENEW_WINDOW,
                store: Arc::new(store),
                lease_ttl: DEFAULT_LEASE_TTL,
                poll: DEFAULT_POLL_INTERVAL,
                max_wait: DEFAULT_MAX_WAIT,
                min_remaining: DEFAULT_MIN_REMAINING,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                live: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut UsersConfig<C, St>)) -> Self
    where
        C: Clone,
    {
        match Arc::get_mut(&mut self.config) {
            Some(c) => f(c),
            None => {
                let c = &*self.config;
                let mut copy = UsersConfig {
                    client_key: c.client_key.clone(),
                    client_secret: c.client_secret.clone(),
                    client: c.client.clone(),
                    base_url: c.base_url.clone(),
                    renew_window: c.renew_window,
                    store: Arc::clone(&c.store),
                    lease_ttl: c.lease_ttl,
                    poll: c.poll,
                    max_wait: c.max_wait,
                    min_remaining: c.min_remaining,
                    store_timeout: c.store_timeout,
                    // Users made with the old settings keep them; new ones get the new.
                    live: Mutex::new(HashMap::new()),
                };
                f(&mut copy);
                self.config = Arc::new(copy);
            }
        }
        self
    }

    /// Sets the base URL (default `https://open.douyin.com`).
    #[must_use]
    pub fn base_url(self, base_url: impl Into<String>) -> Self
    where
        C: Clone,
    {
        let url = base_url.into().trim_end_matches('/').to_owned();
        self.edit(|c| c.base_url = url)
    }

    /// Renews a refresh token that has less than `window` left at a refresh
    /// (default [`DEFAULT_RENEW_WINDOW`]); see [`UserTokens::renew_window`].
    #[must_use]
    pub fn renew_window(self, window: Duration) -> Self
    where
        C: Clone,
    {
        self.edit(|c| c.renew_window = window)
    }

    /// How long a user's lease lasts (default [`DEFAULT_LEASE_TTL`], 60 seconds): longer than a
    /// refresh and a renewal take, and longer than the layer's
    /// [refresh timeout](crate::DouyinAuthLayerBuilder::refresh_timeout) (30 seconds by
    /// default), so that another instance never takes the lease while this one still works.
    #[must_use]
    pub fn lease_ttl(self, ttl: Duration) -> Self
    where
        C: Clone,
    {
        self.edit(|c| c.lease_ttl = ttl)
    }

    /// How often an instance waiting for another's refresh of the same user reads the store
    /// (with jitter; default [`DEFAULT_POLL_INTERVAL`]).
    #[must_use]
    pub fn poll_interval(self, interval: Duration) -> Self
    where
        C: Clone,
    {
        self.edit(|c| c.poll = interval)
    }

    /// How long an instance waits for another's lease on the same user before the fetch fails
    /// with [`Error::Store`] (default [`DEFAULT_MAX_WAIT`], 20 seconds): shorter than the
    /// layer's [refresh timeout](crate::DouyinAuthLayerBuilder::refresh_timeout), so the caller
    /// sees why rather than a timeout.
    #[must_use]
    pub fn max_wait(self, wait: Duration) -> Self
    where
        C: Clone,
    {
        self.edit(|c| c.max_wait = wait)
    }

    /// How long one store operation may take (default [`DEFAULT_STORE_TIMEOUT`]).
    #[must_use]
    pub fn store_timeout(self, timeout: Duration) -> Self
    where
        C: Clone,
    {
        self.edit(|c| c.store_timeout = timeout)
    }

    /// The store key of the user `open_id`: `user:<open_id>`.
    pub fn key_for(open_id: &str) -> String {
        format!("user:{open_id}")
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.config.store
    }

    /// Writes a user's tokens to the store (after the OAuth code exchange, or to import them):
    /// `token` must carry the `open_id` and the refresh token.
    pub async fn save(&self, token: &Token) -> Result<(), Error> {
        let open_id = token
            .open_id()
            .ok_or_else(|| Error::Store("the token to save has no open_id".into()))?;
        if token.refresh_token().is_none() {
            return Err(Error::Store(
                "the token to save has no refresh token".into(),
            ));
        }
        timed(
            self.config.store_timeout,
            self.config.store.put(&Self::key_for(open_id), token),
        )
        .await
        .map_err(Error::Persist)
    }

    /// The token source of the user `open_id` (what the layer uses per slot). While a source
    /// of that user is alive (in a slot, a fetch or a background retry), this returns one that
    /// shares its state, so a refreshed pair not yet written is never forgotten by a new one.
    pub fn user(&self, open_id: &str) -> StoredUser<C, St> {
        let mut live = lock(&self.config.live);
        if let Some(inner) = live.get(open_id).and_then(Weak::upgrade) {
            return StoredUser { inner };
        }
        let inner = Arc::new(UserInner {
            open_id: open_id.to_owned(),
            key: Self::key_for(open_id),
            config: Arc::clone(&self.config),
            tokens: tokio::sync::Mutex::new(None),
            lease: Arc::new(Mutex::new(None)),
            last: Mutex::new(None),
            retrying: AtomicBool::new(false),
            fetching: AtomicUsize::new(0),
            unsaved: AtomicBool::new(false),
        });
        live.insert(open_id.to_owned(), Arc::downgrade(&inner));
        StoredUser { inner }
    }
}

impl<C: HttpClient, St: TokenStore> UserSource for StoredUsers<C, St> {
    type Source = StoredUser<C, St>;

    fn source_for(&self, open_id: &str) -> StoredUser<C, St> {
        self.user(open_id)
    }

    fn keep_slot(&self, source: &StoredUser<C, St>) -> Option<KeepSlot> {
        let inner = Arc::downgrade(&source.inner);
        Some(Box::new(move || {
            inner.upgrade().is_some_and(|i| {
                i.fetching.load(Ordering::Acquire) > 0 || i.unsaved.load(Ordering::Acquire)
            })
        }))
    }
}

struct UserInner<C, St> {
    open_id: String,
    key: String,
    config: Arc<UsersConfig<C, St>>,
    /// The user's refresh state; held for the whole of a fetch, so fetches of this slot run
    /// one at a time.
    tokens: tokio::sync::Mutex<Option<UserTokens<C>>>,
    /// The lease the persistence hook writes under, while a refresh runs.
    lease: Arc<Mutex<Option<Lease>>>,
    /// The token handed out last: not adopted again from the store.
    last: Mutex<Option<Token>>,
    /// A background retry of a failed write is running.
    retrying: AtomicBool,
    /// Fetches running now (a slot with one is not evicted).
    fetching: AtomicUsize,
    /// A refreshed pair may be waiting for the store (a slot with one is not evicted). Set after
    /// every fetch, and to true when a fetch is cancelled (until the retry it starts finds out).
    unsaved: AtomicBool,
}

impl<C, St> Drop for UserInner<C, St> {
    fn drop(&mut self) {
        let mut live = lock(&self.config.live);
        // A new state of the same user may have taken the entry already.
        if live
            .get(&self.open_id)
            .is_some_and(|w| w.strong_count() == 0)
        {
            live.remove(&self.open_id);
        }
    }
}

/// Counts a fetch as running; a fetch dropped before it finished (cancelled) marks the user as
/// possibly unsaved and starts the background retry, which writes a pair left pending, if any.
struct Fetching<C: HttpClient, St: TokenStore> {
    user: StoredUser<C, St>,
    finished: bool,
}

impl<C: HttpClient, St: TokenStore> Fetching<C, St> {
    fn start(user: &StoredUser<C, St>) -> Self {
        user.inner.fetching.fetch_add(1, Ordering::AcqRel);
        Self {
            user: user.clone(),
            finished: false,
        }
    }
}

impl<C: HttpClient, St: TokenStore> Drop for Fetching<C, St> {
    fn drop(&mut self) {
        if !self.finished {
            self.user.inner.unsaved.store(true, Ordering::Release);
            self.user.retry_in_background();
        }
        self.user.inner.fetching.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One user's tokens from a [`TokenStore`]; made by [`StoredUsers`].
///
/// Each [`fetch`](TokenSource::fetch):
/// 1. reads the store: a pair that another instance wrote (not the one handed out last) with
///    more than a minute left is adopted, with no call to Douyin;
/// 2. otherwise takes the user's lease (waiting, with jitter, while another instance holds it,
///    and adopting what it writes), reads the store again under it, and refreshes (and, near the
///    refresh token's end, renews) as [`UserTokens`] does;
/// 3. writes the new pair to the store, only while the lease is its own, before handing it out.
///    The lease is extended ([`TokenStore::extend`]) while the renewal, refresh and write run, so
///    no other instance takes it and refreshes with the refresh token this one consumes.
///    If the write fails, the fetch fails with [`Error::Persist`], the pair is kept in memory
///    and the write is retried in the background (with back-off, until it succeeds) and by the
///    next fetch: a pair Douyin issued is never silently dropped.
///
/// A user the store does not know, or whose refresh token is dead (Douyin's 10010, or 10020 on
/// renewal), gives [`Error::ReauthorizationRequired`] naming the `open_id`. A store that fails
/// gives [`Error::Store`]: without it a user's tokens are not refreshed, since a consumed
/// refresh token must be written somewhere. Its `Debug` shows the `open_id`, never a secret.
pub struct StoredUser<C, St> {
    inner: Arc<UserInner<C, St>>,
}

impl<C, St> Clone for StoredUser<C, St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, St> fmt::Debug for StoredUser<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("open_id", &self.inner.open_id)
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// Whether `stored` is a newer pair of the user's than `ours`: with another refresh token that
/// lives longer (a renewal, or a new authorisation), or with the same refresh token and a later
/// access token (a later refresh).
fn is_newer(stored: &Token, ours: &Token) -> bool {
    let Some(refresh) = stored.refresh_token() else {
        return false;
    };
    match ours.refresh_token() {
        None => true,
        Some(o) if o == refresh => stored.expires_at() > ours.expires_at(),
        Some(_) => match (stored.refresh_expires_at(), ours.refresh_expires_at()) {
            (Some(s), Some(o)) => s > o,
            (Some(_), None) => true,
            (None, _) => false,
        },
    }
}

/// Whether `stored` has a refresh token that is still alive and none of `seen` has.
fn is_other_live_pair(stored: &Token, seen: &[&Token]) -> bool {
    let (Some(refresh), Some(until)) = (stored.refresh_token(), stored.refresh_expires_at()) else {
        return false;
    };
    until > Instant::now() && seen.iter().all(|t| t.refresh_token() != Some(refresh))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Longest pause between background retries of a failed write.
const RETRY_CAP: Duration = Duration::from_secs(30);

impl<C: HttpClient, St: TokenStore> StoredUser<C, St> {
    /// The user's `open_id`.
    pub fn open_id(&self) -> &str {
        &self.inner.open_id
    }

    /// Whether a refreshed pair is waiting to be written to the store.
    pub async fn has_unsaved(&self) -> bool {
        match self.inner.tokens.lock().await.as_ref() {
            Some(t) => t.has_pending().await,
            None => false,
        }
    }

    fn reauth(&self) -> Error {
        Error::ReauthorizationRequired {
            open_id: self.inner.open_id.clone(),
            cause: None,
        }
    }

    fn adoptable(&self, stored: &Token) -> bool {
        if stored.remaining() <= self.inner.config.min_remaining {
            return false;
        }
        match lock(&self.inner.last).as_ref() {
            None => true,
            Some(l) => l != stored || stored.expires_at() > l.expires_at() + Duration::from_secs(1),
        }
    }

    fn hand_out(&self, token: Token) -> Token {
        *lock(&self.inner.last) = Some(token.clone());
        token
    }

    fn make_tokens(&self, token: Token) -> UserTokens<C> {
        let c = &self.inner.config;
        let store = Arc::clone(&c.store);
        let key = self.inner.key.clone();
        let lease = Arc::clone(&self.inner.lease);
        let timeout = c.store_timeout;
        let hook = move |token: Token| {
            let store = Arc::clone(&store);
            let key = key.clone();
            let lease = lock(&lease).clone();
            async move {
                let lease =
                    lease.ok_or_else(|| BoxError::from("no lease is held for this user"))?;
                if timed(timeout, store.put_if_leased(&key, &lease, &token)).await? {
                    Ok(())
                } else {
                    Err(BoxError::from(
                        "the user's lease ended before the new tokens were written",
                    ))
                }
            }
        };
        UserTokens::with_client(
            c.client_key.clone(),
            c.client_secret.expose(),
            token,
            c.client.clone(),
        )
        .base_url(c.base_url.clone())
        .renew_window(c.renew_window)
        // The shared store decides what to adopt; a fetch that reaches here refreshes.
        .adopt_stored(false)
        .on_refresh(hook)
    }

    /// One fetch; `publish`: hand the token out (the cache asked), else only write a pending
    /// pair (the background retry). Keeps the flags the slot map's eviction reads.
    async fn run(&self, publish: bool) -> Result<Token, Error> {
        let mut fetching = Fetching::start(self);
        let result = self.run_locked(publish).await;
        let unsaved = self.has_unsaved().await;
        self.inner.unsaved.store(unsaved, Ordering::Release);
        fetching.finished = true;
        result
    }

    async fn run_locked(&self, publish: bool) -> Result<Token, Error> {
        let inner = &self.inner;
        let c = &inner.config;
        let mut slot = inner.tokens.lock().await;
        let pending = match slot.as_ref() {
            Some(t) => t.has_pending().await,
            None => false,
        };
        if !publish && !pending {
            return Err(Error::Store("nothing to write".into()));
        }
        // Before the cache's refresh timeout, so the caller learns why.
        let give_up = crate::token::deadline(Instant::now(), c.max_wait);
        let lease = loop {
            if !pending {
                let stored = timed(c.store_timeout, c.store.get(&inner.key))
                    .await
                    .map_err(Error::Store)?;
                if let Some(t) = stored.filter(|t| self.adoptable(t)) {
                    if let Some(tokens) = slot.as_ref() {
                        tokens.adopt(t.clone()).await;
                    }
                    return Ok(self.hand_out(t));
                }
            }
            match timed(c.store_timeout, c.store.try_lease(&inner.key, c.lease_ttl))
                .await
                .map_err(Error::Store)?
            {
                Some(lease) => break lease,
                None if Instant::now() >= give_up => {
                    return Err(Error::Store(
                        "another instance held this user's lease for too long".into(),
                    ));
                }
                None => tokio::time::sleep(jittered(c.poll)).await,
            }
        };
        let guard = LeaseGuard {
            store: Arc::clone(&c.store),
            key: inner.key.clone(),
            lease: Some(lease.clone()),
        };
        // Under the lease the store is the truth. A pair of ours that still waits for it is
        // written only if nothing newer is stored: another instance may have refreshed since
        // (our write may even have landed with its answer lost, and been renewed from).
        let stored = match timed(c.store_timeout, c.store.get(&inner.key)).await {
            Ok(s) => s,
            Err(e) => {
                guard.release(c.store_timeout).await;
                return Err(Error::Store(e));
            }
        };
        let mut pending = pending;
        if pending {
            if let (Some(t), Some(tokens)) = (stored.as_ref(), slot.as_ref()) {
                if is_newer(t, &tokens.current()) {
                    tracing::warn!(target: "douyin_auth", open_id = %inner.open_id, "a newer pair than the unsaved one is stored; the unsaved one is dropped");
                    *slot = Some(self.make_tokens(t.clone()));
                    pending = false;
                    if !publish {
                        guard.release(c.store_timeout).await;
                        return Ok(t.clone());
                    }
                }
            }
        }
        if !pending {
            match stored {
                Some(t) if self.adoptable(&t) => {
                    guard.release(c.store_timeout).await;
                    if let Some(tokens) = slot.as_ref() {
                        tokens.adopt(t.clone()).await;
                    }
                    return Ok(self.hand_out(t));
                }
                Some(t) => match slot.as_ref() {
                    Some(tokens) => {
                        tokens.adopt(t).await;
                    }
                    None => *slot = Some(self.make_tokens(t)),
                },
                // Lost from the store (e.g. Redis restarted empty): the pair in memory is the
                // best there is, and the refresh writes it back. Unknown user: reauthorise.
                None if slot.is_none() => {
                    guard.release(c.store_timeout).await;
                    return Err(self.reauth());
                }
                None => {}
            }
        }
        let Some(tokens) = slot.as_ref() else {
            guard.release(c.store_timeout).await;
            return Err(self.reauth());
        };
        let used = tokens.current();
        *lock(&inner.lease) = Some(lease.clone());
        // Renewal, refresh and the write may outlast the lease: it is extended meanwhile, so no
        // other instance takes it and refreshes with the refresh token this one consumes.
        let mut result = while_leased(
            &*c.store,
            &inner.key,
            &lease,
            c.lease_ttl,
            c.store_timeout,
            tokens.fetch_token(),
        )
        .await;
        // A dead refresh token: the user may have a newer pair in the store all the same
        // (written by another instance, or saved after a new authorisation). Use that one
        // rather than ask the user to authorise again.
        if matches!(result, Err(Error::ReauthorizationRequired { .. })) {
            let current = tokens.current();
            if let Ok(Some(t)) = timed(c.store_timeout, c.store.get(&inner.key)).await {
                if is_other_live_pair(&t, &[&used, &current]) {
                    tracing::info!(target: "douyin_auth", open_id = %inner.open_id, "the refresh token was dead but another pair is stored; using it");
                    let fresh = self.make_tokens(t.clone());
                    result = if self.adoptable(&t) {
                        Ok(t)
                    } else {
                        while_leased(
                            &*c.store,
                            &inner.key,
                            &lease,
                            c.lease_ttl,
                            c.store_timeout,
                            fresh.fetch_token(),
                        )
                        .await
                    };
                    *slot = Some(fresh);
                }
            }
        }
        *lock(&inner.lease) = None;
        guard.release(c.store_timeout).await;
        drop(slot);
        match result {
            Ok(t) if publish => Ok(self.hand_out(t)),
            Ok(t) => Ok(t),
            Err(e) => {
                if matches!(e, Error::Persist(_)) {
                    tracing::warn!(target: "douyin_auth", open_id = %inner.open_id, error = %e, "writing a user's new tokens failed; kept in memory, retrying");
                    self.retry_in_background();
                }
                Err(e)
            }
        }
    }

    fn retry_in_background(&self) {
        if self.inner.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.inner.retrying.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        handle.spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                tokio::time::sleep(jittered(delay)).await;
                match me.run(false).await {
                    Err(Error::Persist(_) | Error::Store(_)) if me.has_unsaved().await => {
                        delay = delay.saturating_mul(2).min(RETRY_CAP);
                    }
                    _ => break,
                }
            }
            me.inner.retrying.store(false, Ordering::Release);
        });
    }
}

impl<C: HttpClient, St: TokenStore> TokenSource for StoredUser<C, St> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.run(true).await.map_err(Into::into)
    }
}

// ---------------------------------------------------------------------------------------------
// The per-user layer

/// Default bound of the per-user slot map.
pub const DEFAULT_MAX_USERS: usize = 10_000;
/// Default time after which an unused slot may be evicted.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

type Factory = Box<dyn Fn(&str) -> (Box<dyn DynTokenSource>, Option<KeepSlot>) + Send + Sync>;

struct Slot {
    cache: Arc<TokenCache>,
    last_used: Instant,
    keep: Option<KeepSlot>,
}

impl Slot {
    /// Whether dropping the slot loses nothing: no request or refresh holds its cache, and its
    /// source has nothing to keep (an unsaved pair, a fetch running).
    fn evictable(&self) -> bool {
        Arc::strong_count(&self.cache) == 1 && !self.keep.as_ref().is_some_and(|keep| keep())
    }
}

struct Slots {
    map: Mutex<HashMap<Box<str>, Slot>>,
    factory: Factory,
    config: CacheConfig,
    format: HeaderFormat,
    max_users: usize,
    idle_timeout: Duration,
}

impl Slots {
    /// The cache of `open_id`, made on first use. One short lock per request, to find the slot
    /// (no allocation unless the slot is new).
    fn cache_for(&self, open_id: &str) -> Arc<TokenCache> {
        let now = Instant::now();
        let mut map = lock(&self.map);
        if let Some(slot) = map.get_mut(open_id) {
            slot.last_used = now;
            return Arc::clone(&slot.cache);
        }
        if map.len() >= self.max_users {
            self.evict(&mut map, now);
        }
        let (source, keep) = (self.factory)(open_id);
        let cache = Arc::new(TokenCache::new(source, self.config.clone(), self.format));
        map.insert(
            Box::from(open_id),
            Slot {
                cache: Arc::clone(&cache),
                last_used: now,
                keep,
            },
        );
        cache
    }

    /// Drops the idle slots, and if none was idle, the least recently used one. A slot in use
    /// (a request or a refresh holds it) or whose source must keep it
    /// ([`UserSource::keep_slot`]: an unsaved pair, a fetch running) is never dropped: the map
    /// then grows past its bound until such slots are free.
    fn evict(&self, map: &mut HashMap<Box<str>, Slot>, now: Instant) {
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

/// The cache the per-user layer's shared state carries but never uses: every request gets its
/// user's cache, and a request without a user fails before any cache is asked.
struct NoUser;

impl TokenSource for NoUser {
    async fn fetch(&self) -> Result<Token, BoxError> {
        Err(Box::new(Error::MissingOpenId))
    }
}

/// A tower [`Layer`] that attaches each request's user's token: the user is named by the
/// [`OpenId`] request extension, and each user has a token slot of their own.
///
/// A slot is the same cache as [`DouyinAuthLayer`]'s (arc-swapped, single-flight refresh,
/// stale-while-refresh, retry once on expiry), so one user's refresh never blocks another
/// user's requests. Finding the slot takes one short `std` mutex lock per request (a map
/// lookup, no allocation once the slot exists); the token itself is read without a lock. The
/// map holds at most [`max_users`](UserTokenLayerBuilder::max_users) slots: when it is full,
/// slots unused for the [idle timeout](UserTokenLayerBuilder::idle_timeout) are evicted, else
/// the least recently used one. A slot in use (a request or a refresh holds it) or that its
/// source keeps ([`UserSource::keep_slot`]; a [`StoredUser`] with a pair not yet written, or a
/// fetch running) is not evicted; the map grows past its bound meanwhile.
///
/// A request without [`OpenId`] fails with [`Error::MissingOpenId`]. Errors of a user's
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
        lock(&self.slots.map).len()
    }

    /// Whether a slot for `open_id` is held now.
    pub fn has_user(&self, open_id: &str) -> bool {
        lock(&self.slots.map).contains_key(open_id)
    }

    /// The token cached for `open_id`, if its slot is held and has one. Handle with care.
    pub fn cached_token(&self, open_id: &str) -> Option<Token> {
        let cache = lock(&self.slots.map)
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
        }
    }

    /// Builds the layer.
    pub fn build(self) -> UserTokenLayer<C> {
        let (shared, config, format) = self.base.build_parts();
        UserTokenLayer {
            shared,
            slots: Arc::new(Slots {
                map: Mutex::new(HashMap::new()),
                factory: self.factory,
                config,
                format,
                max_users: self.max_users,
                idle_timeout: self.idle_timeout,
            }),
        }
    }
}

/// The service [`UserTokenLayer`] makes: [`DouyinAuth`](crate::DouyinAuth) with the token of
/// each request's user ([`OpenId`]). The inner service must be `Clone`, as for `DouyinAuth`.
pub struct DouyinUserAuth<S, C = DouyinExpiry> {
    inner: S,
    shared: Arc<Shared<C>>,
    slots: Arc<Slots>,
}

impl<S: Clone, C> Clone for DouyinUserAuth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for DouyinUserAuth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinUserAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for DouyinUserAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: ReplayBody,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Error;
    type Future = UserResponseFuture<S, ReqBody, ResBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Service(e.into()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let inner = match req.extensions().get::<OpenId>() {
            Some(id) => {
                let cache = self.slots.cache_for(&id.0);
                ResponseFuture::start(&mut self.inner, &self.shared, Lookup::User(cache), req)
            }
            None => ResponseFuture::failed(&self.shared, Error::MissingOpenId),
        };
        UserResponseFuture { inner }
    }
}

pin_project! {
    /// The response future of [`DouyinUserAuth`].
    #[must_use = "futures do nothing unless polled"]
    pub struct UserResponseFuture<S, ReqBody, ResBody, C>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        inner: ResponseFuture<S, ReqBody, ResBody, C>,
    }
}

impl<S, ReqBody, ResBody, C> fmt::Debug for UserResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody, C> Future for UserResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: ReplayBody,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    type Output = Result<Response<ResponseBody<ResBody>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(surface)
    }
}

/// Lifts the errors a user's caller acts on (reauthorise, a failed write, the store) from
/// behind a failed refresh to the top.
fn surface(e: Error) -> Error {
    let shared = match &e {
        Error::TokenSource(s) => s.clone(),
        Error::Backoff { last, .. } => last.clone(),
        _ => return e,
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(shared.get_ref());
    while let Some(x) = cur {
        match x.downcast_ref::<Error>() {
            Some(Error::ReauthorizationRequired { open_id, cause }) => {
                return Error::ReauthorizationRequired {
                    open_id: open_id.clone(),
                    cause: cause.clone(),
                };
            }
            Some(Error::Persist(_)) => return Error::Persist(Box::new(shared)),
            Some(Error::Store(_)) => return Error::Store(Box::new(shared)),
            _ => {}
        }
        cur = x.source();
    }
    e
}

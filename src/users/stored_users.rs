//! [`StoredUsers`]: the users' tokens kept in a [`TokenStore`], as a [`UserSource`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::source::{KeepSlot, UserSource};
use super::stored_user::{StoredUser, UserInner};
use crate::douyin::{HttpClient, DEFAULT_BASE_URL, DEFAULT_RENEW_WINDOW};
use crate::error::Error;
use crate::store::shared::timed;
use crate::store::{
    TokenStore, DEFAULT_LEASE_TTL, DEFAULT_MAX_WAIT, DEFAULT_MIN_REMAINING, DEFAULT_POLL_INTERVAL,
    DEFAULT_STORE_TIMEOUT,
};
use crate::sync::lock;
use crate::token::Secret;
use crate::token::Token;

pub(crate) struct UsersConfig<C, St> {
    pub(crate) client_key: String,
    pub(crate) client_secret: Secret,
    pub(crate) client: C,
    pub(crate) base_url: String,
    pub(crate) renew_window: Duration,
    pub(crate) store: Arc<St>,
    pub(crate) lease_ttl: Duration,
    pub(crate) poll: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) min_remaining: Duration,
    pub(crate) store_timeout: Duration,
    /// The users' states alive now (held by a slot, a fetch or a background retry), so that a
    /// user's source made again (after its slot was evicted) shares the state of the one before:
    /// its unsaved pair, its last token.
    pub(crate) live: Mutex<HashMap<String, Weak<UserInner<C, St>>>>,
}

/// Users' tokens kept in a [`TokenStore`] and refreshed from it: the [`UserSource`] for apps
/// that act for many Douyin users.
///
/// Store a user's tokens with [`save`](Self::save) after the OAuth code exchange; from then on
/// each user's [`StoredUser`] source reads them from the store, refreshes the access token
/// (and renews the refresh token before it dies, as [`UserTokens`](crate::douyin::UserTokens) does) under the user's
/// lease, and writes every new pair to the store before it is used. Keys are
/// `user:<open_id>`, never a secret.
///
/// Clones share the settings and the store. Its `Debug` shows the `client_key`, never the
/// `client_secret`.
pub struct StoredUsers<C, St> {
    pub(crate) config: Arc<UsersConfig<C, St>>,
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

    /// Users of the app `oauth` belongs to, refreshed with its `client_key`, `client_secret`,
    /// HTTP client and base URL, their tokens kept in `store`: the app's settings given once,
    /// to the [`OAuthClient`](crate::douyin::OAuthClient) that exchanges the codes.
    ///
    /// ```
    /// # #[cfg(feature = "https")] {
    /// use douyin_auth::douyin::OAuthClient;
    /// use douyin_auth::store::MemoryStore;
    /// use douyin_auth::users::StoredUsers;
    ///
    /// let oauth = OAuthClient::new("your_client_key", "your_client_secret")
    ///     .base_url("https://open.douyin.com");
    /// let users = StoredUsers::from_oauth(&oauth, MemoryStore::new());
    /// assert!(format!("{users:?}").contains("your_client_key"));
    /// assert!(!format!("{users:?}").contains("your_client_secret"));
    /// # }
    /// ```
    pub fn from_oauth(oauth: &crate::douyin::OAuthClient<C>, store: St) -> Self
    where
        C: Clone,
    {
        let (secret, client, base_url) = oauth.settings();
        Self::with_client(oauth.client_key(), secret.expose(), client.clone(), store)
            .base_url(base_url)
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
    /// (default [`DEFAULT_RENEW_WINDOW`]); see [`UserTokens::renew_window`](crate::douyin::UserTokens::renew_window).
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

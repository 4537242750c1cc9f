//! [`StoredUser`]: one user's tokens read from, refreshed under the lease of, and written to a store.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::stored_users::UsersConfig;
use crate::douyin::{HttpClient, UserTokens};
use crate::error::{BoxError, Error};
use crate::source::TokenSource;
use crate::store::shared::{jittered, timed, while_leased, LeaseGuard};
use crate::store::{Lease, TokenStore};
use crate::sync::lock;
use crate::token::{Provenance, Token};

pub(crate) struct UserInner<C, St> {
    pub(crate) open_id: String,
    pub(crate) key: String,
    pub(crate) config: Arc<UsersConfig<C, St>>,
    /// The user's refresh state; held for the whole of a fetch, so fetches of this slot run
    /// one at a time.
    pub(crate) tokens: tokio::sync::Mutex<Option<UserTokens<C>>>,
    /// The lease the persistence hook writes under, while a refresh runs.
    pub(crate) lease: Arc<Mutex<Option<Lease>>>,
    /// The token handed out last: not adopted again from the store.
    pub(crate) last: Mutex<Option<Token>>,
    /// A background retry of a failed write is running.
    pub(crate) retrying: AtomicBool,
    /// Fetches running now (a slot with one is not evicted).
    pub(crate) fetching: AtomicUsize,
    /// A refreshed pair may be waiting for the store (a slot with one is not evicted). Set after
    /// every fetch, and to true when a fetch is cancelled (until the retry it starts finds out).
    pub(crate) unsaved: AtomicBool,
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
pub(crate) struct Fetching<C: HttpClient, St: TokenStore> {
    pub(crate) user: StoredUser<C, St>,
    pub(crate) finished: bool,
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

/// One user's tokens from a [`TokenStore`]; made by [`StoredUsers`](crate::users::StoredUsers).
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
    pub(crate) inner: Arc<UserInner<C, St>>,
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
pub(crate) fn is_newer(stored: &Token, ours: &Token) -> bool {
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
pub(crate) fn is_other_live_pair(stored: &Token, seen: &[&Token]) -> bool {
    let (Some(refresh), Some(until)) = (stored.refresh_token(), stored.refresh_expires_at()) else {
        return false;
    };
    until > Instant::now() && seen.iter().all(|t| t.refresh_token() != Some(refresh))
}

/// Longest pause between background retries of a failed write.
pub(crate) const RETRY_CAP: Duration = Duration::from_secs(30);

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

    /// Hands out a pair read from the store, marked as adopted (another instance, or the code
    /// exchange, wrote it).
    fn adopt(&self, stored: Token) -> Token {
        self.hand_out(stored.with_provenance(Provenance::Adopted))
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
                    return Ok(self.adopt(t));
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
                    return Ok(self.adopt(t));
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
                        Ok(t.with_provenance(Provenance::Adopted))
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

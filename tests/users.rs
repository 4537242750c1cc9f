//! Many users: per-user slots with their own single-flight refresh, a bounded slot map,
//! stored tokens written before they are used (with a failing store), reauthorisation.
#![cfg(all(feature = "mock", feature = "https"))]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use douyin_auth::douyin::HttpsClient;
use douyin_auth::mock::{MockDouyin, UserGrant};
use douyin_auth::store::{Lease, MemoryStore, TokenStore};
use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
use douyin_auth::{BoxError, Error, Token, TokenSource};
use futures_util::future::join_all;
use support::*;
use tower::{Layer, ServiceExt};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn user_req(open_id: &str) -> Req {
    let mut r = req("");
    r.extensions_mut().insert(OpenId::new(open_id));
    r
}

/// A user's stored pair as the app saves it after the code exchange: the access token has
/// `access_left`, the refresh token `refresh_left`.
fn stored(grant: &UserGrant, access_left: Duration, refresh_left: Duration) -> Token {
    Token::new(grant.access_token.clone(), access_left)
        .with_open_id(grant.open_id.clone())
        .with_refresh_token(grant.refresh_token.clone(), refresh_left)
        .with_scopes(grant.scopes.clone())
}

fn users<St: TokenStore>(mock: &MockDouyin, store: St) -> StoredUsers<HttpsClient, St> {
    StoredUsers::new(mock.client_key(), mock.client_secret(), store)
        .base_url(mock.base_url())
        .poll_interval(Duration::from_millis(10))
}

/// A mock with one user who authorised the app, and a memory store holding that user's pair
/// with `access_left` and `refresh_left` to live.
async fn saved_user(
    open_id: &str,
    access_left: Duration,
    refresh_left: Duration,
) -> (MockDouyin, MemoryStore, UserGrant) {
    let mock = MockDouyin::start().await.unwrap();
    let store = MemoryStore::new();
    let g = mock.issue_user_tokens(open_id, ["user_info"]);
    users(&mock, store.clone())
        .save(&stored(&g, access_left, refresh_left))
        .await
        .unwrap();
    (mock, store, g)
}

/// A memory store whose writes fail while `fail` is set, or land and then report a failure (the
/// answer lost) while `lose_answer` is set.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
    lose_answer: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl TokenStore for FlakyStore {
    async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
        self.inner.put(key, token).await
    }
    async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
        self.inner.try_lease(key, ttl).await
    }
    async fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> Result<bool, BoxError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("disk full".into());
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let written = self.inner.put_if_leased(key, lease, token).await?;
        if self.lose_answer.load(Ordering::SeqCst) {
            return Err("connection reset".into());
        }
        Ok(written)
    }
    async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
        self.inner.extend(key, lease, ttl).await
    }
    async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
        self.inner.release(key, lease).await
    }
}

#[tokio::test]
async fn each_user_has_one_refresh_in_flight_and_users_do_not_wait_for_each_other() {
    let (slow, gate) = Scripted::new(Duration::from_secs(3600)).gated();
    let fast = Scripted::new(Duration::from_secs(3600));
    let (s, f) = (slow.clone(), fast.clone());
    let layer = UserTokenLayer::new(move |open_id: &str| {
        if open_id == "slow" {
            s.clone()
        } else {
            f.clone()
        }
    });
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| json("{}")));

    let slow_calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(user_req("slow"))))
        .collect();
    settle().await;
    // The slow user's refresh is stuck; the fast user's requests go through meanwhile.
    for _ in 0..5 {
        svc.clone().oneshot(user_req("fast")).await.unwrap();
    }
    assert_eq!(fast.fetches(), 1);
    assert_eq!(slow.fetches(), 1);
    assert_eq!(rec.count(), 5);
    gate.add_permits(1);
    for c in slow_calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(slow.fetches(), 1);
    assert_eq!(rec.count(), 10);
    assert_eq!(layer.users(), 2);
}

/// The retry after an expiry answer acts for the same user as the first send: both carry the
/// request's `OpenId` (the layer's copy of the request leaves it out and puts it back).
#[tokio::test]
async fn the_retry_carries_the_users_open_id() {
    let layer = UserTokenLayer::new(|_: &str| Scripted::new(Duration::from_secs(3600)));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let inner = tower::service_fn(move |r: Req| {
        let mut log = log.lock().unwrap();
        log.push(r.extensions().get::<OpenId>().map(|id| id.0.clone()));
        // The first request fetches the user's token; the second is sent with it cached.
        let answer = if log.len() == 2 {
            json(r#"{"data":{"error_code":2190008,"description":"access_token expired"}}"#)
        } else {
            json(r#"{"data":{"error_code":0}}"#)
        };
        async move { Ok::<_, std::convert::Infallible>(answer) }
    });
    let svc = layer.layer(inner);
    svc.clone().oneshot(user_req("o-1")).await.unwrap();
    let answer = svc.oneshot(user_req("o-1")).await.unwrap();
    assert!(body_string(answer.into_body())
        .await
        .contains(r#""error_code":0"#));
    let user = Some(String::from("o-1"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![user.clone(), user.clone(), user]
    );
}

#[tokio::test]
async fn a_request_without_a_user_fails_typed() {
    let layer = UserTokenLayer::new(|_: &str| Scripted::new(Duration::from_secs(60)));
    let rec = Recorder::new();
    let err = layer
        .layer(rec.service(|_, _| json("{}")))
        .oneshot(req(""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingOpenId), "{err:?}");
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn the_slot_map_is_bounded_and_evicts_the_least_recently_used() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let f = fetches.clone();
    let layer = UserTokenLayer::builder(move |open_id: &str| {
        let f = f.clone();
        let open_id = open_id.to_owned();
        douyin_auth::source_fn(move || {
            f.fetch_add(1, Ordering::SeqCst);
            let t = Token::new(format!("act.{open_id}"), Duration::from_secs(3600));
            async move { Ok::<_, BoxError>(t) }
        })
    })
    .max_users(2)
    .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| json("{}")));
    for user in ["a", "b", "a", "c"] {
        svc.clone().oneshot(user_req(user)).await.unwrap();
    }
    assert_eq!(layer.users(), 2);
    // "b" was the least recently used.
    assert!(layer.has_user("a") && layer.has_user("c") && !layer.has_user("b"));
    assert_eq!(rec.tokens(), ["act.a", "act.b", "act.a", "act.c"]);
    // Back again: a new slot, a new fetch.
    svc.clone().oneshot(user_req("b")).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 4);
    assert_eq!(layer.users(), 2);
}

#[tokio::test]
async fn stored_users_refresh_once_per_user_across_instances() {
    let mock = MockDouyin::start().await.unwrap();
    let store = MemoryStore::new();
    let grants: Vec<_> = ["u1", "u2"]
        .iter()
        .map(|u| mock.issue_user_tokens(*u, ["user_info"]))
        .collect();
    let seed = users(&mock, store.clone());
    for g in &grants {
        // Access token used up, refresh token near its end: refresh and renew.
        seed.save(&stored(g, Duration::ZERO, DAY)).await.unwrap();
    }
    // Four instances (separate layers) sharing the store, four requests per user each.
    let rec = Recorder::new();
    let mut calls = Vec::new();
    for _ in 0..4 {
        let svc =
            UserTokenLayer::new(users(&mock, store.clone())).layer(rec.service(|_, _| json("{}")));
        for g in &grants {
            for _ in 0..4 {
                calls.push(svc.clone().oneshot(user_req(&g.open_id)));
            }
        }
    }
    for r in join_all(calls).await {
        r.unwrap();
    }
    let c = mock.counters();
    assert_eq!((c.refresh_calls, c.renew_calls), (2, 2), "{c:?}");
    // The stored pairs are the new ones, with the renewed refresh tokens.
    for g in &grants {
        let t = store
            .get(&StoredUsers::<HttpsClient, MemoryStore>::key_for(
                &g.open_id,
            ))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(t.refresh_token(), Some(g.refresh_token.as_str()));
        assert!(t.refresh_expires_in().unwrap() > 20 * DAY);
        assert!(t.remaining() > 14 * DAY);
    }
    assert_eq!(rec.count(), 32);
}

#[tokio::test]
async fn a_refreshed_pair_is_written_before_use_and_a_failed_write_is_retried() {
    let mock = MockDouyin::start().await.unwrap();
    let store = FlakyStore::default();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let users = users(&mock, store.clone());
    users.save(&stored(&g, Duration::ZERO, DAY)).await.unwrap();
    let layer = UserTokenLayer::builder(users.clone())
        .options(|o| o.backoff(Duration::from_millis(10), Duration::from_millis(20)))
        .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| json("{}")));

    store.fail.store(true, Ordering::SeqCst);
    let err = svc.clone().oneshot(user_req("u1")).await.unwrap_err();
    assert!(matches!(err, Error::Persist(_)), "{err:?}");
    // Nothing was sent with the unwritten pair; Douyin was called once (renew + refresh).
    assert_eq!(rec.count(), 0);
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1));

    // The store heals: the pair kept in memory is written by the background retry, without
    // another call to Douyin.
    store.fail.store(false, Ordering::SeqCst);
    let key = StoredUsers::<HttpsClient, FlakyStore>::key_for("u1");
    let mut written = false;
    for _ in 0..500 {
        let t = store.inner.get(&key).await.unwrap().unwrap();
        if t.refresh_token() != Some(g.refresh_token.as_str()) {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(written, "the pending pair never reached the store");
    let res = svc.clone().oneshot(user_req("u1")).await;
    res.unwrap();
    let stored_now = store.inner.get(&key).await.unwrap().unwrap();
    assert_eq!(rec.tokens(), [stored_now.secret().to_owned()]);
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1));
}

#[tokio::test]
async fn a_dead_refresh_token_requires_reauthorization_naming_the_user() {
    let (mock, store, _) = saved_user("gone", Duration::ZERO, 20 * DAY).await;
    let users = users(&mock, store.clone());
    mock.revoke_user("gone");
    let svc = UserTokenLayer::new(users).layer(Recorder::new().service(|_, _| json("{}")));

    let err = svc.clone().oneshot(user_req("gone")).await.unwrap_err();
    let Error::ReauthorizationRequired { open_id, cause } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(open_id, "gone");
    assert_eq!(cause.as_ref().map(|d| d.code()), Some(10_010));

    // A user the store does not know: the same, without asking Douyin.
    let before = mock.counters().refresh_calls;
    let err = svc.clone().oneshot(user_req("stranger")).await.unwrap_err();
    assert!(
        matches!(&err, Error::ReauthorizationRequired { open_id, cause: None } if open_id == "stranger"),
        "{err:?}"
    );
    assert_eq!(mock.counters().refresh_calls, before);
}

#[tokio::test]
async fn a_user_token_written_by_another_instance_is_adopted() {
    let (mock, store, g) = saved_user("u1", Duration::from_secs(3600), 20 * DAY).await;
    let a = users(&mock, store.clone());
    let source = a.user("u1");
    // Fresh in the store: adopted, no call.
    assert_eq!(source.fetch().await.unwrap().secret(), g.access_token);
    assert_eq!(mock.counters().refresh_calls, 0);
    // Asked again (the cache found it stale or rejected): refreshed under the lease.
    let t = source.fetch().await.unwrap();
    assert_eq!(mock.counters().refresh_calls, 1);
    assert!(t.remaining() > 14 * DAY);
    // Another instance adopts that pair without a call.
    let b = users(&mock, store.clone()).user("u1");
    assert_eq!(b.fetch().await.unwrap(), t);
    assert_eq!(mock.counters().refresh_calls, 1);
}

/// With the defaults, an instance waiting for another's lease on a user gives up before the
/// layer's refresh timeout, so the caller sees the store error, not a refresh timeout.
#[tokio::test(start_paused = true)]
async fn with_the_defaults_a_waiting_instance_gives_up_before_the_refresh_timeout() {
    let store = MemoryStore::new();
    // No Douyin call happens: the pair needs a refresh, and the lease is another's.
    let users = StoredUsers::new("key", "secret", store.clone()).base_url("http://127.0.0.1:9");
    let pair = Token::new("act.old", Duration::from_secs(10))
        .with_open_id("u1")
        .with_refresh_token("rft.old", DAY);
    users.save(&pair).await.unwrap();
    let key = StoredUsers::<HttpsClient, MemoryStore>::key_for("u1");
    // Another instance took the user's lease with the default lifetime and died.
    store
        .try_lease(&key, douyin_auth::store::DEFAULT_LEASE_TTL)
        .await
        .unwrap()
        .unwrap();
    let svc = UserTokenLayer::new(users).layer(Recorder::new().service(|_, _| json("{}")));
    let started = tokio::time::Instant::now();
    let err = svc.oneshot(user_req("u1")).await.unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// A renewal and a refresh that together outlast the lease: the holder keeps its lease while it
/// works, so the other instance waits and adopts the new pair instead of refreshing with the
/// refresh token the holder consumed (which Douyin would answer with 10010).
#[tokio::test]
async fn a_holder_that_works_longer_than_its_lease_keeps_it() {
    let mock = MockDouyin::start().await.unwrap();
    let store = MemoryStore::new();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let lease = Duration::from_millis(300);
    let instance = || users(&mock, store.clone()).lease_ttl(lease).user("u1");
    let (a, b) = (instance(), instance());
    users(&mock, store.clone())
        .save(&stored(&g, Duration::ZERO, DAY))
        .await
        .unwrap();
    // Renew and refresh take 2 × 250 ms: longer than the 300 ms lease.
    mock.set_token_latency(Duration::from_millis(250));
    let (ta, tb) = tokio::join!(a.fetch(), b.fetch());
    let (ta, tb) = (ta.unwrap(), tb.unwrap());
    assert_eq!(ta, tb);
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1), "{c:?}");
    let key = StoredUsers::<HttpsClient, MemoryStore>::key_for("u1");
    assert_eq!(store.get(&key).await.unwrap().unwrap(), ta);
}

/// A pair whose write landed though the store reported a failure stays "unsaved" here; another
/// instance meanwhile renews from it. Writing the unsaved pair then would put a dead refresh
/// token back into the store: the newer stored pair is adopted instead.
#[tokio::test]
async fn an_unsaved_pair_never_overwrites_a_newer_stored_one() {
    let mock = MockDouyin::builder()
        .access_token_lifetime(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let store = FlakyStore::default();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let key = StoredUsers::<HttpsClient, FlakyStore>::key_for("u1");
    users(&mock, store.clone())
        .save(&stored(&g, Duration::ZERO, DAY))
        .await
        .unwrap();

    // A renews and refreshes; its write lands but the answer is lost.
    let a = users(&mock, store.clone()).user("u1");
    store.lose_answer.store(true, Ordering::SeqCst);
    let err = a.fetch().await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::Persist(_))),
        "{err:?}"
    );
    store.lose_answer.store(false, Ordering::SeqCst);
    store.fail.store(true, Ordering::SeqCst);
    assert!(a.has_unsaved().await);
    let a_pair = store.inner.get(&key).await.unwrap().unwrap();

    // B reads that pair (its access token is short-lived), renews and refreshes from it.
    let b = users(&mock, store.inner.clone())
        .renew_window(400 * DAY)
        .user("u1");
    let b_pair = b.fetch().await.unwrap();
    assert_ne!(b_pair.refresh_token(), a_pair.refresh_token());
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (2, 2), "{c:?}");

    // The store heals. A's unsaved pair (with the refresh token B's renewal killed) never
    // reaches it; A goes on from B's pair.
    store.fail.store(false, Ordering::SeqCst);
    let mut settled = false;
    for _ in 0..500 {
        if !a.has_unsaved().await {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(settled, "the unsaved pair is still waiting");
    let now = store.inner.get(&key).await.unwrap().unwrap();
    assert_eq!(now.refresh_token(), b_pair.refresh_token());
    let t = a.fetch().await.unwrap();
    assert_eq!(t.refresh_token(), b_pair.refresh_token());
}

/// Douyin answers 10010 for the refresh token this instance read, but a new pair was stored
/// meanwhile (the user authorised again): it is used instead of asking for reauthorisation.
#[tokio::test]
async fn a_dead_refresh_token_looks_at_the_store_again_before_giving_up() {
    let (mock, store, _) = saved_user("u1", Duration::ZERO, 20 * DAY).await;
    let users = users(&mock, store.clone());
    mock.set_token_latency(Duration::from_millis(200));
    let fetch = tokio::spawn({
        let b = users.user("u1");
        async move { b.fetch().await }
    });
    // While the refresh is on its way, the user revokes and authorises again.
    let mut asked = false;
    for _ in 0..500 {
        if mock.counters().refresh_calls == 1 {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(asked);
    mock.revoke_user("u1");
    let again = mock.issue_user_tokens("u1", ["user_info"]);
    users
        .save(&stored(&again, Duration::from_secs(3600), 20 * DAY))
        .await
        .unwrap();
    let t = fetch.await.unwrap().unwrap();
    assert_eq!(t.secret(), again.access_token);
    assert_eq!(mock.counters().refresh_calls, 1);
}

/// A user's source made again shares the state of the one alive: its unsaved pair is not
/// forgotten.
#[tokio::test]
async fn a_user_made_again_shares_the_unsaved_pair() {
    let mock = MockDouyin::start().await.unwrap();
    let store = FlakyStore::default();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let users = users(&mock, store.clone());
    users.save(&stored(&g, Duration::ZERO, DAY)).await.unwrap();
    store.fail.store(true, Ordering::SeqCst);
    let a = users.user("u1");
    a.fetch().await.unwrap_err();
    assert!(a.has_unsaved().await);
    assert!(users.user("u1").has_unsaved().await);
}

/// A full slot map never evicts a user whose refreshed pair is not written yet: the slot made
/// again would refresh from the store's pair, whose refresh token the renewal killed.
#[tokio::test]
async fn a_slot_with_an_unsaved_pair_is_not_evicted() {
    let mock = MockDouyin::start().await.unwrap();
    let store = FlakyStore::default();
    let g1 = mock.issue_user_tokens("u1", ["user_info"]);
    let g2 = mock.issue_user_tokens("u2", ["user_info"]);
    let users = users(&mock, store.clone());
    users.save(&stored(&g1, Duration::ZERO, DAY)).await.unwrap();
    users
        .save(&stored(&g2, Duration::from_secs(3600), 20 * DAY))
        .await
        .unwrap();
    let layer = UserTokenLayer::builder(users)
        .max_users(1)
        .options(|o| o.backoff(Duration::from_millis(10), Duration::from_millis(20)))
        .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| json("{}")));

    // u1's pair is renewed and refreshed, but its write fails: it is kept in memory.
    store.fail.store(true, Ordering::SeqCst);
    let err = svc.clone().oneshot(user_req("u1")).await.unwrap_err();
    assert!(matches!(err, Error::Persist(_)), "{err:?}");
    // u2 comes along with the map full: u1's slot stays.
    svc.clone().oneshot(user_req("u2")).await.unwrap();
    assert!(layer.has_user("u1"));
    assert_eq!(layer.users(), 2);

    // The store heals; u1 goes on with its pair, without another call and without 10010.
    store.fail.store(false, Ordering::SeqCst);
    let mut sent = false;
    for _ in 0..500 {
        if svc.clone().oneshot(user_req("u1")).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sent);
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1), "{c:?}");
    // Written now: the slot may go when the map needs room (once the background retry, if it
    // still runs, has found nothing to write).
    let mut evicted = false;
    for i in 0..500 {
        // A user the store does not know: refused, but it takes a slot.
        svc.clone()
            .oneshot(user_req(&format!("stranger{i}")))
            .await
            .unwrap_err();
        if !layer.has_user("u1") {
            evicted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(evicted);
}

/// A user source whose `keep_slot` check blocks until released, and says when it is entered:
/// an eviction that asks it waits there.
struct SlowKeep {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    released: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl douyin_auth::users::UserSource for SlowKeep {
    type Source = Scripted;

    fn source_for(&self, _open_id: &str) -> Scripted {
        Scripted::new(DAY)
    }

    fn keep_slot(&self, _source: &Scripted) -> Option<douyin_auth::users::KeepSlot> {
        let entered = self.entered.lock().unwrap().clone();
        let released = Arc::clone(&self.released);
        Some(Box::new(move || {
            let _ = entered.send(());
            let (lock, cvar) = &*released;
            let mut done = lock.lock().unwrap();
            while !*done {
                done = cvar.wait(done).unwrap();
            }
            false
        }))
    }
}

/// A cached user's request never waits for the slot map: while an eviction is stuck in a
/// source's `keep_slot` check (user code), requests of users already cached go through.
#[test]
fn a_cached_users_request_does_not_wait_for_an_eviction() {
    use std::sync::mpsc;
    let (entered_tx, entered) = mpsc::channel();
    let released = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let layer = UserTokenLayer::builder(SlowKeep {
        entered: std::sync::Mutex::new(entered_tx),
        released: Arc::clone(&released),
    })
    .max_users(1)
    .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| json("{}")));
    let run = |svc: &_, open_id: &str| {
        let svc: douyin_auth::users::DouyinUserAuth<_> = Clone::clone(svc);
        let req = user_req(open_id);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(svc.oneshot(req))
            .map(|_| ())
    };
    run(&svc, "cached").unwrap();
    // A new user finds the map full: the eviction asks the cached user's source, and waits.
    let evicting = {
        let svc = svc.clone();
        std::thread::spawn(move || run(&svc, "new"))
    };
    // A watchdog, not a synchronisation: the eviction must get this far.
    entered
        .recv_timeout(Duration::from_secs(30))
        .expect("the eviction asked the source");
    let (done_tx, done) = mpsc::channel();
    let cached = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(run(&svc, "cached"));
        })
    };
    let answered = done.recv_timeout(Duration::from_secs(30));
    let (lock, cvar) = &*released;
    *lock.lock().unwrap() = true;
    cvar.notify_all();
    evicting.join().unwrap().unwrap();
    cached.join().unwrap();
    assert!(
        matches!(answered, Ok(Ok(()))),
        "a cached user's request waited for the eviction: {answered:?}"
    );
}

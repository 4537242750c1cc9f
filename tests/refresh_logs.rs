//! The refresh logs say where each token came from: `outcome` is `fetched` (the source asked
//! Douyin), `adopted` (read from a store: another instance, or an earlier run, fetched it),
//! `unchanged` (the source handed back the token the cache had) or `error`; a user's refresh
//! names the user's `open_id`. No secret in any of them.
//!
//! The subscriber is global (tracing caches whether a call site is wanted across threads, so a
//! per-thread subscriber misses call sites another test hit first); each test reads the lines
//! written on its own thread, which is where its current-thread runtime runs the refresh tasks.
#![cfg(all(feature = "mock", feature = "https"))]

mod support;

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use douyin_auth::douyin::UserTokens;
use douyin_auth::store::{MemoryStore, SharedSource};
use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
use douyin_auth::{source_fn, BoxError, DouyinAuthLayer, Token, TokenSource};
use support::*;
use tower::{Layer, ServiceExt};

const DAY: Duration = Duration::from_secs(24 * 3600);

thread_local! {
    static LOG: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes to the log of the thread that emits the event.
struct ThreadLog;

impl io::Write for ThreadLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOG.with(|log| log.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber once and empties this thread's log.
fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadLog)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        tracing::callsite::rebuild_interest_cache();
    });
    LOG.with(|log| log.borrow_mut().clear());
}

fn log() -> String {
    LOG.with(|log| String::from_utf8_lossy(&log.borrow()).into_owned())
}

/// The `token refresh finished` and `token refresh failed` lines, in order.
fn refresh_lines() -> Vec<String> {
    log()
        .lines()
        .filter(|l| l.contains("token refresh finished") || l.contains("token refresh failed"))
        .map(str::to_owned)
        .collect()
}

fn outcome_of(line: &str) -> &str {
    let rest = line
        .split_once("outcome=\"")
        .unwrap_or_else(|| panic!("no outcome in {line}"))
        .1;
    rest.split('"').next().unwrap()
}

fn assert_no_secret(secrets: &[&str]) {
    let log = log();
    for s in secrets {
        assert!(!log.contains(s), "secret {s:?} in the log:\n{log}");
    }
}

/// A source that counts its fetches and hands out `act.N`.
fn counting(fetches: &Arc<AtomicUsize>) -> impl TokenSource + Clone {
    let fetches = Arc::clone(fetches);
    source_fn(move || {
        let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, BoxError>(Token::new(format!("clt.secret-{n}"), DAY)) }
    })
}

fn user_req(open_id: &str) -> Req {
    let mut r = req("");
    r.extensions_mut().insert(OpenId::new(open_id));
    r
}

#[tokio::test]
async fn a_token_the_source_fetched_is_logged_as_fetched() {
    capture();
    let fetches = Arc::default();
    let client =
        DouyinAuthLayer::new(counting(&fetches)).layer(Recorder::new().service(|_, _| text("ok")));
    client.oneshot(req("")).await.unwrap();
    let lines = refresh_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(outcome_of(&lines[0]), "fetched", "{}", lines[0]);
    assert!(!lines[0].contains("open_id"), "{}", lines[0]);
    assert_no_secret(&["clt.secret-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_hands_back_the_same_token_is_logged_as_unchanged() {
    capture();
    // A stable endpoint: the same token, whoever asks, while it is valid.
    let source = source_fn(|| async {
        Ok::<_, BoxError>(Token::new("clt.stable-secret", Duration::from_secs(7200)))
    });
    let client = DouyinAuthLayer::new(source).layer(Recorder::new().service(|_, _| text("ok")));
    client.clone().oneshot(req("")).await.unwrap();
    // Stale: served, and one background refresh, which brings the same token.
    tokio::time::advance(Duration::from_secs(7200 - 300)).await;
    client.oneshot(req("")).await.unwrap();
    settle().await;
    let lines = refresh_lines();
    let outcomes: Vec<_> = lines.iter().map(|l| outcome_of(l)).collect();
    assert_eq!(outcomes, ["fetched", "unchanged"], "{lines:?}");
    assert_no_secret(&["clt.stable-secret"]);
}

#[tokio::test]
async fn a_token_another_instance_stored_is_logged_as_adopted() {
    capture();
    let store = MemoryStore::new();
    let (a_fetches, b_fetches) = (Arc::default(), Arc::default());
    let a = SharedSource::new(counting(&a_fetches), store.clone(), "client_token:app");
    let b = SharedSource::new(counting(&b_fetches), store, "client_token:app");
    for source in [a, b] {
        DouyinAuthLayer::new(source)
            .layer(Recorder::new().service(|_, _| text("ok")))
            .oneshot(req(""))
            .await
            .unwrap();
    }
    assert_eq!(
        (
            a_fetches.load(Ordering::SeqCst),
            b_fetches.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
    let lines = refresh_lines();
    let outcomes: Vec<_> = lines.iter().map(|l| outcome_of(l)).collect();
    assert_eq!(outcomes, ["fetched", "adopted"], "{lines:?}");
    assert_no_secret(&["clt.secret-1"]);
}

#[tokio::test]
async fn a_user_refresh_names_the_user_whether_it_worked_or_not() {
    capture();
    let users = |open_id: &str| {
        let open_id = open_id.to_owned();
        source_fn(move || {
            let open_id = open_id.clone();
            async move {
                if open_id == "user-broken" {
                    return Err::<Token, BoxError>("the vault is sealed".into());
                }
                Ok(Token::new("act.user-secret", DAY).with_open_id(open_id))
            }
        })
    };
    let client = UserTokenLayer::new(users).layer(Recorder::new().service(|_, _| text("ok")));
    client.clone().oneshot(user_req("user-7")).await.unwrap();
    client.oneshot(user_req("user-broken")).await.unwrap_err();
    let lines = refresh_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("token refresh finished"), "{}", lines[0]);
    assert!(lines[0].contains("open_id=\"user-7\""), "{}", lines[0]);
    assert_eq!(outcome_of(&lines[0]), "fetched");
    assert!(lines[1].contains("token refresh failed"), "{}", lines[1]);
    assert!(lines[1].contains("open_id=\"user-broken\""), "{}", lines[1]);
    assert_eq!(outcome_of(&lines[1]), "error");
    assert_no_secret(&["act.user-secret"]);
}

#[tokio::test]
async fn a_users_pair_read_from_the_store_is_logged_as_adopted_with_the_user() {
    capture();
    let users = StoredUsers::new("key", "client-secret", MemoryStore::new());
    let pair = Token::new("act.stored-secret", 10 * DAY)
        .with_open_id("user-9")
        .with_refresh_token("rft.stored-secret", 20 * DAY);
    users.save(&pair).await.unwrap();
    let client = UserTokenLayer::new(users).layer(Recorder::new().service(|_, _| text("ok")));
    client.oneshot(user_req("user-9")).await.unwrap();
    let lines = refresh_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(outcome_of(&lines[0]), "adopted", "{}", lines[0]);
    assert!(lines[0].contains("open_id=\"user-9\""), "{}", lines[0]);
    assert_no_secret(&["act.stored-secret", "rft.stored-secret", "client-secret"]);
}

#[tokio::test]
async fn user_tokens_handing_out_the_stored_access_token_is_logged_as_adopted() {
    capture();
    let stored = Token::new("act.saved-secret", 10 * DAY)
        .with_open_id("user-3")
        .with_refresh_token("rft.saved-secret", 20 * DAY);
    let source = UserTokens::new("key", "client-secret", stored);
    DouyinAuthLayer::new(source)
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    let lines = refresh_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(outcome_of(&lines[0]), "adopted", "{}", lines[0]);
    // The token's own `open_id`, as the layer has no user of its own.
    assert!(lines[0].contains("open_id=\"user-3\""), "{}", lines[0]);
    assert_no_secret(&["act.saved-secret", "rft.saved-secret", "client-secret"]);
}

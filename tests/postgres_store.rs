//! User tokens in PostgreSQL: eight instances renew one user once, a renewer that dies costs
//! one lease time and never the user, lifetimes come from the database's clock across
//! reconnects, and backends terminated mid-run, or PostgreSQL restarted, lose no request and no
//! user.
//!
//! Against the machine's PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own reached through
//! the URL's `options=-c search_path=…`. Without the server the tests are skipped with a
//! reason, except under `CI=true`, where they fail. The restart case runs a server of its own
//! (`initdb` and `pg_ctl` as the `postgres` user, on a free loopback port).
#![cfg(all(feature = "postgres", feature = "mock", feature = "https"))]

#[path = "support/postgres.rs"]
mod pg_support;
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use douyin_auth::douyin::{ClientCredentials, HttpsClient};
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::{PostgresStore, SharedSource, TokenStore};
use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
use douyin_auth::{DouyinAuthLayer, Token};
use futures_util::future::join_all;
use pg_support::Schema;
use support::*;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const DAY: Duration = Duration::from_secs(86_400);

fn user_req(open_id: &str) -> Req {
    let mut r = req("");
    r.extensions_mut().insert(OpenId::new(open_id));
    r
}

fn users(mock: &MockDouyin, store: PostgresStore) -> StoredUsers<HttpsClient, PostgresStore> {
    StoredUsers::new(mock.client_key(), mock.client_secret(), store)
        .base_url(mock.base_url())
        .poll_interval(Duration::from_millis(20))
}

/// Polls `cond` every 10 ms for at most `limit`; true if it held.
async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_creates_the_table_in_the_urls_search_path() {
    let Some(schema) = Schema::create("connect").await else {
        return;
    };
    let store = schema.store().await;
    assert_eq!(store.table(), "douyin_auth_tokens");
    assert!(!format!("{store:?}").contains("5432"));
    // The table is in the test's schema (the URL's search_path), nowhere else.
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'douyin_auth_tokens'",
    )
    .fetch_all(schema.admin())
    .await
    .unwrap();
    assert!(schemas.contains(&schema.name), "{schemas:?}");
    // A second connect (another instance starting) finds it and keeps its rows.
    store
        .put("k", &Token::new("act.kept", Duration::from_secs(60)))
        .await
        .unwrap();
    let again = schema.store().await;
    assert_eq!(again.get("k").await.unwrap().unwrap().secret(), "act.kept");
    // Eight instances starting at once all get a store.
    let url = schema.url();
    let starts = join_all((0..8).map(|_| PostgresStore::connect(&url))).await;
    assert!(starts.iter().all(Result::is_ok));
    // A bad URL is an error that does not repeat it.
    let err = PostgresStore::connect("postgres://user:hunter2@127.0.0.1:1/x?sslmode=bogus")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(store.clone().with_table("bad name").is_err());
    schema.drop().await;
}

/// Eight instances (separate pools) act for one user whose access token is used up and whose
/// refresh token is near its end: one renewal and one refresh between them, every request
/// succeeds, and the stored pair is the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_renew_one_user_once() {
    let Some(schema) = Schema::create("eight").await else {
        return;
    };
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    users(&mock, schema.store().await)
        .save(
            &Token::new(g.access_token.clone(), Duration::ZERO)
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), DAY),
        )
        .await
        .unwrap();

    let rec = Recorder::new();
    let mut calls = Vec::new();
    for _ in 0..8 {
        let svc = UserTokenLayer::new(users(&mock, schema.store().await))
            .layer(rec.service(|_, _| json("{}")));
        calls.push(svc.oneshot(user_req("u1")));
    }
    for r in join_all(calls).await {
        r.unwrap();
    }
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1), "{c:?}");
    let stored = schema.store().await.get("user:u1").await.unwrap().unwrap();
    assert_ne!(stored.refresh_token(), Some(g.refresh_token.as_str()));
    assert_eq!(rec.count(), 8);
    assert!(rec.tokens().iter().all(|t| t == stored.secret()));
    // No lease is left behind.
    let leased: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".douyin_auth_tokens WHERE lease_id IS NOT NULL AND lease_expires_at > now()",
        schema.name
    ))
    .fetch_one(schema.admin())
    .await
    .unwrap();
    assert_eq!(leased, 0);
    schema.drop().await;
}

/// An instance takes the user's lease and dies (its runtime, pool and connections gone) while
/// its renewal waits for Douyin. Its lease ends by the database's clock; a new instance then
/// renews the user with the refresh token that is still in the store: no new authorisation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewer_that_dies_costs_one_lease_time_not_the_user() {
    let Some(schema) = Schema::create("dies").await else {
        return;
    };
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    users(&mock, schema.store().await)
        .save(
            &Token::new(g.access_token.clone(), Duration::ZERO)
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), DAY),
        )
        .await
        .unwrap();

    // The doomed process: its own runtime, its own pool. Douyin is slow to answer it.
    mock.set_token_latency(Duration::from_secs(30));
    let lease_ttl = Duration::from_millis(800);
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, base, key, secret) = (
        schema.url(),
        mock.base_url(),
        mock.client_key().to_owned(),
        mock.client_secret().to_owned(),
    );
    doomed.spawn(async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let users = StoredUsers::new(key, secret, store)
            .base_url(base)
            .lease_ttl(lease_ttl);
        let rec = Recorder::new();
        let _ = UserTokenLayer::new(users)
            .layer(rec.service(|_, _| json("{}")))
            .oneshot(user_req("u1"))
            .await;
    });
    // It holds the lease and its first token call is at Douyin.
    let c = || mock.counters();
    assert!(
        eventually(Duration::from_secs(10), || async {
            c().renew_calls + c().refresh_calls == 1
        })
        .await
    );
    let held: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".douyin_auth_tokens WHERE lease_id IS NOT NULL",
        schema.name
    ))
    .fetch_one(schema.admin())
    .await
    .unwrap();
    assert_eq!(held, 1);
    let died = Instant::now();
    doomed.shutdown_background();
    mock.set_token_latency(Duration::ZERO);

    // A new instance serves the user as soon as the dead lease has ended.
    let rec = Recorder::new();
    let svc = UserTokenLayer::new(users(&mock, schema.store().await).lease_ttl(lease_ttl))
        .layer(rec.service(|_, _| json("{}")));
    svc.oneshot(user_req("u1")).await.unwrap();
    let waited = died.elapsed();
    assert!(waited < lease_ttl + Duration::from_secs(3), "{waited:?}");
    let stored = schema.store().await.get("user:u1").await.unwrap().unwrap();
    assert_eq!(rec.tokens(), [stored.secret().to_owned()]);
    assert_ne!(stored.refresh_token(), Some(g.refresh_token.as_str()));
    assert!(stored.refresh_remaining().unwrap() > Duration::from_secs(29 * 86_400));
    schema.drop().await;
}

/// Tokens written, the store dropped (its pool closed), a new store connected: the same tokens,
/// with the lifetimes the database says they have left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_new_connection_with_the_databases_lifetimes() {
    let Some(schema) = Schema::create("survive").await else {
        return;
    };
    let first = schema.store().await;
    let user = Token::new("act.survivor", Duration::from_secs(100))
        .with_open_id("o1")
        .with_refresh_token("rft.survivor", Duration::from_secs(1000))
        .with_scopes(["user_info"]);
    let written = Instant::now();
    first.put("user:o1", &user).await.unwrap();
    first
        .put(
            "client_token:app",
            &Token::new("clt.survivor", Duration::from_secs(7200)),
        )
        .await
        .unwrap();
    first.pool().close().await;
    drop(first);

    let second = schema.store().await;
    let back = second.get("user:o1").await.unwrap().unwrap();
    let elapsed = written.elapsed();
    assert_eq!(back.secret(), "act.survivor");
    assert_eq!(back.refresh_token(), Some("rft.survivor"));
    assert_eq!(back.open_id(), Some("o1"));
    assert_eq!(back.scopes(), ["user_info"]);
    let left = back.remaining();
    assert!(
        left <= Duration::from_secs(100)
            && left + elapsed + Duration::from_millis(50) >= Duration::from_secs(100),
        "{left:?} after {elapsed:?}"
    );
    let refresh_left = back.refresh_remaining().unwrap();
    assert!(
        refresh_left <= Duration::from_secs(1000)
            && refresh_left + elapsed + Duration::from_millis(50) >= Duration::from_secs(1000)
    );
    let client = second.get("client_token:app").await.unwrap().unwrap();
    assert!(client.refresh_token().is_none());

    // The lifetime is the database's: a DBA moves the expiry, the store reports it.
    sqlx::query(&format!(
        "UPDATE \"{}\".douyin_auth_tokens SET access_expires_at = now() + interval '42 seconds' WHERE key = 'user:o1'",
        schema.name
    ))
    .execute(schema.admin())
    .await
    .unwrap();
    let left = second.get("user:o1").await.unwrap().unwrap().remaining();
    assert!(
        left <= Duration::from_secs(42) && left > Duration::from_secs(41),
        "{left:?}"
    );
    // An entry past both expiries is gone, and purged.
    sqlx::query(&format!(
        "UPDATE \"{}\".douyin_auth_tokens SET expires_at = now() - interval '1 second' WHERE key = 'client_token:app'",
        schema.name
    ))
    .execute(schema.admin())
    .await
    .unwrap();
    assert!(second.get("client_token:app").await.unwrap().is_none());
    assert_eq!(second.purge_expired().await.unwrap(), 1);
    assert_eq!(schema.raw_rows().await.len(), 1);
    schema.drop().await;
}

/// Two instances send requests in a loop, for a user whose access token lives 600 ms and for
/// the app's client token (1 s), while every connection of their pools is terminated
/// (`pg_terminate_backend`) again and again: every request gets a token, the user is never
/// lost (the stored pair keeps working), and the stores reconnect by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_lose_no_request_and_no_user() {
    let Some(schema) = Schema::create("terminate").await else {
        return;
    };
    let mock = MockDouyin::builder()
        .access_token_lifetime(Duration::from_millis(600))
        .client_token_lifetime(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    users(&mock, schema.store().await)
        .save(
            &Token::new(g.access_token.clone(), Duration::from_millis(600))
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), 20 * DAY),
        )
        .await
        .unwrap();

    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let store = schema.store().await;
        let user_svc =
            UserTokenLayer::new(users(&mock, store.clone())).layer(rec.service(|_, _| json("{}")));
        let creds = ClientCredentials::new(mock.client_key(), mock.client_secret())
            .base_url(mock.base_url());
        let app_svc = DouyinAuthLayer::builder(
            SharedSource::builder(creds, store, format!("client_token:{}", mock.client_key()))
                .poll_interval(Duration::from_millis(20))
                .build(),
        )
        .jitter(Duration::ZERO)
        .build()
        .layer(rec.service(|_, _| json("{}")));
        let (stop, sent) = (stop.clone(), sent.clone());
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = user_svc.clone().oneshot(user_req("u1")).await {
                    failures.push(format!("user: {e}"));
                }
                if let Err(e) = app_svc.clone().oneshot(req("")).await {
                    failures.push(format!("app: {e}"));
                }
                sent.fetch_add(2, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        }));
    }
    // Terminate every store connection every 150 ms for 4 s: through several refreshes.
    let mut terminated = 0;
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        terminated += schema.terminate_store_connections().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(terminated >= 10, "only {terminated} backends terminated");
    let c = mock.counters();
    assert!(
        c.refresh_calls >= 3,
        "the user was not refreshed during the run: {c:?}"
    );
    assert!(c.all_client_token_calls() >= 3, "{c:?}");
    assert!(sent.load(Ordering::SeqCst) > 100);
    // The user is still there and still works: a new instance serves them.
    let stored = schema.store().await.get("user:u1").await.unwrap().unwrap();
    let rec2 = Recorder::new();
    UserTokenLayer::new(users(&mock, schema.store().await))
        .layer(rec2.service(|_, _| json("{}")))
        .oneshot(user_req("u1"))
        .await
        .unwrap();
    assert_eq!(rec2.count(), 1);
    assert!(stored.refresh_token().is_some());
    schema.drop().await;
}

/// PostgreSQL itself restarted (`pg_ctl restart -m fast`, a server of the test's own) while two
/// instances send requests for a user and with the app's client token: every request gets a
/// token (the cached ones serve through the outage), the pools reconnect by themselves, the
/// user is refreshed through the restarted server, and the stored pair still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_loses_no_request_and_no_user() {
    let Some(pg) = pg_support::PrivatePostgres::start().await else {
        return;
    };
    let url = pg.url();
    let mock = MockDouyin::builder()
        .access_token_lifetime(Duration::from_secs(3))
        .client_token_lifetime(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let seed = PostgresStore::connect(&url).await.unwrap();
    users(&mock, seed.clone())
        .save(
            &Token::new(g.access_token.clone(), Duration::from_secs(3))
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), 20 * DAY),
        )
        .await
        .unwrap();

    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let store = PostgresStore::connect(&url).await.unwrap();
        let user_svc =
            UserTokenLayer::new(users(&mock, store.clone())).layer(rec.service(|_, _| json("{}")));
        let creds = ClientCredentials::new(mock.client_key(), mock.client_secret())
            .base_url(mock.base_url());
        let app_svc = DouyinAuthLayer::builder(
            SharedSource::builder(creds, store, format!("client_token:{}", mock.client_key()))
                .poll_interval(Duration::from_millis(20))
                .build(),
        )
        .jitter(Duration::ZERO)
        .build()
        .layer(rec.service(|_, _| json("{}")));
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = user_svc.clone().oneshot(user_req("u1")).await {
                    failures.push(format!("user: {e}"));
                }
                if let Err(e) = app_svc.clone().oneshot(req("")).await {
                    failures.push(format!("app: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = mock.counters().refresh_calls;
    pg.restart();
    let restarted = Instant::now();
    // The user is refreshed (read, leased, written) through the restarted server.
    assert!(
        eventually(Duration::from_secs(10), || async {
            mock.counters().refresh_calls > before
        })
        .await,
        "no refresh after the restart"
    );
    let fresh = PostgresStore::connect(&url).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let updated: Option<f64> = sqlx::query_scalar(
                "SELECT extract(epoch FROM now() - updated_at)::float8 FROM douyin_auth_tokens WHERE key = 'user:u1'",
            )
            .fetch_optional(fresh.pool())
            .await
            .ok()
            .flatten();
            updated.is_some_and(|age| age < restarted.elapsed().as_secs_f64())
        })
        .await,
        "the user's row was not written after the restart"
    );
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    // The stored pair works for a new instance; the old instances' pools reconnected.
    let stored = fresh.get("user:u1").await.unwrap().unwrap();
    let used = {
        let rec = Recorder::new();
        UserTokenLayer::new(users(&mock, fresh.clone()))
            .layer(rec.service(|_, _| json("{}")))
            .oneshot(user_req("u1"))
            .await
            .unwrap();
        rec.tokens()
    };
    assert_eq!(used.len(), 1);
    assert!(stored.refresh_token().is_some());
    assert!(
        seed.get("user:u1").await.unwrap().is_some(),
        "the seed pool did not reconnect"
    );
}

//! The client token shared by a fleet through Redis: one fetch for many instances, leases that
//! end, late writes rejected, Redis stopped, paused and restarted without losing a request.
//!
//! Ordinary cases use the machine's shared server (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`) with a unique key prefix per test; fault cases start a private
//! `redis-server` on a random loopback port. Without Redis the tests are skipped with a reason,
//! except under `CI=true`, where they fail.
#![cfg(all(feature = "redis", feature = "mock", feature = "https"))]

#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::{RedisConfig, RedisStore, SharedSource, TokenStore};
use douyin_auth::{BoxError, DouyinAuthLayer, Token, TokenSource};
use futures_util::future::join_all;
use redis_support::*;
use support::*;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// Counts fetches; hands out `<name>.<n>`; optionally waits at a gate first.
#[derive(Clone)]
struct Counting {
    name: &'static str,
    fetches: Arc<AtomicUsize>,
    lifetime: Duration,
    gate: Option<Arc<Semaphore>>,
}

impl Counting {
    fn new(name: &'static str, lifetime: Duration) -> Self {
        Self {
            name,
            fetches: Arc::default(),
            lifetime,
            gate: None,
        }
    }

    fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        self.gate = Some(gate.clone());
        (self, gate)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for Counting {
    async fn fetch(&self) -> Result<Token, BoxError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        Ok(Token::new(format!("{}.{n}", self.name), self.lifetime))
    }
}

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::open(
        RedisConfig::new(url)
            .key_prefix(prefix)
            .response_timeout(Duration::from_millis(150))
            .connection_timeout(Duration::from_millis(150)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_needing_a_token_at_once_cause_one_fetch() {
    let Some(url) = shared_url().await else {
        return;
    };
    let prefix = unique_prefix("eight");
    // One token endpoint, slow enough that all eight ask while the first fetch runs.
    let source = Counting::new("clt", Duration::from_secs(7200));
    let rec = Recorder::new();
    let mut calls = Vec::new();
    for _ in 0..8 {
        // Separate stores (connections), sources and layers: as separate processes would be.
        let shared = SharedSource::builder(
            source.clone(),
            store(&url, &prefix).await,
            "client_token:app",
        )
        .poll_interval(Duration::from_millis(20))
        .build();
        let svc = DouyinAuthLayer::new(shared).layer(rec.service(|_, _| json("{}")));
        calls.push(svc.oneshot(req("")));
    }
    for res in join_all(calls).await {
        res.unwrap();
    }
    assert_eq!(source.fetches(), 1);
    let tokens = rec.tokens();
    assert_eq!(tokens.len(), 8);
    assert!(tokens.iter().all(|t| t == "clt.1"), "{tokens:?}");
    // The lease is released; only the token is left.
    let left = keys(&url, &format!("{prefix}*")).await;
    assert_eq!(left, vec![format!("{prefix}{{client_token:app}}")]);
}

#[tokio::test]
async fn keys_use_the_prefix_and_never_hold_a_secret() {
    let Some(url) = shared_url().await else {
        return;
    };
    let prefix = unique_prefix("keys");
    let mock = MockDouyin::start().await.unwrap();
    let creds =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let redis = store(&url, &prefix).await;
    assert_eq!(redis.key_prefix(), prefix);
    assert!(!format!("{redis:?}").contains("6379"));
    let shared = SharedSource::client_token(creds, redis.clone());
    assert_eq!(shared.key(), format!("client_token:{}", mock.client_key()));
    let token = shared.fetch().await.unwrap();

    // While the lease is held, its key is under the prefix too.
    let lease = redis
        .try_lease("client_token:other", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let all = keys(&url, &format!("{prefix}*")).await;
    assert_eq!(all.len(), 2, "{all:?}");
    for key in &all {
        assert!(key.starts_with(&prefix));
        assert!(!key.contains(mock.client_secret()), "{key}");
        assert!(!key.contains(token.secret()), "{key}");
        assert!(!key.contains(lease.id()), "{key}");
    }
    redis.release("client_token:other", &lease).await.unwrap();
    assert_eq!(keys(&url, &format!("{prefix}*")).await.len(), 1);
    // Stored: the token with its lifetime; the client secret nowhere.
    let raw = raw_get(&url, &format!("{prefix}{{{}}}", shared.key()))
        .await
        .unwrap();
    assert!(raw.contains(token.secret()));
    assert!(!raw.contains(mock.client_secret()));
    // Another instance adopts it without a token call.
    let creds2 =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let other = SharedSource::client_token(creds2, store(&url, &prefix).await);
    let adopted = other.fetch().await.unwrap();
    assert_eq!(adopted, token);
    assert!(adopted.remaining() > Duration::from_secs(7000));
    assert_eq!(mock.counters().all_client_token_calls(), 1);
}

#[tokio::test]
async fn a_rejected_token_is_not_adopted_again() {
    let Some(url) = shared_url().await else {
        return;
    };
    let prefix = unique_prefix("rejected");
    let source = Counting::new("clt", Duration::from_secs(7200));
    let a = SharedSource::new(source.clone(), store(&url, &prefix).await, "k");
    let b = SharedSource::new(source.clone(), store(&url, &prefix).await, "k");
    assert_eq!(a.fetch().await.unwrap().secret(), "clt.1");
    assert_eq!(b.fetch().await.unwrap().secret(), "clt.1");
    // A's cache asks again (Douyin rejected clt.1): A fetches a new one, B adopts it.
    assert_eq!(a.fetch().await.unwrap().secret(), "clt.2");
    assert_eq!(b.fetch().await.unwrap().secret(), "clt.2");
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lease_holder_is_replaced_and_its_late_write_rejected() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let lease_ttl = Duration::from_millis(300);
    let (slow, gate) = Counting::new("slow", Duration::from_secs(7200)).gated();
    let a = SharedSource::builder(slow.clone(), store(&url, "p:").await, "k")
        .lease_ttl(lease_ttl)
        .poll_interval(Duration::from_millis(20))
        .build();
    let a_fetch = tokio::spawn({
        let a = a.clone();
        async move { a.fetch().await }
    });
    // A holds the lease and stalls in its token call.
    assert!(eventually(Duration::from_secs(2), || async { slow.fetches() == 1 }).await);
    assert_eq!(keys(&url, "p:{k}:lease").await.len(), 1);

    let fast = Counting::new("fast", Duration::from_secs(7200));
    let b = SharedSource::builder(fast.clone(), store(&url, "p:").await, "k")
        .lease_ttl(lease_ttl)
        .poll_interval(Duration::from_millis(20))
        .build();
    let started = Instant::now();
    let token = b.fetch().await.unwrap();
    assert_eq!(token.secret(), "fast.1");
    assert!(
        started.elapsed() >= lease_ttl / 2,
        "{:?}",
        started.elapsed()
    );

    // A wakes up late: its write is rejected and it adopts the newer stored token.
    gate.add_permits(1);
    let a_token = a_fetch.await.unwrap().unwrap();
    assert_eq!(a_token.secret(), "fast.1");
    let stored = store(&url, "p:").await.get("k").await.unwrap().unwrap();
    assert_eq!(stored.secret(), "fast.1");
    assert_eq!((slow.fetches(), fast.fetches()), (1, 1));
    redis.stop();
}

#[tokio::test]
async fn a_dead_lease_holder_costs_at_most_one_lease_time() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let lease_ttl = Duration::from_millis(400);
    // A process took the lease and died: nobody releases it.
    let dead = store(&url, "p:").await;
    dead.try_lease("k", lease_ttl).await.unwrap().unwrap();

    let source = Counting::new("clt", Duration::from_secs(7200));
    let b = SharedSource::builder(source.clone(), store(&url, "p:").await, "k")
        .lease_ttl(lease_ttl)
        .poll_interval(Duration::from_millis(20))
        .build();
    let started = Instant::now();
    assert_eq!(b.fetch().await.unwrap().secret(), "clt.1");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < lease_ttl * 2, "{waited:?}");
    assert_eq!(source.fetches(), 1);
}

/// Requests in a loop through two instances while Redis is stopped, restarted empty and
/// paused: every request is answered with a token, instances fall back to their own fetches
/// while Redis is away and share through it again when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_paused_and_restarted_loses_no_request() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let lifetime = Duration::from_millis(1200);
    let source = Counting::new("clt", lifetime);
    let rec = Recorder::new();
    let mut instances = Vec::new();
    let mut shared = Vec::new();
    for _ in 0..2 {
        let s = SharedSource::builder(source.clone(), store(&url, "p:").await, "k")
            .lease_ttl(Duration::from_millis(500))
            .poll_interval(Duration::from_millis(20))
            .store_timeout(Duration::from_millis(200))
            .build();
        shared.push(s.clone());
        let layer = DouyinAuthLayer::builder(s)
            .jitter(Duration::ZERO)
            .min_refresh_interval(Duration::from_millis(50))
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .build();
        instances.push(layer.layer(rec.service(|_, _| json("{}"))));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for svc in instances {
        let (stop, sent) = (stop.clone(), sent.clone());
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match svc.clone().oneshot(req("")).await {
                    Ok(_) => {}
                    Err(e) => failures.push(e.to_string()),
                }
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        }));
    }
    let token_in_redis = || {
        let url = url.clone();
        async move { raw_get(&url, "p:{k}").await.is_some() }
    };
    let through = lifetime * 3;

    // Normal: the token goes through Redis.
    assert!(eventually(Duration::from_secs(3), token_in_redis).await);

    // Stopped: refreshes fall back to each instance's own fetch.
    redis.stop();
    let before = source.fetches();
    tokio::time::sleep(through).await;
    assert!(source.fetches() > before, "no refresh while Redis was down");
    assert!(shared.iter().any(SharedSource::is_degraded));

    // Restarted with its data lost: the store is used again.
    redis.restart().await;
    assert!(
        eventually(through * 2, token_in_redis).await,
        "no recovery after restart"
    );
    assert!(
        eventually(through * 2, || async {
            shared.iter().all(|s| !s.is_degraded())
        })
        .await
    );

    // Paused: commands time out; fallback again.
    redis.pause();
    let before = source.fetches();
    tokio::time::sleep(through).await;
    assert!(
        source.fetches() > before,
        "no refresh while Redis was paused"
    );
    redis.resume();
    assert!(
        eventually(through * 2, || async {
            shared.iter().all(|s| !s.is_degraded())
        })
        .await
    );

    stop.store(true, Ordering::SeqCst);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(sent.load(Ordering::SeqCst) > 100);
    assert!(rec.tokens().iter().all(|t| t.starts_with("clt.")));
}

/// Eight instances (separate layers and connections) act for one user whose access token is
/// used up and whose refresh token is near its end: one renewal and one refresh between them,
/// and the new pair is in Redis before any request uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_instances_renew_one_user_once_through_redis() {
    use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
    let Some(url) = shared_url().await else {
        return;
    };
    let prefix = unique_prefix("users");
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let seed = StoredUsers::new(
        mock.client_key(),
        mock.client_secret(),
        store(&url, &prefix).await,
    )
    .base_url(mock.base_url());
    seed.save(
        &Token::new(g.access_token.clone(), Duration::ZERO)
            .with_open_id("u1")
            .with_refresh_token(g.refresh_token.clone(), Duration::from_secs(86_400)),
    )
    .await
    .unwrap();

    let rec = Recorder::new();
    let mut calls = Vec::new();
    for _ in 0..8 {
        let users = StoredUsers::new(
            mock.client_key(),
            mock.client_secret(),
            store(&url, &prefix).await,
        )
        .base_url(mock.base_url())
        .poll_interval(Duration::from_millis(20));
        let svc = UserTokenLayer::new(users).layer(rec.service(|_, _| json("{}")));
        let mut r = req("");
        r.extensions_mut().insert(OpenId::new("u1"));
        calls.push(svc.oneshot(r));
    }
    for r in join_all(calls).await {
        r.unwrap();
    }
    let c = mock.counters();
    assert_eq!((c.renew_calls, c.refresh_calls), (1, 1), "{c:?}");
    let stored = store(&url, &prefix)
        .await
        .get("user:u1")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.refresh_token(), Some(g.refresh_token.as_str()));
    assert!(rec.tokens().iter().all(|t| t == stored.secret()));
    let keys = keys(&url, &format!("{prefix}*")).await;
    assert_eq!(keys, vec![format!("{prefix}{{user:u1}}")]);
}

/// The lease holder extends its lease (compare and `PEXPIRE`); nobody else can.
#[tokio::test]
async fn only_the_holder_extends_its_lease() {
    let Some(url) = shared_url().await else {
        return;
    };
    let prefix = unique_prefix("extend");
    let redis = store(&url, &prefix).await;
    let short = Duration::from_millis(300);
    let a = redis.try_lease("k", short).await.unwrap().unwrap();
    let pttl = || async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("PTTL")
            .arg(format!("{prefix}{{k}}:lease"))
            .query_async::<i64>(&mut c)
            .await
            .unwrap()
    };
    assert!(redis
        .extend("k", &a, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(pttl().await > 50_000);
    // Another lease (a late holder whose lease ended) cannot extend it.
    redis.release("k", &a).await.unwrap();
    let b = redis.try_lease("k", short).await.unwrap().unwrap();
    assert!(!redis
        .extend("k", &a, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(pttl().await <= 300);
    // Nor can anybody once the lease has ended by itself.
    assert!(eventually(Duration::from_secs(3), || async { pttl().await < 0 }).await);
    assert!(!redis
        .extend("k", &b, Duration::from_secs(60))
        .await
        .unwrap());
    assert!(keys(&url, &format!("{prefix}*")).await.is_empty());
}

/// On a local three-node Redis Cluster: a token and its lease share a slot (the scripts run on
/// one node: no CROSSSLOT), users spread over the nodes, and eight instances connected with
/// `connect_cluster` share one client token fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_each_token_with_its_lease_and_shares_one_fetch() {
    let Some(cluster) = redis_cluster::PrivateCluster::start().await else {
        return;
    };
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes).await.unwrap();
    assert!(format!("{store:?}").contains("cluster: true"));
    assert!(!format!("{store:?}").contains(&cluster.ports[0].to_string()));

    // Thirty users, each written under its lease: every script finds both keys on one node.
    for i in 0..30 {
        let key = format!("user:open-id-{i}");
        let lease = store
            .try_lease(&key, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        let t = Token::new(format!("act.{i}"), Duration::from_secs(60))
            .with_open_id(format!("open-id-{i}"))
            .with_refresh_token(format!("rft.{i}"), Duration::from_secs(600));
        assert!(store.put_if_leased(&key, &lease, &t).await.unwrap());
        assert!(store
            .extend(&key, &lease, Duration::from_secs(20))
            .await
            .unwrap());
        let back = store.get(&key).await.unwrap().unwrap();
        assert_eq!(back.secret(), format!("act.{i}"));
        assert!(back.remaining() > Duration::from_secs(58));
        store.release(&key, &lease).await.unwrap();
        let token_key = format!("douyin-auth:{{{key}}}");
        assert_eq!(
            redis_cluster::keyslot(&urls[0], &token_key).await,
            redis_cluster::keyslot(&urls[0], &format!("{token_key}:lease")).await
        );
    }
    let per_node = cluster.keys_per_node().await;
    assert_eq!(per_node.iter().map(Vec::len).sum::<usize>(), 30);
    assert!(
        per_node.iter().filter(|k| !k.is_empty()).count() >= 2,
        "all users on one node: {per_node:?}"
    );

    // Eight instances, each with its own cluster connection, need a client token at once.
    let source = Counting::new("clt", Duration::from_secs(7200));
    let rec = Recorder::new();
    let mut calls = Vec::new();
    for _ in 0..8 {
        let shared = SharedSource::builder(
            source.clone(),
            RedisStore::connect_cluster(&nodes).await.unwrap(),
            "client_token:app",
        )
        .poll_interval(Duration::from_millis(20))
        .build();
        let svc = DouyinAuthLayer::new(shared).layer(rec.service(|_, _| json("{}")));
        calls.push(svc.oneshot(req("")));
    }
    for res in join_all(calls).await {
        res.unwrap();
    }
    assert_eq!(source.fetches(), 1);
    assert!(rec.tokens().iter().all(|t| t == "clt.1"));

    // No node answers: connecting fails, without the URL in the error.
    drop(cluster);
    let err = RedisStore::connect_cluster(&["redis://:hunter2@127.0.0.1:1"])
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

//! The metrics (feature `metrics`) through `metrics-util`'s debugging recorder: each one moves
//! when its event happens, with its documented labels, and no other moves with it. One test
//! function, because the recorder is global and its snapshots take what moved since the last.
#![cfg(all(
    feature = "metrics",
    feature = "mock",
    feature = "https",
    feature = "webhook"
))]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::metrics as m;
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::{Lease, MemoryStore, SharedSource, TokenStore};
use douyin_auth::{source_fn, BoxError, DouyinAuthLayer, DouyinError, Token, VerifyWebhookLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt};

/// What moved since the last snapshot: `name{label=value,…}` → counter increase, gauge value
/// or number of histogram samples (with the gauge's value kept aside).
#[derive(Debug, Default)]
struct Moved {
    counts: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
}

fn moved(snapshotter: &Snapshotter, seen: &mut BTreeSet<String>) -> Moved {
    let mut out = Moved::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        seen.insert(key.name().to_owned());
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(0) => {}
            DebugValue::Counter(n) => {
                out.counts.insert(name, n);
            }
            DebugValue::Histogram(v) if v.is_empty() => {}
            DebugValue::Histogram(v) => {
                out.counts.insert(name, v.len() as u64);
            }
            DebugValue::Gauge(g) => {
                out.gauges.insert(name, g.into_inner());
            }
        }
    }
    out
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// A store whose every operation fails.
#[derive(Clone)]
struct DownStore;

impl TokenStore for DownStore {
    async fn get(&self, _: &str) -> Result<Option<Token>, BoxError> {
        Err("store down".into())
    }
    async fn put(&self, _: &str, _: &Token) -> Result<(), BoxError> {
        Err("store down".into())
    }
    async fn try_lease(&self, _: &str, _: Duration) -> Result<Option<Lease>, BoxError> {
        Err("store down".into())
    }
    async fn put_if_leased(&self, _: &str, _: &Lease, _: &Token) -> Result<bool, BoxError> {
        Err("store down".into())
    }
    async fn extend(&self, _: &str, _: &Lease, _: Duration) -> Result<bool, BoxError> {
        Err("store down".into())
    }
    async fn release(&self, _: &str, _: &Lease) -> Result<(), BoxError> {
        Err("store down".into())
    }
}

#[tokio::test]
async fn each_metric_moves_when_its_event_happens() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let mut seen = BTreeSet::new();

    // A cold cache: the request waits for the one refresh, which succeeds.
    let mock = MockDouyin::start().await.unwrap();
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let client = DouyinAuthLayer::new(source).layer(http);
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let get = || {
        http::Request::get(url.as_str())
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let res = client.clone().oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    let now = moved(&snapshotter, &mut seen);
    assert_eq!(
        now.counts,
        counts(&[
            ("douyin_auth_refresh_duration_seconds{family=client,outcome=ok,source=ClientCredentials}", 1),
            ("douyin_auth_refreshes_total{family=client,outcome=ok,source=ClientCredentials}", 1),
            ("douyin_auth_token_wait_seconds{outcome=ok}", 1),
            ("douyin_auth_token_waits_total{outcome=ok}", 1),
        ])
    );
    let remaining =
        now.gauges["douyin_auth_token_remaining_seconds{family=client,source=ClientCredentials}"];
    assert!((7000.0..=7200.0).contains(&remaining), "{remaining}");
    // The expiry as a Unix time: what `expiry - time()` on a dashboard counts down from.
    let expires_at = now.gauges
        ["douyin_auth_token_expiry_timestamp_seconds{family=client,source=ClientCredentials}"];
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expires_at - (unix_now + remaining)).abs() < 5.0,
        "{expires_at} vs {unix_now} + {remaining}"
    );

    // A fresh token: nothing moves.
    let res = client.clone().oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(moved(&snapshotter, &mut seen).counts, counts(&[]));

    // Douyin says the token expired: one expiry answer, one refresh, one retry.
    mock.expire_all_tokens();
    let res = client.clone().oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    assert_eq!(
        moved(&snapshotter, &mut seen).counts,
        counts(&[
            ("douyin_auth_expiry_answers_total{}", 1),
            ("douyin_auth_refresh_duration_seconds{family=client,outcome=ok,source=ClientCredentials}", 1),
            ("douyin_auth_refreshes_total{family=client,outcome=ok,source=ClientCredentials}", 1),
            ("douyin_auth_retries_total{}", 1),
        ])
    );

    // A stale token (past its refresh margin, before its expiry margin) is served.
    let source = source_fn(|| async {
        Ok::<_, BoxError>(Token::new("clt.stale", Duration::from_secs(100)))
    });
    let layer = DouyinAuthLayer::builder(source)
        .refresh_margin(Duration::from_secs(50))
        .jitter(Duration::ZERO)
        .build();
    let svc = layer.layer(support::Recorder::new().service(|_, _| support::text("ok")));
    svc.clone().oneshot(support::req("")).await.unwrap();
    let first = layer.cached_token().unwrap().obtained_at();
    moved(&snapshotter, &mut seen);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(55)).await;
    svc.clone().oneshot(support::req("")).await.unwrap();
    // The background refresh the stale token started publishes its token, and records its
    // metrics in the same step, on this one-thread runtime.
    for _ in 0..10_000 {
        if layer.cached_token().unwrap().obtained_at() != first {
            break;
        }
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
    assert_eq!(
        moved(&snapshotter, &mut seen).counts,
        counts(&[
            (
                "douyin_auth_refresh_duration_seconds{family=other,outcome=ok,source=FnSource}",
                1
            ),
            (
                "douyin_auth_refreshes_total{family=other,outcome=ok,source=FnSource}",
                1
            ),
            (
                "douyin_auth_stale_served_total{family=other,source=FnSource}",
                1
            ),
        ])
    );

    // A newer token another instance stored, picked up by the background re-read: the
    // lifetime gauges follow it, without a refresh.
    let store = MemoryStore::new();
    let ours = source_fn(|| async {
        Ok::<_, BoxError>(Token::new("clt.ours", Duration::from_secs(3600)))
    });
    let shared = SharedSource::new(ours, store.clone(), "client_token:reread");
    let layer = DouyinAuthLayer::new(shared.clone());
    layer
        .layer(support::Recorder::new().service(|_, _| support::text("ok")))
        .oneshot(support::req(""))
        .await
        .unwrap();
    let gauge = |moved: &Moved, name: &str| {
        moved.gauges[&format!("{name}{{family=other,source=SharedSource}}")]
    };
    let before = moved(&snapshotter, &mut seen);
    assert!(gauge(&before, m::TOKEN_REMAINING) <= 3600.0);
    store
        .put(
            "client_token:reread",
            &Token::new("clt.theirs", Duration::from_secs(7200)),
        )
        .await
        .unwrap();
    tokio::time::pause();
    shared
        .reread_every(&layer, Duration::from_secs(10))
        .unwrap();
    // The re-read task starts its first sleep; then its interval passes.
    support::settle().await;
    tokio::time::advance(Duration::from_secs(20)).await;
    for _ in 0..10_000 {
        if layer.cached_token().unwrap().secret() == "clt.theirs" {
            break;
        }
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
    let after = moved(&snapshotter, &mut seen);
    assert_eq!(after.counts, counts(&[]), "no refresh");
    let remaining = gauge(&after, m::TOKEN_REMAINING);
    assert!((7100.0..=7200.0).contains(&remaining), "{remaining}");
    let expiry_moved = gauge(&after, m::TOKEN_EXPIRY) - gauge(&before, m::TOKEN_EXPIRY);
    assert!((3500.0..=3620.0).contains(&expiry_moved), "{expiry_moved}");
    drop(layer);

    // A failing source: a failed refresh, a back-off, a request that waited in vain.
    let failing = source_fn(|| async { Err::<Token, BoxError>("the vault is sealed".into()) });
    let svc = DouyinAuthLayer::new(failing)
        .layer(support::Recorder::new().service(|_, _| support::text("ok")));
    svc.oneshot(support::req("")).await.unwrap_err();
    assert_eq!(
        moved(&snapshotter, &mut seen).counts,
        counts(&[
            (
                "douyin_auth_backoffs_total{family=other,reason=failure,source=FnSource}",
                1
            ),
            (
                "douyin_auth_refresh_duration_seconds{family=other,outcome=error,source=FnSource}",
                1
            ),
            (
                "douyin_auth_refreshes_total{family=other,outcome=error,source=FnSource}",
                1
            ),
            ("douyin_auth_token_wait_seconds{outcome=error}", 1),
            ("douyin_auth_token_waits_total{outcome=error}", 1),
        ])
    );
    // Rate limited: the back-off says so.
    let limited = source_fn(|| async {
        Err::<Token, BoxError>(DouyinError::new(10_020, "too many calls", None).into())
    });
    let svc = DouyinAuthLayer::new(limited)
        .layer(support::Recorder::new().service(|_, _| support::text("ok")));
    svc.oneshot(support::req("")).await.unwrap_err();
    let now = moved(&snapshotter, &mut seen);
    assert_eq!(
        now.counts
            .get("douyin_auth_backoffs_total{family=other,reason=rate_limited,source=FnSource}"),
        Some(&1),
        "{now:?}"
    );

    // A store that is down: its error counted by operation; the client token comes anyway.
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let shared = SharedSource::new(source, DownStore, "client_token:test");
    let client = DouyinAuthLayer::new(shared)
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let res = client.oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    let now = moved(&snapshotter, &mut seen);
    let store_errors: Vec<_> = now
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with(m::STORE_ERRORS))
        .collect();
    assert_eq!(store_errors.len(), 1, "{now:?}");
    assert_eq!(*store_errors[0].1, 1, "{now:?}");
    assert_eq!(
        now.counts
            .get("douyin_auth_refreshes_total{family=client,outcome=ok,source=SharedSource}"),
        Some(&1),
        "{now:?}"
    );

    // Webhook calls without a signature are refused, by reason.
    let inner = tower::service_fn(|_: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::<Bytes>::default()))
    });
    let webhook = VerifyWebhookLayer::new("webhook_secret_value").layer(inner);
    let request = http::Request::post("/")
        .body(Full::new(Bytes::from_static(br#"{"event":"x"}"#)))
        .unwrap();
    let answer = webhook.oneshot(request).await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(
        moved(&snapshotter, &mut seen).counts,
        counts(&[(
            "douyin_auth_webhook_rejections_total{kind=webhook,reason=missing_signature}",
            1
        )])
    );

    // The reqwest middleware records what the layer records: the wait of a cold cache, then an
    // expiry answer and its retry.
    #[cfg(feature = "reqwest-middleware")]
    {
        let source = ClientCredentials::new(mock.client_key(), mock.client_secret())
            .base_url(mock.base_url());
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(douyin_auth::DouyinAuthMiddleware::new(source))
            .build();
        let res = client.get(url.as_str()).send().await.unwrap();
        assert!(res.status().is_success());
        res.bytes().await.unwrap();
        assert_eq!(
            moved(&snapshotter, &mut seen).counts,
            counts(&[
                ("douyin_auth_refresh_duration_seconds{family=client,outcome=ok,source=ClientCredentials}", 1),
                ("douyin_auth_refreshes_total{family=client,outcome=ok,source=ClientCredentials}", 1),
                ("douyin_auth_token_wait_seconds{outcome=ok}", 1),
                ("douyin_auth_token_waits_total{outcome=ok}", 1),
            ])
        );
        mock.expire_all_tokens();
        let res = client.get(url.as_str()).send().await.unwrap();
        assert!(res.status().is_success());
        res.bytes().await.unwrap();
        assert_eq!(
            moved(&snapshotter, &mut seen).counts,
            counts(&[
                ("douyin_auth_expiry_answers_total{}", 1),
                ("douyin_auth_refresh_duration_seconds{family=client,outcome=ok,source=ClientCredentials}", 1),
                ("douyin_auth_refreshes_total{family=client,outcome=ok,source=ClientCredentials}", 1),
                ("douyin_auth_retries_total{}", 1),
            ])
        );
    }

    // Every documented metric moved in this test.
    let documented: BTreeSet<String> = m::ALL.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(seen, documented);
}

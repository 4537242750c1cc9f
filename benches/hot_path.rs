//! The hot path: a request with a fresh cached token through `DouyinAuth`, against a static
//! header (tower-http's `SetRequestHeader` with a prebuilt value) over the same inner service.
//!
//! Futures are driven without a runtime (`now_or_never`): the inner service answers at once
//! and a fresh token needs none, so runtime overhead does not blur the ratio. The cache is
//! warmed inside a runtime first. Each iteration is one request: `poll_ready`, `call`, poll
//! the answer, read its body to the end (the caller would). Building the request is outside
//! the timing (`iter_batched`) and is the same for every service.
//!
//! `cargo bench --bench hot_path`

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion};
use douyin_auth::expiry::DouyinExpiry;
use douyin_auth::{DouyinAuthLayer, StaticToken, ACCESS_TOKEN_HEADER};
use futures_util::task::noop_waker_ref;
use futures_util::FutureExt;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

#[path = "support/driver.rs"]
mod driver;
use driver::{
    bare, body_1k, body_32k, json_answer_1k, json_answer_32k, one, text_answer, Req, Res, TOKEN,
};

/// The inner service: answers at once with `res()`.
fn inner(
    res: fn() -> Res,
) -> impl Service<Req, Response = Res, Error = Infallible, Future = Ready<Result<Res, Infallible>>> + Clone
{
    tower::service_fn(move |_req: Req| ready(Ok(res())))
}

/// The request shapes, built fresh for each iteration (outside the timing): `bare` (from the
/// driver), and these.
fn with_headers() -> Req {
    let uri = String::from("https://open.douyin.com/api/douyin/v1/user/fans_data/?open_id=o1");
    Request::get(uri)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        // Built at run time, as most header values are (its bytes are not shared yet).
        .header(
            USER_AGENT,
            HeaderValue::from_str("my-app/1.0").expect("header"),
        )
        .body(Full::default())
        .expect("request")
}

fn json_body() -> Req {
    Request::post(http::Uri::from_static("https://open.douyin.com/api/x/"))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from_static(
            br#"{"open_id":"o1","date_type":7,"count":10}"#,
        )))
        .expect("request")
}

fn bench_one<S, B>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: &mut S, make: fn() -> Req)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes> + Unpin,
{
    g.bench_function(name, |b| {
        b.iter_batched(make, |req| one(svc, req), BatchSize::SmallInput)
    });
}

/// `DouyinAuth` over `inner`, with its cache warmed inside a (then dropped) runtime.
fn ours<S>(inner: S, retry: bool) -> douyin_auth::DouyinAuth<S>
where
    S: Service<Req, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    ours_reading(inner, retry, douyin_auth::DEFAULT_PEEK_LIMIT)
}

/// [`ours`] with its peek limit at `peek_limit`.
fn ours_reading<S>(inner: S, retry: bool, peek_limit: usize) -> douyin_auth::DouyinAuth<S>
where
    S: Service<Req, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let layer = DouyinAuthLayer::builder(StaticToken::new(TOKEN))
        .retry_on_expiry(retry)
        .peek_limit(peek_limit)
        .build();
    let mut svc = layer.layer(inner);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let res = svc.ready().await.expect("ready").call(bare()).await;
        assert!(res.is_ok(), "warm-up request failed");
    });
    // The token is fresh now: from here on no runtime is needed.
    assert!(one(&mut svc, bare()).status().is_success());
    svc
}

fn baseline<S>(inner: S) -> tower_http::set_header::SetRequestHeader<S, HeaderValue> {
    let mut value = HeaderValue::from_static(TOKEN);
    value.set_sensitive(true);
    SetRequestHeaderLayer::overriding(ACCESS_TOKEN_HEADER, value).layer(inner)
}

fn attach_only(c: &mut Criterion) {
    type Shape = (&'static str, fn() -> Req);
    let shapes: [Shape; 3] = [
        ("bare", bare),
        ("3_headers", with_headers),
        ("json_request_body", json_body),
    ];
    for (shape, make) in shapes {
        let mut g = c.benchmark_group(format!("attach/{shape}"));
        let mut base = baseline(inner(text_answer));
        let mut auth = ours(inner(text_answer), true);
        let mut auth_no_retry = ours(inner(text_answer), false);
        let mut plain = inner(text_answer);
        bench_one(&mut g, "no_auth", &mut plain, make);
        bench_one(&mut g, "set_request_header", &mut base, make);
        bench_one(&mut g, "douyin_auth", &mut auth, make);
        bench_one(&mut g, "douyin_auth_no_retry", &mut auth_no_retry, make);
        g.finish();
    }
}

fn json_answer_peek(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_answer_1k");
    let mut base = baseline(inner(json_answer_1k));
    let mut auth = ours(inner(json_answer_1k), true);
    bench_one(&mut g, "set_request_header", &mut base, bare);
    bench_one(&mut g, "douyin_auth", &mut auth, bare);
    // The baseline, then the answer parsed into a `serde_json::Value`: what a layer that
    // parses the answer to look for a code would add.
    g.bench_function("set_request_header+value_parse", |b| {
        b.iter_batched(
            bare,
            |req| {
                let mut cx = Context::from_waker(noop_waker_ref());
                assert!(base.poll_ready(&mut cx).is_ready());
                let res = base.call(req).now_or_never().expect("ready").expect("ok");
                let (head, body) = res.into_parts();
                let mut body = pin!(body);
                let bytes = match body.as_mut().poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(f))) => f.into_data().expect("data"),
                    _ => panic!("one frame"),
                };
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                black_box(v);
                Response::from_parts(head, ())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // By default a 32 KiB answer is over the peek limit and handed over unread; with the
    // limit raised to 64 KiB it is read and scanned.
    let mut g = c.benchmark_group("json_answer_32k");
    let mut base = baseline(inner(json_answer_32k));
    let mut auth = ours(inner(json_answer_32k), true);
    let mut reading = ours_reading(inner(json_answer_32k), true, 64 * 1024);
    bench_one(&mut g, "set_request_header", &mut base, bare);
    bench_one(&mut g, "douyin_auth", &mut auth, bare);
    bench_one(&mut g, "douyin_auth_peek_limit_64k", &mut reading, bare);
    g.finish();

    let body = body_32k();
    let classifier = DouyinExpiry::default();
    let mut g = c.benchmark_group("classify_32k");
    g.bench_function("douyin_expiry_scan", |b| {
        b.iter(|| classifier.body_rejection(black_box(&body)))
    });
    g.bench_function("douyin_expiry_parse", |b| {
        b.iter(|| classifier.parsed_rejection(black_box(&body)))
    });
    // The floor of any scan: one `memchr` pass over the whole body for a byte it lacks.
    g.bench_function("memchr_pass", |b| {
        b.iter(|| memchr::memchr(b'\x00', black_box(&body)))
    });
    g.bench_function("memchr_backslash", |b| {
        b.iter(|| memchr::memchr(b'\\', black_box(&body)))
    });
    g.bench_function("memmem_err", |b| {
        let f = memchr::memmem::Finder::new(b"err");
        b.iter(|| f.find_iter(black_box(&body)).count())
    });
    struct RareR;
    impl memchr::arch::all::packedpair::HeuristicFrequencyRank for RareR {
        fn rank(&self, byte: u8) -> u8 {
            match byte {
                b'r' => 1,
                _ => 255,
            }
        }
    }
    g.bench_function("memmem_err_ranked", |b| {
        let f = memchr::memmem::FinderBuilder::new().build_forward_with_ranker(RareR, b"err");
        b.iter(|| f.find_iter(black_box(&body)).count())
    });
    g.bench_function("memmem_rr", |b| {
        let f = memchr::memmem::FinderBuilder::new().build_forward_with_ranker(RareR, b"rr");
        b.iter(|| f.find_iter(black_box(&body)).count())
    });
    g.finish();

    // The classifier alone against parsing the same body.
    let body = body_1k();
    let classifier = DouyinExpiry::default();
    let mut g = c.benchmark_group("classify_1k");
    g.bench_function("douyin_expiry_peek", |b| {
        b.iter(|| classifier.body_means_expired(black_box(&body)))
    });
    g.bench_function("douyin_expiry_parse", |b| {
        b.iter(|| classifier.parsed_rejection(black_box(&body)))
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("json"))
    });
    g.bench_function("serde_ignored_any", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).expect("json"))
    });
    g.finish();
}

/// The per-user layer with `n` users cached: a request for one of them, against the
/// single-token layer and the static header over the same inner service. The request carries
/// its user's `OpenId` (inserted while the request is built, outside the timing).
fn per_user(c: &mut Criterion) {
    use douyin_auth::users::{OpenId, UserTokenLayer};
    fn open_id(i: usize) -> String {
        format!("_000{i:032}")
    }
    for n in [1usize, 100_000] {
        let layer = UserTokenLayer::builder(|id: &str| StaticToken::new(format!("act.{id}")))
            .max_users(n)
            .build();
        let mut users = layer.layer(inner(text_answer));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for i in 0..n {
                let mut req = bare();
                req.extensions_mut().insert(OpenId::new(open_id(i)));
                let res = users.ready().await.expect("ready").call(req).await;
                assert!(res.is_ok(), "warm-up request {i} failed");
            }
        });
        let mut g = c.benchmark_group(format!("per_user/{n}_users"));
        let mut base = baseline(inner(text_answer));
        let mut single = ours(inner(text_answer), true);
        let with_user = || {
            let mut req = bare();
            req.extensions_mut().insert(OpenId::new(open_id(0)));
            req
        };
        bench_one(&mut g, "set_request_header", &mut base, with_user);
        bench_one(&mut g, "douyin_auth", &mut single, with_user);
        bench_one(&mut g, "user_token_layer", &mut users, with_user);
        g.finish();
    }
}

/// What the clock read of the freshness check costs: tokio's `Instant::now`, which the cache
/// uses, goes through tokio's mockable clock when tokio's `test-util` feature is on (as it is
/// for these benchmarks, through the dev-dependency); without it, as in a production build,
/// it is std's `Instant::now`. Also an `Arc` clone and drop (what the response future's
/// reference to the layer's shared state costs), uncontended.
fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("parts");
    g.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    g.bench_function("std_instant_now", |b| b.iter(std::time::Instant::now));
    let arc = std::sync::Arc::new(0u64);
    g.bench_function("arc_clone_drop", |b| {
        b.iter(|| drop(black_box(std::sync::Arc::clone(&arc))))
    });
    let mut value = HeaderValue::from_str(TOKEN).expect("header");
    value.set_sensitive(true);
    drop(value.clone());
    g.bench_function("shared_header_clone_drop", |b| {
        b.iter(|| drop(black_box(value.clone())))
    });
    g.finish();
}

criterion_group!(benches, attach_only, json_answer_peek, per_user, parts);
criterion_main!(benches);

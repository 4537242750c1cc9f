//! Contended reads: two threads (this machine has two cores) sending hot-path requests through
//! one layer at once, against the same attach done from a `Mutex<Token>` and an
//! `RwLock<Token>` cache, as Go's x/oauth2 (`ReuseTokenSource`: a mutex), yup-oauth2 and
//! gcp_auth (a lock around the token) do.
//!
//! The lock-based caches are given every advantage: they hold a prebuilt, shared header value
//! (no formatting, no allocation), check the expiry with one clock read, as ours does, and
//! insert the header the same way. The only difference left is how the token is read.
//!
//! Each iteration is one request on each thread; the time reported is the wall time for both
//! threads to finish their share, so throughput is 2 / time.
//!
//! `cargo bench --bench contention`

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use douyin_auth::{DouyinAuthLayer, StaticToken, ACCESS_TOKEN_HEADER};
use futures_util::task::noop_waker_ref;
use futures_util::FutureExt;
use http::header::HeaderValue;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

const TOKEN: &str = "clt.0123456789abcdef0123456789abcdef0123456789abcdef";

#[derive(Clone)]
struct Inner;

impl Service<Req> for Inner {
    type Response = Res;
    type Error = Infallible;
    type Future = Ready<Result<Res, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        black_box(&req);
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

/// The token as a lock-based cache holds it: the header prebuilt, the deadline computed.
struct Cached {
    header: HeaderValue,
    valid_until: Instant,
}

fn cached() -> Cached {
    let mut header = HeaderValue::from_str(TOKEN).expect("header");
    header.set_sensitive(true);
    // Shared bytes, as in our cache, so a clone is a reference count, never an allocation.
    drop(header.clone());
    Cached {
        header,
        valid_until: Instant::now() + Duration::from_secs(3600),
    }
}

trait TokenCell: Send + Sync + 'static {
    fn header(&self) -> Option<HeaderValue>;
}

impl TokenCell for Mutex<Cached> {
    #[inline]
    fn header(&self) -> Option<HeaderValue> {
        let c = self.lock().unwrap_or_else(|p| p.into_inner());
        (Instant::now() < c.valid_until).then(|| c.header.clone())
    }
}

impl TokenCell for RwLock<Cached> {
    #[inline]
    fn header(&self) -> Option<HeaderValue> {
        let c = self.read().unwrap_or_else(|p| p.into_inner());
        (Instant::now() < c.valid_until).then(|| c.header.clone())
    }
}

/// A token-attaching service over a lock-based cache.
struct Locked<L> {
    cell: Arc<L>,
    inner: Inner,
}

impl<L> Clone for Locked<L> {
    fn clone(&self) -> Self {
        Self {
            cell: Arc::clone(&self.cell),
            inner: Inner,
        }
    }
}

impl<L: TokenCell> Service<Req> for Locked<L> {
    type Response = Res;
    type Error = Infallible;
    type Future = Ready<Result<Res, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let header = self.cell.header().expect("fresh token");
        req.headers_mut().insert(ACCESS_TOKEN_HEADER, header);
        self.inner.call(req)
    }
}

fn request() -> Req {
    Request::get(http::Uri::from_static("https://open.douyin.com/api/x/"))
        .body(Full::default())
        .expect("request")
}

#[inline(always)]
fn one<S>(svc: &mut S)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(noop_waker_ref());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let res = svc
        .call(request())
        .now_or_never()
        .expect("ready")
        .expect("ok");
    black_box(res);
}

/// `threads` threads, each sending `iters` requests through its own clone of `svc`, started
/// together; the wall time until the last one finishes.
fn hammer<S>(svc: &S, threads: usize, iters: u64) -> Duration
where
    S: Service<Req> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let mut svc = svc.clone();
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    one(&mut svc);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
}

fn ours() -> douyin_auth::DouyinAuth<Inner> {
    let mut svc = DouyinAuthLayer::new(StaticToken::new(TOKEN)).layer(Inner);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let res = svc.ready().await.expect("ready").call(request()).await;
        assert!(res.is_ok(), "warm-up request failed");
    });
    svc
}

fn contention(c: &mut Criterion) {
    let mutex = Locked {
        cell: Arc::new(Mutex::new(cached())),
        inner: Inner,
    };
    let rwlock = Locked {
        cell: Arc::new(RwLock::new(cached())),
        inner: Inner,
    };
    let douyin = ours();
    for threads in [1, 2] {
        let mut g = c.benchmark_group(format!("reads_{threads}_threads"));
        g.bench_function("mutex", |b| b.iter_custom(|n| hammer(&mutex, threads, n)));
        g.bench_function("rwlock", |b| b.iter_custom(|n| hammer(&rwlock, threads, n)));
        g.bench_function("douyin_auth", |b| {
            b.iter_custom(|n| hammer(&douyin, threads, n))
        });
        g.finish();
    }
}

criterion_group!(benches, contention);
criterion_main!(benches);

//! Refreshes never stall requests.
//!
//! - `crossing` (printed table): latency percentiles of requests issued while a stale token
//!   is refreshed in the background by a slow source (50 ms), against requests issued with a
//!   fresh token, in the same run; and, as a control, requests issued once the token has
//!   expired (those must wait for the refresh).
//! - `stampede` (criterion): 10,000 concurrent requests on a cold cache make exactly one
//!   fetch; the time until all are answered, against the time of the fetch alone.
//!
//! `cargo bench --bench refresh`

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode};
use douyin_auth::{BoxError, DouyinAuthLayer, Token, TokenSource};
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

const SLOW: Duration = Duration::from_millis(50);

fn inner(
) -> impl Service<Req, Response = Res, Error = Infallible, Future = Ready<Result<Res, Infallible>>>
       + Clone
       + Send
       + 'static {
    tower::service_fn(|_req: Req| ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))))
}

fn request() -> Req {
    Request::get(http::Uri::from_static("https://open.douyin.com/api/x/"))
        .body(Full::default())
        .expect("request")
}

/// A source whose first fetch answers at once and every later one after `delay`, handing out
/// tokens that live `lifetime`; it records when each fetch ran.
#[derive(Clone)]
struct Slow {
    delay: Duration,
    first_delay: Duration,
    lifetime: Duration,
    fetches: Arc<AtomicUsize>,
    windows: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

impl Slow {
    fn new(first_delay: Duration, delay: Duration, lifetime: Duration) -> Self {
        Self {
            delay,
            first_delay,
            lifetime,
            fetches: Arc::default(),
            windows: Arc::default(),
        }
    }
}

impl TokenSource for Slow {
    async fn fetch(&self) -> Result<Token, BoxError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let delay = if n == 0 { self.first_delay } else { self.delay };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((start, Instant::now()));
        Ok(Token::new(format!("clt.{n}"), self.lifetime))
    }
}

#[derive(Default)]
struct Samples {
    ns: Vec<u64>,
    waited: usize,
}

impl Samples {
    fn pct(&mut self, p: f64) -> u64 {
        if self.ns.is_empty() {
            return 0;
        }
        self.ns.sort_unstable();
        let i = ((self.ns.len() as f64 - 1.0) * p).round() as usize;
        self.ns[i]
    }

    fn row(&mut self, name: &str) {
        let (p50, p99, p999, max) = (
            self.pct(0.5),
            self.pct(0.99),
            self.pct(0.999),
            self.pct(1.0),
        );
        println!(
            "{name:<34} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
            fmt(p50),
            fmt(p99),
            fmt(p999),
            fmt(max),
            self.ns.len(),
            self.waited
        );
    }
}

fn fmt(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// Requests in a loop for `run`, on this thread, while the refresh runs on the runtime's
/// worker; each request's latency is filed under "fresh", "during a refresh" or, if it had to
/// wait for a token (it found none usable), "expired".
///
/// Tokens live 400 ms: stale after 200 ms (the refresh margin is capped at half the
/// lifetime), not sent after 300 ms (the expiry margin is capped at a quarter). With a 50 ms
/// source every refresh ends while the token is still valid; with a 150 ms source it ends after
/// the old token expired, so some requests must wait (the control).
fn crossing(delay: Duration, run: Duration) -> (Samples, Samples, Samples, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let source = Slow::new(Duration::ZERO, delay, Duration::from_millis(400));
    let layer = DouyinAuthLayer::builder(source.clone())
        .jitter(Duration::ZERO)
        .min_refresh_interval(Duration::ZERO)
        .build();
    let mut svc = layer.layer(inner());
    rt.block_on(async {
        let res = svc.ready().await.expect("ready").call(request()).await;
        assert!(res.is_ok(), "warm-up request failed");
    });
    let _enter = rt.enter();
    let mut log: Vec<(Instant, u64, bool)> = Vec::with_capacity(4_000_000);
    let end = Instant::now() + run;
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let mut fut = std::pin::pin!(svc.call(request()));
        let (res, waited) = match fut.as_mut().now_or_never() {
            Some(res) => (res, false),
            // Pending: this request waits for a token (only an expired token may make it).
            // Drive it to the end on the runtime.
            None => (rt.block_on(fut), true),
        };
        let ns = start.elapsed().as_nanos() as u64;
        black_box(res.expect("answered"));
        if log.len() < log.capacity() {
            log.push((start, ns, waited));
        }
    }
    let windows = source
        .windows
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let refreshes = windows.len().saturating_sub(1);
    let (mut fresh, mut during, mut expired) =
        (Samples::default(), Samples::default(), Samples::default());
    for (at, ns, waited) in log {
        // Background refreshes only (the first fetch is the warm-up).
        let in_refresh = windows.iter().skip(1).any(|(s, e)| *s <= at && at <= *e);
        let class = if waited {
            // Found no usable token: the old one had expired before the refresh ended.
            &mut expired
        } else if in_refresh {
            &mut during
        } else {
            &mut fresh
        };
        class.ns.push(ns);
        class.waited += usize::from(waited);
    }
    (fresh, during, expired, refreshes)
}

fn crossing_report(run: Duration) {
    println!();
    println!("crossing a refresh: requests on one thread, refreshes on a runtime worker");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "requests", "p50", "p99", "p99.9", "max", "count", "waited"
    );
    let (mut fresh, mut during, _, refreshes) = crossing(SLOW, run);
    fresh.row("fresh token");
    during.row("stale, 50 ms refresh in flight");
    println!("  ({refreshes} background refreshes crossed)");
    let (mut fresh, mut during, mut expired, refreshes) = crossing(Duration::from_millis(150), run);
    fresh.row("control: fresh token");
    during.row("control: stale, 150 ms refresh");
    expired.row("control: expired, had to wait");
    println!("  ({refreshes} background refreshes crossed)");
    println!();
}

/// One cold layer, `n` concurrent requests, each its own task; returns the time until all are
/// answered and checks there was exactly one fetch.
async fn stampede(n: usize) -> Duration {
    let source = Slow::new(SLOW, SLOW, Duration::from_secs(3600));
    let svc = DouyinAuthLayer::new(source.clone()).layer(inner());
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(svc.clone().oneshot(request())))
        .collect();
    for t in tasks {
        t.await.expect("task").expect("answered");
    }
    let elapsed = start.elapsed();
    assert_eq!(
        source.fetches.load(Ordering::SeqCst),
        1,
        "exactly one fetch"
    );
    elapsed
}

fn stampede_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("stampede_10k_cold");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("fetch_alone", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let source = Slow::new(SLOW, SLOW, Duration::from_secs(3600));
                    let start = Instant::now();
                    black_box(source.fetch().await.expect("token"));
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.bench_function("10k_requests", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += stampede(10_000).await;
                }
                total
            })
        })
    });
    g.finish();
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().configure_from_args();
    stampede_bench(&mut c);
    c.final_summary();
    crossing_report(if test_mode {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    });
}

//! The failure modes peers shipped as bugs (design section 3), each tried on purpose, beyond
//! what `tests/layer.rs` pins already:
//!
//! - a source that returns a token already inside the refresh window causes no refresh storm,
//!   whatever its lifetime;
//! - the re-check after waiting uses the fast path's rule: a stale but usable token is used
//!   at once, a token inside the expiry margin never;
//! - a failed background refresh (of any kind) never replaces a valid token;
//! - one transient error is never cached for ever, and the back-off resets after a success;
//! - background work stops when the last layer clone drops;
//! - a streaming body is sent once and never fails up front, and a body that lies about its
//!   size is never buffered without bound;
//! - a retried body is never empty or duplicated;
//! - concurrent and staggered expiries refresh once;
//! - an unrepresentable token is a typed error on every placement and on the retry.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::{
    BoxError, DouyinAuthLayer, Error, StaticToken, Token, TokenPlacement, TokenSource,
};
use futures_util::future::join_all;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use support::*;
use tokio::sync::Semaphore;
use tokio::time::{advance, Instant};
use tower::{Layer, ServiceExt};

const HOUR: Duration = Duration::from_secs(3600);

// ----- a source with a programmable answer per fetch -----

type Answer = Box<dyn Fn(usize) -> Result<Token, BoxError> + Send + Sync>;

/// Counts fetches, answers with `answer(n)`, can be held at a gate, and says when it is
/// dropped (it lives exactly as long as the cache that owns it).
#[derive(Clone)]
struct Probe {
    fetches: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    gate: Option<Arc<Semaphore>>,
    dropped: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    fn new(answer: impl Fn(usize) -> Result<Token, BoxError> + Send + Sync + 'static) -> Self {
        Self {
            fetches: Arc::default(),
            answer: Arc::new(Mutex::new(Box::new(answer))),
            gate: None,
            dropped: Arc::default(),
        }
    }

    fn lifetime(d: Duration) -> Self {
        Self::new(move |n| Ok(Token::new(format!("clt.{n}"), d)))
    }

    fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        self.gate = Some(gate.clone());
        (self, gate)
    }

    fn answer(&self, answer: impl Fn(usize) -> Result<Token, BoxError> + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Box::new(answer);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The source the layer owns: dropping it (with the cache) raises the flag.
struct Owned(Probe, #[allow(dead_code)] DropFlag);

impl TokenSource for Owned {
    async fn fetch(&self) -> Result<Token, BoxError> {
        let p = &self.0;
        let n = p.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &p.gate {
            gate.acquire().await.unwrap().forget();
        }
        let answer = p.answer.lock().unwrap();
        answer(n)
    }
}

fn owned(p: &Probe) -> Owned {
    Owned(p.clone(), DropFlag(p.dropped.clone()))
}

fn builder(p: &Probe) -> douyin_auth::DouyinAuthLayerBuilder {
    DouyinAuthLayer::builder(owned(p)).jitter(Duration::ZERO)
}

// ----- 1. no refresh storm, whatever the lifetime -----

#[tokio::test(start_paused = true)]
async fn tokens_inside_the_refresh_window_never_storm_whatever_their_lifetime() {
    const RUN: Duration = Duration::from_secs(120);
    const STEP: Duration = Duration::from_millis(100);
    for lifetime_ms in [1u64, 100, 1_000, 5_000, 30_000, 600_000, 660_000, 7_200_000] {
        let lifetime = Duration::from_millis(lifetime_ms);
        let probe = Probe::lifetime(lifetime);
        let svc = builder(&probe)
            .build()
            .layer(Recorder::new().service(|_, _| text("ok")));
        let start = Instant::now();
        let mut requests = 0usize;
        while start.elapsed() < RUN {
            // A burst of concurrent requests each step: still one refresh at a time.
            let burst = join_all((0..4).map(|_| svc.clone().oneshot(req("x")))).await;
            for r in burst {
                r.unwrap();
            }
            requests += 4;
            settle().await;
            advance(STEP).await;
        }
        let fetches = probe.fetches();
        // A token is refreshed when half its life is left (the margin is capped at half the
        // lifetime), so at most one fetch per half-lifetime; and never more than one per step.
        let steps = (RUN.as_millis() / STEP.as_millis()) as usize;
        let per_half_life = (RUN.as_millis() / (lifetime.as_millis() / 2).max(1)) as usize;
        let bound = per_half_life.min(steps) + 2;
        assert!(
            fetches <= bound,
            "lifetime {lifetime:?}: {fetches} fetches for {requests} requests (bound {bound})"
        );
    }
}

/// Douyin's stable client-token endpoint hands back the SAME token, with the seconds it has
/// left, until it expires: every refresh inside the refresh window returns a token that is
/// already inside it. Over several lifetimes the refreshes stay few, every request succeeds,
/// and no request carries an expired token.
#[tokio::test(start_paused = true)]
async fn a_stable_endpoint_that_returns_the_same_token_never_storms() {
    let lifetime = Duration::from_secs(600);
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let i2 = issued.clone();
    let probe = Probe::new(move |_| {
        let now = Instant::now();
        let mut issued = i2.lock().unwrap();
        if issued.last().is_none_or(|(_, exp)| *exp <= now) {
            let name = format!("clt.stable{}", issued.len() + 1);
            issued.push((name, now + lifetime));
        }
        let (name, exp) = issued.last().unwrap().clone();
        Ok(Token::new(name, exp - now))
    });
    let i3 = issued.clone();
    let inner = tower::service_fn(move |r: Req| {
        let token = token_of(&r);
        let (_, exp) = i3
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| *n == token)
            .cloned()
            .unwrap();
        assert!(Instant::now() < exp, "{token} sent after it expired");
        async { Ok::<_, Infallible>(text("ok")) }
    });
    let svc = builder(&probe).build().layer(inner);
    let start = Instant::now();
    while start.elapsed() < 3 * lifetime {
        svc.clone().oneshot(req("x")).await.unwrap();
        settle().await;
        advance(Duration::from_millis(250)).await;
    }
    let fetches = probe.fetches();
    assert!(issued.lock().unwrap().len() >= 3);
    assert!(fetches <= 3 * 20, "{fetches} fetches over three lifetimes");
    println!("stable endpoint: {fetches} fetches over three lifetimes");
}

// ----- 2. the re-check after waiting uses the fast path's rule -----

/// A request whose token is rejected waits for the cache again. If another request refreshed
/// the token meanwhile and that token is now stale but usable, the retry uses it at once (and
/// one background refresh starts), exactly as the fast path would; it does not wait for, nor
/// start, a refresh of its own. A token inside the expiry margin is never used by the re-check.
#[tokio::test(start_paused = true)]
async fn the_recheck_after_waiting_uses_the_fast_path_rule() {
    for (wait_s, stale_but_usable) in [(70u64, true), (96, false)] {
        let (probe, gate) = Probe::lifetime(Duration::from_secs(100)).gated();
        let layer = builder(&probe)
            .refresh_margin(Duration::from_secs(40))
            .expiry_margin(Duration::from_secs(5))
            .build();
        let (mock, mut handle) = tower_test::mock::pair::<Req, Res>();
        let svc = layer.layer(mock);

        gate.add_permits(1);
        let r1 = tokio::spawn(svc.clone().oneshot(req("r1")));
        let (first, send1) = handle.next_request().await.unwrap();
        assert_eq!(token_of(&first), "clt.1");

        // r2 is rejected: clt.1 is dropped, clt.2 fetched, r2 retried with it.
        let r2 = tokio::spawn(svc.clone().oneshot(req("r2")));
        let (second, send2) = handle.next_request().await.unwrap();
        assert_eq!(token_of(&second), "clt.1");
        send2.send_response(json(EXPIRED_SHAPES[0]));
        gate.add_permits(1);
        let (retry2, send) = handle.next_request().await.unwrap();
        assert_eq!(token_of(&retry2), "clt.2");
        send.send_response(json("{}"));
        r2.await.unwrap().unwrap();
        assert_eq!(probe.fetches(), 2);

        // Later, r1's answer says clt.1 expired too.
        advance(Duration::from_secs(wait_s)).await;
        send1.send_response(json(EXPIRED_SHAPES[2]));
        settle().await;
        if stale_but_usable {
            // Sent again at once with the stale clt.2; one background refresh started.
            let (retry1, send) = handle.next_request().await.unwrap();
            assert_eq!(token_of(&retry1), "clt.2");
            assert_eq!(body_string(retry1.into_body()).await, "r1");
            send.send_response(json("{}"));
            r1.await.unwrap().unwrap();
            assert_eq!(
                probe.fetches(),
                3,
                "one background refresh, as on the fast path"
            );
            gate.add_permits(1);
            settle().await;
            assert_eq!(layer.cached_token().unwrap().secret(), "clt.3");
        } else {
            // clt.2 is inside its expiry margin: r1 waits for the refresh and goes with clt.3.
            assert!(
                futures_util::FutureExt::now_or_never(handle.next_request()).is_none(),
                "a token inside the expiry margin must not be sent"
            );
            assert_eq!(probe.fetches(), 3);
            gate.add_permits(1);
            let (retry1, send) = handle.next_request().await.unwrap();
            assert_eq!(token_of(&retry1), "clt.3");
            send.send_response(json("{}"));
            r1.await.unwrap().unwrap();
            assert_eq!(probe.fetches(), 3);
        }
    }
}

// ----- 3. a failed background refresh never replaces a valid token -----

#[tokio::test(start_paused = true)]
async fn no_kind_of_failed_background_refresh_replaces_a_valid_token() {
    type Break = fn(&Probe) -> Option<Arc<Semaphore>>;
    let kinds: [(&str, Break); 5] = [
        ("source error", |p| {
            p.answer(|_| Err("boom".into()));
            None
        }),
        ("expired on arrival", |p| {
            p.answer(|n| Ok(Token::new(format!("clt.{n}"), Duration::ZERO)));
            None
        }),
        ("unrepresentable token", |p| {
            p.answer(|n| Ok(Token::new(format!("clt.{n}\n"), HOUR)));
            None
        }),
        ("token with a control character", |p| {
            p.answer(|n| Ok(Token::new(format!("clt.{n}\u{7}"), HOUR)));
            None
        }),
        ("timeout", |_| None),
    ];
    for (name, break_it) in kinds {
        let timeout = name == "timeout";
        let (probe, gate) = Probe::lifetime(Duration::from_secs(100)).gated();
        let layer = builder(&probe)
            .refresh_margin(Duration::from_secs(40))
            .expiry_margin(Duration::from_secs(5))
            .refresh_timeout(Duration::from_secs(3))
            .build();
        let rec = Recorder::new();
        let svc = layer.layer(rec.service(|_, _| text("ok")));
        gate.add_permits(1);
        svc.clone().oneshot(req("a")).await.unwrap();
        break_it(&probe);
        if !timeout {
            gate.add_permits(1_000);
        }
        advance(Duration::from_secs(61)).await;
        for _ in 0..30 {
            svc.clone().oneshot(req("b")).await.unwrap();
            settle().await;
            assert_eq!(layer.cached_token().unwrap().secret(), "clt.1", "{name}");
            advance(Duration::from_secs(1)).await;
        }
        if timeout {
            // The hung fetch stays the only one in flight: no second fetch beside it.
            assert_eq!(probe.fetches(), 2, "{name}: one fetch, then one that hangs");
        } else {
            // Background refreshes were tried, backing off (1 s doubling over 30 s).
            let f = probe.fetches();
            assert!((4..=8).contains(&f), "{name}: {f} fetches");
        }
        assert!(rec.tokens().iter().all(|t| t == "clt.1"), "{name}");
    }
}

// ----- 4. one transient error is never cached for ever -----

#[tokio::test(start_paused = true)]
async fn one_transient_error_is_never_cached_for_ever() {
    let floor = Duration::from_secs(1);
    let cap = Duration::from_secs(20);
    let probe = Probe::new(|_| Err("transient".into()));
    let layer = builder(&probe).backoff(floor, cap).build();
    let svc = layer.layer(Recorder::new().service(|_, _| text("ok")));

    // Forty failures in a row: each request waits for the next attempt (every back-off
    // within [floor, cap]) and gets its outcome.
    let mut last = Instant::now();
    for i in 1..=40 {
        let err = svc.clone().oneshot(req("x")).await.unwrap_err();
        assert!(matches!(err, Error::TokenSource(_)), "{err:?}");
        assert_eq!(probe.fetches(), i);
        let gap = last.elapsed();
        if i > 1 {
            assert!(gap >= floor && gap <= cap, "#{i}: {gap:?}");
        }
        last = Instant::now();
    }

    // Healed: the next request succeeds, and the failure count starts again from zero.
    probe.answer(|n| Ok(Token::new(format!("clt.{n}"), Duration::from_secs(40))));
    svc.clone().oneshot(req("x")).await.unwrap();
    probe.answer(|_| Err("again".into()));
    advance(Duration::from_secs(40)).await;
    svc.clone().oneshot(req("x")).await.unwrap_err();
    let t = Instant::now();
    svc.clone().oneshot(req("x")).await.unwrap_err();
    assert_eq!(t.elapsed(), floor, "a success resets the back-off");

    // Nobody asks for an hour: the old failure does not linger.
    advance(HOUR).await;
    let before = probe.fetches();
    probe.answer(|n| Ok(Token::new(format!("clt.{n}"), HOUR)));
    svc.oneshot(req("x")).await.unwrap();
    assert_eq!(probe.fetches(), before + 1);
}

// ----- 5. background work stops when the last layer clone drops -----

#[tokio::test(start_paused = true)]
async fn the_cache_is_freed_when_the_last_clone_drops_and_its_refresh_ends() {
    let metrics = tokio::runtime::Handle::current().metrics();

    // Idle: dropping the last clone frees the cache (and its source) at once.
    let probe = Probe::lifetime(HOUR);
    let layer = builder(&probe).build();
    let svc = layer.layer(Recorder::new().service(|_, _| text("ok")));
    let clones = (layer.clone(), svc.clone(), layer.clone().layer(svc.clone()));
    svc.clone().oneshot(req("x")).await.unwrap();
    drop((layer, svc));
    assert!(
        !probe.dropped.load(Ordering::SeqCst),
        "clones still hold it"
    );
    drop(clones);
    assert!(
        probe.dropped.load(Ordering::SeqCst),
        "freed with the last clone"
    );
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0);

    // A refresh in flight keeps it until the refresh ends, then lets go.
    let (probe, gate) = Probe::lifetime(Duration::from_secs(100)).gated();
    let layer = builder(&probe)
        .refresh_margin(Duration::from_secs(40))
        .build();
    let svc = layer.layer(Recorder::new().service(|_, _| text("ok")));
    gate.add_permits(1);
    svc.clone().oneshot(req("x")).await.unwrap();
    advance(Duration::from_secs(70)).await;
    svc.clone().oneshot(req("x")).await.unwrap(); // stale: a background refresh starts
    settle().await;
    assert_eq!(probe.fetches(), 2);
    drop((layer, svc));
    settle().await;
    assert!(
        !probe.dropped.load(Ordering::SeqCst),
        "the refresh runs to its end"
    );
    // The refresh task and the fetch it runs to completion.
    assert_eq!(metrics.num_alive_tasks(), 2);
    gate.add_permits(1);
    settle().await;
    assert!(
        probe.dropped.load(Ordering::SeqCst),
        "freed when the refresh ended"
    );
    assert_eq!(metrics.num_alive_tasks(), 0, "no task left behind");

    // A refresh that never answers: the cache is freed at once (the fetch holds only the
    // source), and the fetch itself is abandoned at ten times the refresh timeout.
    let (probe, _gate) = Probe::lifetime(HOUR).gated();
    let layer = builder(&probe)
        .refresh_timeout(Duration::from_secs(5))
        .build();
    let svc = layer.layer(Recorder::new().service(|_, _| text("ok")));
    let mut waiting = Box::pin(svc.clone().oneshot(req("x")));
    assert!(futures_util::poll!(&mut waiting).is_pending());
    drop((layer, svc, waiting));
    settle().await;
    assert!(!probe.dropped.load(Ordering::SeqCst));
    advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(
        !probe.dropped.load(Ordering::SeqCst),
        "a consumed refresh token may be in flight: the fetch is not cut at the timeout"
    );
    advance(Duration::from_secs(45)).await;
    settle().await;
    assert!(
        probe.dropped.load(Ordering::SeqCst),
        "abandoned at ten times the refresh timeout, then freed"
    );
    assert_eq!(metrics.num_alive_tasks(), 0);
}

// ----- 6. streaming bodies -----

/// A body that hands out `frames`, claims `hint` as its exact size, optionally never ends,
/// and counts the frames read.
struct Frames {
    frames: VecDeque<Bytes>,
    hint: Option<u64>,
    endless: bool,
    trailers: bool,
    read: Arc<AtomicUsize>,
}

impl Frames {
    fn new(parts: &[&'static str]) -> Self {
        let frames: VecDeque<Bytes> = parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect();
        let len = frames.iter().map(|f| f.len() as u64).sum();
        Self {
            frames,
            hint: Some(len),
            endless: false,
            trailers: false,
            read: Arc::default(),
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.read.fetch_add(1, Ordering::SeqCst);
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(f))));
        }
        if self.endless {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'z'; 1024])))));
        }
        if std::mem::take(&mut self.trailers) {
            let mut t = HeaderMap::new();
            t.insert("x-trailer", "t".parse().unwrap());
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        !self.endless && self.frames.is_empty() && !self.trailers
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::new(),
        }
    }
}

type B = BoxBody<Bytes, Infallible>;

fn boxed(f: Frames) -> B {
    f.boxed()
}

/// An inner service over `B` that reads at most `read_at_most` bytes of each body, records
/// them, and answers `answer(call)`.
fn reading_inner(
    read_at_most: usize,
    seen: Arc<Mutex<Vec<Bytes>>>,
    answer: fn(usize) -> Res,
) -> impl tower::Service<Request<B>, Response = Res, Error = Infallible, Future = impl Send> + Clone
{
    tower::service_fn(move |r: Request<B>| {
        let seen = seen.clone();
        async move {
            let mut body = r.into_body();
            let mut got = Vec::new();
            while got.len() < read_at_most {
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            got.extend_from_slice(&d);
                        }
                    }
                    _ => break,
                }
            }
            let n = {
                let mut s = seen.lock().unwrap();
                s.push(Bytes::from(got));
                s.len()
            };
            Ok(answer(n))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_sent_once_without_being_read_up_front() {
    // A body of unknown size whose second frame comes only after the inner service has
    // started reading: buffering it up front would deadlock.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    let body: B = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed();
    let started = Arc::new(tokio::sync::Notify::new());
    let s2 = started.clone();
    let inner = tower::service_fn(move |r: Request<B>| {
        let s2 = s2.clone();
        async move {
            s2.notify_one();
            let b = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&b[..], b"onetwo");
            Ok::<_, Infallible>(json(EXPIRED_SHAPES[0]))
        }
    });
    let probe = Probe::lifetime(HOUR);
    let svc = builder(&probe).build().layer(inner);
    tx.send(Ok(Frame::data(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    let call = tokio::spawn(
        svc.oneshot(
            Request::post("https://open.douyin.com/x")
                .body(body)
                .unwrap(),
        ),
    );
    started.notified().await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
        .await
        .unwrap();
    drop(tx);
    let res = call.await.unwrap().unwrap();
    // Sent once: the expired answer reaches the caller untouched.
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);

    // An endless body of unknown size, and one of declared size over the replay limit: the
    // layer reads none of it itself; the inner service reads what it wants.
    for declared in [None, Some(1u64 << 40)] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut f = Frames::new(&["head"]);
        f.endless = true;
        f.hint = declared;
        let read = f.read.clone();
        let svc = builder(&Probe::lifetime(HOUR)).build().layer(reading_inner(
            10_000,
            seen.clone(),
            |_| json(EXPIRED_SHAPES[1]),
        ));
        let res = svc
            .oneshot(
                Request::post("https://open.douyin.com/x")
                    .body(boxed(f))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[1]);
        assert_eq!(seen.lock().unwrap().len(), 1, "{declared:?}: sent once");
        assert!(
            read.load(Ordering::SeqCst) <= 12,
            "{declared:?}: read only by the inner service"
        );
    }
}

/// A body that claims a small exact size but never ends must not be buffered without bound.
#[tokio::test(start_paused = true)]
async fn a_body_that_lies_about_its_size_is_never_buffered_without_bound() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut f = Frames::new(&["abc"]);
    f.endless = true; // but still claims exactly 3 bytes
    let read = f.read.clone();
    let svc = DouyinAuthLayer::builder(StaticToken::new("clt.x"))
        .replay_limit(64 * 1024)
        .build()
        .layer(reading_inner(usize::MAX, seen.clone(), |_| text("ok")));
    let out = svc
        .oneshot(
            Request::post("https://open.douyin.com/x")
                .body(boxed(f))
                .unwrap(),
        )
        .await;
    let err = out.unwrap_err();
    assert!(
        matches!(err, Error::BodyTooLarge { limit: 65_536 }),
        "{err:?}"
    );
    assert!(
        read.load(Ordering::SeqCst) <= 66,
        "stopped at the replay limit"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "a body it cannot replay whole is not sent cut"
    );
}

// ----- 7. a retried body is never empty or duplicated -----

#[tokio::test(start_paused = true)]
async fn a_retried_body_is_never_empty_or_duplicated() {
    let limit = 64usize;
    let exactly_limit: &'static str = Box::leak("L".repeat(limit).into_boxed_str());
    let cases: Vec<(Vec<&'static str>, bool, usize)> = vec![
        (vec!["one frame"], false, 2),
        (vec!["ab", "cd", "ef"], false, 2),
        // Trailers cannot be replayed from bytes: sent once, as they came.
        (vec!["ab", "", "cd", "", "ef"], true, 1),
        (vec![], false, 2),
        (vec![""], false, 2),
        (vec![exactly_limit], false, 2),
        (vec![exactly_limit, "+"], false, 1),
    ];
    for (parts, trailers, sends) in cases {
        let expected: String = parts.concat();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let svc = builder(&Probe::lifetime(HOUR))
            .replay_limit(limit)
            .build()
            .layer(reading_inner(usize::MAX, seen.clone(), |n| {
                if n == 1 {
                    json(EXPIRED_SHAPES[3])
                } else {
                    json("{}")
                }
            }));
        let mut f = Frames::new(&parts);
        f.trailers = trailers;
        let res = svc
            .oneshot(
                Request::post("https://open.douyin.com/x")
                    .header("content-length", expected.len())
                    .body(boxed(f))
                    .unwrap(),
            )
            .await
            .unwrap();
        drop(res);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), sends, "{parts:?}");
        for b in seen.iter() {
            assert_eq!(
                &b[..],
                expected.as_bytes(),
                "{parts:?}: every send carries the body once"
            );
        }
    }
}

// ----- 8. concurrent and staggered expiries refresh once -----

#[tokio::test(start_paused = true)]
async fn staggered_expiries_of_one_token_refresh_once() {
    let (probe, gate) = Probe::lifetime(HOUR).gated();
    let layer = builder(&probe).build();
    let (mock, mut handle) = tower_test::mock::pair::<Req, Res>();
    let svc = layer.layer(mock);
    gate.add_permits(1);

    // Eight requests go out with clt.1 and are answered "expired" one by one, far apart: the
    // first answer refreshes; the late ones find a newer token and neither drop it nor fetch.
    let calls: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(
                svc.clone()
                    .oneshot(req(if i % 2 == 0 { "even" } else { "odd" })),
            )
        })
        .collect();
    let mut pending = Vec::new();
    for _ in 0..8 {
        let (r, send) = handle.next_request().await.unwrap();
        assert_eq!(token_of(&r), "clt.1");
        pending.push(send);
    }
    gate.add_permits(1);
    let mut retries = 0;
    for send in pending {
        send.send_response(json(EXPIRED_SHAPES[4]));
        advance(Duration::from_secs(30)).await;
        let (r, send) = handle.next_request().await.unwrap();
        assert_eq!(token_of(&r), "clt.2");
        send.send_response(json("{}"));
        retries += 1;
    }
    for c in join_all(calls).await {
        c.unwrap().unwrap();
    }
    assert_eq!(retries, 8);
    assert_eq!(
        probe.fetches(),
        2,
        "one refresh for eight staggered expiries"
    );
    assert_eq!(layer.cached_token().unwrap().secret(), "clt.2");
}

// Concurrent expiries whose refresh fails: tests/contracts.rs
// (`concurrent_rejections_whose_refresh_fails_each_get_their_answer`) holds every answer until
// all the requests are in, so each one carried the rejected token; it checks one refresh and
// each caller's own answer.

// ----- 9. unrepresentable tokens -----

#[tokio::test(start_paused = true)]
async fn an_unrepresentable_token_is_a_typed_error_on_every_placement_and_on_the_retry() {
    let bad = [
        "clt.a\nb",
        "clt.a\rb",
        "clt.a\0b",
        "clt.a\u{7f}b",
        "clt.\u{1b}[31m",
        "clt.\r\nx-injected: 1",
    ];
    for placement in [
        TokenPlacement::default(),
        TokenPlacement::Bearer,
        TokenPlacement::Query("access_token".into()),
    ] {
        for token in bad {
            let rec = Recorder::new();
            let svc = DouyinAuthLayer::builder(StaticToken::new(token))
                .placement(placement.clone())
                .build()
                .layer(rec.service(|_, _| text("ok")));
            let err = svc.oneshot(req("x")).await.unwrap_err();
            assert!(
                matches!(err, Error::InvalidHeaderValue),
                "{placement:?} {token:?}: {err:?}"
            );
            assert_eq!(rec.count(), 0);
        }
    }

    // Non-ASCII is opaque bytes (obs-text) in a header, sent exactly; a query cannot carry it
    // as it is, which is a typed error too.
    for placement in [
        TokenPlacement::default(),
        TokenPlacement::Bearer,
        TokenPlacement::Query("access_token".into()),
    ] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let inner = tower::service_fn(move |r: Req| {
            s2.lock().unwrap().push(r.headers().clone());
            async { Ok::<_, Infallible>(text("ok")) }
        });
        let out = DouyinAuthLayer::builder(StaticToken::new("clt.é"))
            .placement(placement.clone())
            .build()
            .layer(inner)
            .oneshot(req("x"))
            .await;
        match placement {
            TokenPlacement::Query(_) => {
                assert!(matches!(out, Err(Error::InvalidHeaderValue)), "{out:?}");
                assert!(seen.lock().unwrap().is_empty());
            }
            _ => {
                out.unwrap();
                let h = &seen.lock().unwrap()[0];
                let v = h.get("access-token").or(h.get("authorization")).unwrap();
                assert!(v.as_bytes().ends_with("clt.é".as_bytes()));
                assert!(v.is_sensitive());
            }
        }
    }

    // On the retry: clt.1 is rejected and the refresh brings an unrepresentable token.
    let probe = Probe::new(|n| {
        Ok(Token::new(
            if n == 1 {
                "clt.1".to_owned()
            } else {
                "clt.bad\n".to_owned()
            },
            HOUR,
        ))
    });
    let rec = Recorder::new();
    let svc = builder(&probe)
        .build()
        .layer(rec.service(|_, _| json(EXPIRED_SHAPES[0])));
    // No usable new token: the caller gets the first answer; the broken one is never sent.
    let res = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(rec.count(), 1, "never sent with a broken header");
}

/// `mpsc::Receiver` as a stream, without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

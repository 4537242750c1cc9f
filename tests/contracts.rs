//! The core contracts, each tried the way a cold review broke it (on tokio's paused clock):
//!
//! 1. one fetch of one cache at a time, also after the refresh timeout;
//! 2. the retry never carries the token the server just rejected;
//! 3. no token is sent after its expiry, however long the body takes;
//! 4. no token is sent inside its expiry margin, whatever the builder options;
//! 5. request trailers reach the inner service;
//! 6. the caller gets the server's answer when the retry is impossible;
//! 7. a back-off that users can live with;
//! 8. a stalled JSON body never holds the response head for ever;
//! 10. answers that keep saying "invalid" cause no refresh storm;
//! 11. the stable endpoint's same-token answers keep the stale window working.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, Token, TokenSource};
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{advance, Instant};
use tower::{Layer, ServiceExt};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

type Answer = dyn Fn(usize, Option<&str>) -> Result<Token, BoxError> + Send + Sync;

/// A source whose n-th fetch (from 1) answers `answer(n, rejected)`, where `rejected` is the
/// token the layer said was rejected, if any; it counts fetches and those that are running.
#[derive(Clone)]
struct Probe {
    fetches: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    answer: Arc<Answer>,
    gate: Option<Arc<Semaphore>>,
}

impl Probe {
    fn new(
        answer: impl Fn(usize, Option<&str>) -> Result<Token, BoxError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            fetches: Arc::default(),
            running: Arc::default(),
            most_running: Arc::default(),
            answer: Arc::new(answer),
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

    async fn run(&self, rejected: Option<&str>) -> Result<Token, BoxError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let out = (self.answer)(n, rejected);
        self.running.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl TokenSource for Probe {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.run(None).await
    }

    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        self.run(Some(rejected.secret())).await
    }
}

fn numbered(lifetime: Duration) -> Probe {
    Probe::new(move |n, _| Ok(Token::new(format!("clt.{n}"), lifetime)))
}

// ----- 1. one fetch at a time, also after the refresh timeout -----

#[tokio::test(start_paused = true)]
async fn a_hung_fetch_stays_the_only_one_in_flight_after_the_refresh_timeout() {
    let (probe, gate) = numbered(HOUR).gated();
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::builder(probe.clone())
        .refresh_timeout(Duration::from_secs(5))
        .build()
        .layer(rec.service(|_, _| text("ok")));
    // Forty seconds of requests against a source that hangs: each one gives up on time.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(40) {
        let err = svc.clone().oneshot(req("x")).await.unwrap_err();
        assert!(
            matches!(err, Error::RefreshTimeout(_) | Error::Backoff { .. }),
            "{err:?}"
        );
        advance(Duration::from_secs(1)).await;
    }
    assert_eq!(
        probe.fetches(),
        1,
        "one fetch in flight, never a second beside it"
    );
    assert_eq!(probe.most_running.load(Ordering::SeqCst), 1);
    // The hung fetch ends at last: its token is used, with no other fetch.
    gate.add_permits(1);
    settle().await;
    svc.clone().oneshot(req("x")).await.unwrap();
    assert_eq!(rec.tokens(), ["clt.1"]);
    assert_eq!(probe.fetches(), 1);
}

// ----- 2. the retry never carries the rejected token -----

/// A background refresh lands the SAME secret under a new generation while a request that
/// carried it is in flight; the server rejects that secret: the retry must carry another one.
#[tokio::test(start_paused = true)]
async fn a_refresh_that_lands_the_rejected_secret_again_does_not_make_the_retry_resend_it() {
    let probe = Probe::new(|n, _| {
        Ok(match n {
            1 | 2 => Token::new("clt.A", 20 * MIN),
            _ => Token::new(format!("clt.{n}"), HOUR),
        })
    });
    let (release_tx, release_rx) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Mutex::new(release_rx));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    let inner = tower::service_fn(move |r: Req| {
        let (seen, release) = (s2.clone(), release.clone());
        async move {
            let token = token_of(&r);
            let first = {
                let mut s = seen.lock().unwrap();
                s.push(token.clone());
                s.len() == 1
            };
            if first {
                // Held until the background refresh has landed.
                release.lock().await.recv().await;
            }
            Ok::<_, Infallible>(if token == "clt.A" {
                json(EXPIRED_SHAPES[0])
            } else {
                text("ok")
            })
        }
    });
    let layer = DouyinAuthLayer::builder(probe.clone())
        .jitter(Duration::ZERO)
        .build();
    // Fetch clt.A through another service of the same layer, then move into its stale window
    // (9 of its 20 minutes left).
    layer
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req("x"))
        .await
        .unwrap();
    advance(11 * MIN).await;
    let svc = layer.layer(inner);
    let first = tokio::spawn(svc.oneshot(req("x")));
    settle().await;
    assert_eq!(
        probe.fetches(),
        2,
        "the stale token started one background refresh"
    );
    // The request went out with clt.A and started one background refresh, which returned
    // clt.A again (a new generation, the same secret).
    release_tx.send(()).unwrap();
    let answer = first.await.unwrap().unwrap();
    assert_eq!(body_string(answer.into_body()).await, "ok");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "clt.A");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(
        seen[1], "clt.A",
        "the retry resent the rejected secret: {seen:?}"
    );
}

/// A source that hands the rejected token straight back (a stable endpoint): the crate does
/// not retry with it, and the caller gets the first answer as the server sent it.
#[tokio::test(start_paused = true)]
async fn a_source_that_hands_back_the_rejected_token_is_not_retried_with_it() {
    let probe = Probe::new(|_, _| Ok(Token::new("clt.same", HOUR)));
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(rec.service(|_, _| {
        let mut res = json(EXPIRED_SHAPES[0]);
        res.headers_mut()
            .insert("x-tt-logid", HeaderValue::from_static("log-1"));
        res
    }));
    let answer = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(
        rec.tokens(),
        ["clt.same"],
        "sent once: never again with the same token"
    );
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["x-tt-logid"], "log-1");
    assert_eq!(body_string(answer.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(
        probe.fetches(),
        2,
        "one fetch, then one told which token was rejected"
    );
}

/// A source told which token was rejected can hand out another (ClientCredentials falls back
/// to the classic endpoint); the retry carries that one.
#[tokio::test(start_paused = true)]
async fn a_source_told_the_rejected_token_hands_out_another_for_the_retry() {
    let probe = Probe::new(|_, rejected| {
        Ok(match rejected {
            Some("clt.stable") => Token::new("clt.classic", HOUR),
            _ => Token::new("clt.stable", HOUR),
        })
    });
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(rec.service(|token, _| {
        if token == "clt.stable" {
            json(EXPIRED_SHAPES[1])
        } else {
            text("ok")
        }
    }));
    let answer = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(body_string(answer.into_body()).await, "ok");
    assert_eq!(rec.tokens(), ["clt.stable", "clt.classic"]);
}

// ----- 3. no token after its expiry, however slow the body -----

/// A body of known size whose frames come when the test sends them.
struct SlowBody {
    rx: mpsc::UnboundedReceiver<Frame<Bytes>>,
    len: u64,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|f| f.map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

type Boxed = UnsyncBoxBody<Bytes, Infallible>;

fn slow_request(len: u64) -> (Request<Boxed>, mpsc::UnboundedSender<Frame<Bytes>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let body = SlowBody { rx, len }.boxed_unsync();
    let req = Request::post("https://open.douyin.com/api/test/")
        .body(body)
        .unwrap();
    (req, tx)
}

/// What an inner service over boxed bodies saw: the token, the body and its trailers.
type Seen = Arc<Mutex<Vec<(String, Bytes, Option<HeaderMap>)>>>;

fn boxed_inner(
    seen: Seen,
) -> impl tower::Service<
    Request<Boxed>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |r: Request<Boxed>| {
        let seen = seen.clone();
        async move {
            let token = token_of(&r);
            let collected = r.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            seen.lock()
                .unwrap()
                .push((token, collected.to_bytes(), trailers));
            Ok::<_, Infallible>(text("ok"))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_replayable_body_never_carries_a_token_past_its_expiry() {
    // clt.1 lives 60 s and is usable until 45 s (the expiry margin is capped at a quarter).
    let probe = numbered(Duration::from_secs(60));
    let seen: Seen = Arc::default();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(boxed_inner(seen.clone()));
    let (req, tx) = slow_request(6);
    let call = tokio::spawn(svc.oneshot(req));
    settle().await;
    tx.send(Frame::data(Bytes::from_static(b"abc"))).unwrap();
    settle().await;
    advance(Duration::from_secs(50)).await;
    tx.send(Frame::data(Bytes::from_static(b"def"))).unwrap();
    drop(tx);
    call.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "abcdef");
    assert_eq!(
        seen[0].0, "clt.2",
        "the token expired while the body was read"
    );
}

// ----- 4. no token inside its expiry margin, whatever the options -----

#[tokio::test(start_paused = true)]
async fn a_refresh_margin_below_the_expiry_margin_never_serves_a_token_inside_it() {
    let probe = numbered(2 * HOUR);
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::builder(probe.clone())
        .refresh_margin(Duration::from_secs(10))
        .expiry_margin(MIN)
        .jitter(Duration::ZERO)
        .build()
        .layer(rec.service(|_, _| text("ok")));
    svc.clone().oneshot(req("x")).await.unwrap();
    // 30 s before the real expiry: inside the 60 s expiry margin, outside the 10 s refresh one.
    advance(2 * HOUR - Duration::from_secs(30)).await;
    svc.clone().oneshot(req("x")).await.unwrap();
    assert_eq!(rec.tokens(), ["clt.1", "clt.2"]);
}

// ----- 5. request trailers reach the inner service -----

#[tokio::test(start_paused = true)]
async fn request_trailers_reach_the_inner_service_on_the_first_send() {
    let probe = numbered(HOUR);
    let seen: Seen = Arc::default();
    let svc = DouyinAuthLayer::new(probe).layer(boxed_inner(seen.clone()));
    let (req, tx) = slow_request(3);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("c0ffee"));
    tx.send(Frame::data(Bytes::from_static(b"abc"))).unwrap();
    tx.send(Frame::trailers(trailers.clone())).unwrap();
    drop(tx);
    svc.oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "abc");
    assert_eq!(
        seen[0].2.as_ref(),
        Some(&trailers),
        "the trailers were dropped"
    );
}

// ----- 6. the server's answer when no new token can be had -----

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_after_an_expired_answer_hands_the_caller_that_answer() {
    let probe = Probe::new(|n, _| {
        if n == 1 {
            Ok(Token::new("clt.1", HOUR))
        } else {
            Err("endpoint down".into())
        }
    });
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(rec.service(|_, _| {
        let mut res = json(EXPIRED_SHAPES[2]);
        *res.status_mut() = StatusCode::OK;
        res.headers_mut()
            .insert("x-tt-logid", HeaderValue::from_static("log-2"));
        res
    }));
    let answer = svc.clone().oneshot(req("x")).await.unwrap();
    assert_eq!(answer.headers()["x-tt-logid"], "log-2");
    assert_eq!(body_string(answer.into_body()).await, EXPIRED_SHAPES[2]);
}

/// Many requests rejected together share the one failed refresh, and each gets its own first
/// answer.
#[tokio::test(start_paused = true)]
async fn concurrent_rejections_whose_refresh_fails_each_get_their_answer() {
    let probe = Probe::new(|n, _| {
        if n == 1 {
            Ok(Token::new("clt.1", HOUR))
        } else {
            Err("endpoint down".into())
        }
    });
    // The eight answers come only once all eight requests are in (they were sent together).
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn(move |_: Req| {
        let (barrier, calls) = (barrier.clone(), calls.clone());
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                return Ok::<_, Infallible>(text("ok"));
            }
            barrier.wait().await;
            Ok(json(&format!(
                r#"{{"err_no":28001008,"err_msg":"expired","log_id":"{n}"}}"#
            )))
        }
    });
    let svc = DouyinAuthLayer::new(probe.clone()).layer(inner);
    svc.clone().oneshot(req("warm")).await.unwrap();
    let before = probe.fetches();
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(svc.clone().oneshot(req("x"))))
        .collect();
    let mut logs = Vec::new();
    for c in join_all(calls).await {
        let body = body_string(c.unwrap().unwrap().into_body()).await;
        assert!(body.starts_with(r#"{"err_no":28001008"#), "{body}");
        logs.push(body);
    }
    logs.sort();
    logs.dedup();
    assert_eq!(logs.len(), 8, "each request got its own answer");
    assert!(
        probe.fetches() <= before + 1,
        "one refresh for all the rejections"
    );
}

/// A 401 answer (the head alone says "expired") is handed back too, body untouched.
#[tokio::test(start_paused = true)]
async fn a_failed_refresh_after_a_401_hands_the_caller_the_401() {
    let probe = Probe::new(|n, _| {
        if n == 1 {
            Ok(Token::new("clt.1", HOUR))
        } else {
            Err("endpoint down".into())
        }
    });
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe).layer(rec.service(|_, _| {
        let mut res = text("unauthorised");
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res
    }));
    let answer = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_string(answer.into_body()).await, "unauthorised");
}

// ----- 7. back-off -----

/// While the source is down and no token is usable, a request waits for the next attempt
/// when it comes within its wait budget instead of failing at once; once Douyin is back, the
/// next attempt succeeds and so do the requests waiting for it.
#[tokio::test(start_paused = true)]
async fn after_an_outage_heals_requests_wait_for_the_next_attempt_and_succeed() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let d2 = down.clone();
    let probe = Probe::new(move |n, _| {
        if d2.load(Ordering::SeqCst) {
            Err("connection refused".into())
        } else {
            Ok(Token::new(format!("clt.{n}"), HOUR))
        }
    });
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(rec.service(|_, _| text("ok")));
    // Four minutes of outage, a request a second (each one on its own, as traffic comes).
    let mut during = Vec::new();
    for _ in 0..240 {
        during.push(tokio::spawn(svc.clone().oneshot(req("x"))));
        advance(Duration::from_secs(1)).await;
    }
    settle().await;
    let calls = probe.fetches();
    assert!(calls <= 20, "{calls} token calls in four minutes of outage");
    down.store(false, Ordering::SeqCst);
    // Healed: every request from now on succeeds, waiting at most for the next attempt.
    let mut after = Vec::new();
    for _ in 0..36 {
        let svc = svc.clone();
        after.push(tokio::spawn(async move {
            let sent = Instant::now();
            let res = svc.oneshot(req("x")).await;
            (res.is_ok(), sent.elapsed())
        }));
        advance(Duration::from_secs(1)).await;
    }
    for a in join_all(after).await {
        let (ok, waited) = a.unwrap();
        assert!(ok, "a request failed after the outage healed");
        assert!(waited <= Duration::from_secs(30), "waited {waited:?}");
    }
    for d in join_all(during).await {
        let _ = d.unwrap();
    }
    assert_eq!(probe.fetches(), calls + 1, "one attempt after the heal");
}

/// The failure count decays: after an hour of quiet, the first new failure backs off from the
/// floor again, not from where an old outage left it.
#[tokio::test(start_paused = true)]
async fn the_failure_count_decays_after_a_quiet_period() {
    let script: Arc<Mutex<VecDeque<bool>>> = Arc::default();
    let s2 = script.clone();
    let probe = Probe::new(move |n, _| {
        if s2.lock().unwrap().pop_front().unwrap_or(true) {
            Ok(Token::new(format!("clt.{n}"), Duration::from_secs(100)))
        } else {
            Err("down".into())
        }
    });
    let svc = DouyinAuthLayer::builder(probe.clone())
        .jitter(Duration::ZERO)
        .backoff(Duration::from_secs(1), MIN)
        .build()
        .layer(Recorder::new().service(|_, _| text("ok")));
    // Ten failures in a row, with no token: the back-off grows.
    script.lock().unwrap().extend([false; 10]);
    for _ in 0..100 {
        if probe.fetches() >= 10 {
            break;
        }
        assert!(svc.clone().oneshot(req("x")).await.is_err());
    }
    assert_eq!(
        probe.fetches(),
        10,
        "each request without a token waits for the next attempt"
    );
    // An hour of quiet, then one more failure and a success.
    advance(HOUR).await;
    script.lock().unwrap().extend([false, true]);
    let t0 = Instant::now();
    assert!(svc.clone().oneshot(req("x")).await.is_err());
    assert_eq!(probe.fetches(), 11);
    svc.clone().oneshot(req("x")).await.unwrap();
    assert_eq!(probe.fetches(), 12);
    assert!(
        t0.elapsed() <= Duration::from_secs(2),
        "the first failure after an hour of quiet backed off {:?}",
        t0.elapsed()
    );
}

// ----- 8. a stalled JSON body -----

#[tokio::test(start_paused = true)]
async fn a_stalled_json_body_is_handed_over_after_the_peek_timeout() {
    let probe = numbered(HOUR);
    let (tx, rx) = mpsc::unbounded_channel::<Frame<Bytes>>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let inner = tower::service_fn(move |_: Req| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move {
            let body = SlowBody { rx, len: 0 };
            let body = StreamlessBody(body);
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let svc = DouyinAuthLayer::new(probe).layer(inner);
    tx.send(Frame::data(Bytes::from_static(b"{\"data\":")))
        .unwrap();
    let call = tokio::spawn(svc.oneshot(req("x")));
    settle().await;
    advance(Duration::from_secs(6)).await;
    settle().await;
    assert!(call.is_finished(), "the head waits for a body that stalls");
    let answer = call.await.unwrap().unwrap();
    tx.send(Frame::data(Bytes::from_static(b"{}}"))).unwrap();
    drop(tx);
    assert_eq!(body_string(answer.into_body()).await, "{\"data\":{}}");
}

/// `SlowBody` with no size hint (a streamed answer).
struct StreamlessBody(SlowBody);

impl Body for StreamlessBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }
}

/// A list answer is larger than any expiry answer Douyin sends (each under 1 KiB): declared
/// over the peek limit, it reaches the caller without the layer reading a byte of it.
#[tokio::test(start_paused = true)]
async fn a_list_answer_over_the_peek_limit_is_handed_over_unread() {
    let polls = Arc::new(AtomicUsize::new(0));
    let list = format!(
        r#"{{"data":{{"list":[{}],"error_code":0,"description":""}},"extra":{{"error_code":0}}}}"#,
        vec![r#"{"item_id":"@9VxS1","title":"a video"}"#; 900].join(",")
    );
    assert!(list.len() > 32 * 1024);
    let (body, counted) = (Bytes::from(list), Arc::clone(&polls));
    let inner = tower::service_fn(move |_: Req| {
        let body = Counted(Full::new(body.clone()), Arc::clone(&counted));
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json; charset=utf-8")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let svc = DouyinAuthLayer::new(numbered(HOUR)).layer(inner);
    let answer = svc.oneshot(req("x")).await.unwrap();
    assert_eq!(
        polls.load(Ordering::SeqCst),
        0,
        "the layer read the list answer"
    );
    assert!(body_string(answer.into_body())
        .await
        .ends_with(r#""error_code":0}}"#));
}

/// A body that counts its polls.
struct Counted(Full<Bytes>, Arc<AtomicUsize>);

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

// ----- 10. no refresh storm on answers that keep saying "invalid" -----

#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_costs_no_fetch_per_request() {
    let probe = numbered(2 * HOUR);
    let rec = Recorder::new();
    let svc = DouyinAuthLayer::new(probe.clone()).layer(rec.service(|_, _| {
        json(r#"{"data":{"error_code":2190002,"description":"access_token invalid"}}"#)
    }));
    for _ in 0..50 {
        let answer = svc.clone().oneshot(req("x")).await.unwrap();
        assert!(body_string(answer.into_body()).await.contains("2190002"));
        advance(Duration::from_millis(100)).await;
    }
    // One fetch, and one refresh for the first rejection; every later rejection of a token
    // that was just fetched costs nothing.
    assert_eq!(probe.fetches(), 2);
    assert!(rec.count() <= 51, "{} sends", rec.count());
}

// ----- 11. the stable endpoint's same-token answers -----

/// Douyin's stable endpoint returns the same token, with the seconds it has left, until it
/// expires. Over five hours at 4 requests a second: at most two token calls per lifetime, no
/// request waits longer than one token call, none carries a token past its expiry.
#[tokio::test(start_paused = true)]
async fn the_stable_endpoint_costs_at_most_two_calls_per_token_lifetime() {
    const CALL: Duration = Duration::from_millis(200);
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let i2 = issued.clone();
    let probe = StableProbe {
        calls: Arc::default(),
        issued: i2,
    };
    let i3 = issued.clone();
    let inner = tower::service_fn(move |r: Req| {
        let token = token_of(&r);
        let exp = i3
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| *n == token)
            .map(|(_, e)| *e)
            .unwrap();
        assert!(Instant::now() < exp, "{token} sent after it expired");
        async { Ok::<_, Infallible>(text("ok")) }
    });
    let svc = DouyinAuthLayer::new(probe.clone()).layer(inner);
    let start = Instant::now();
    let mut longest = Duration::ZERO;
    while start.elapsed() < 5 * HOUR {
        let sent = Instant::now();
        let burst = join_all((0..4).map(|_| svc.clone().oneshot(req("x")))).await;
        for r in burst {
            r.unwrap();
        }
        longest = longest.max(sent.elapsed());
        advance(Duration::from_secs(1)).await;
    }
    let lifetimes = issued.lock().unwrap().len();
    let calls = probe.calls.load(Ordering::SeqCst);
    assert!(
        calls <= 2 * lifetimes,
        "{calls} token calls for {lifetimes} token lifetimes"
    );
    assert!(longest <= CALL, "a request waited {longest:?}");
}

#[derive(Clone)]
struct StableProbe {
    calls: Arc<AtomicUsize>,
    issued: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl TokenSource for StableProbe {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap();
        if issued.last().is_none_or(|(_, exp)| *exp <= now) {
            let name = format!("clt.stable{}", issued.len() + 1);
            issued.push((name, now + Duration::from_secs(7200)));
        }
        let (name, exp) = issued.last().unwrap().clone();
        Ok(Token::new(name, exp - now))
    }
}

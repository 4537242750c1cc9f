//! Token-endpoint faults, tried on purpose over real loopback sockets on tokio's paused clock.
//!
//! Each case breaks the token endpoint one way (a closed port, a slow answer past the refresh
//! timeout, HTTP 5xx, truncated and malformed bodies, Douyin error codes, the rate-limit code,
//! a huge body, answers the cache must refuse) and walks the same script:
//!
//! - cold cache: the request gets a typed error, the next one fails at once with
//!   `Error::Backoff` for exactly the floor (the cap after a rate-limit answer) without calling
//!   the endpoint, and the request after the back-off recovers once the endpoint heals;
//! - warm cache: while the endpoint stays broken through the whole stale window, every request
//!   is still sent with the still-valid token, and the background refreshes are spaced by the
//!   back-off (floor, doubling, with jitter, never above the cap; exactly the cap for 10020);
//! - past the token's expiry the requests get typed errors, never an expired token and never a
//!   hang; when the endpoint heals, the next attempt (within the cap) brings a new token and the
//!   refreshes stop.
//!
//! The token endpoint is the embedded mock Douyin server, a tiny raw HTTP server on loopback
//! for the answers the mock cannot give, or a closed port; a switching client routes the token
//! calls and records when each one starts. The API the layer guards is a recording service.
#![cfg(feature = "mock")]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::{ClientCredentials, MAX_RESPONSE_BYTES};
use douyin_auth::mock::{MockDouyin, TokenFailure};
use douyin_auth::{DouyinAuthLayer, Error};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{advance, Instant};
use tower::{Layer, ServiceExt};

const LIFETIME: Duration = Duration::from_secs(1000);
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
const FLOOR: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(16);
const TIMEOUT: Duration = Duration::from_secs(5);
const STEP: Duration = Duration::from_millis(500);
const HUGE_LIMIT: u64 = 256 << 20;

// ----- the switching token-endpoint client -----

/// Routes every token call to the current target and records when each one starts.
#[derive(Clone)]
struct Switch {
    target: Arc<Mutex<String>>,
    calls: Arc<Mutex<Vec<Instant>>>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Switch {
    fn new(target: String) -> Self {
        Self {
            target: Arc::new(Mutex::new(target)),
            calls: Arc::default(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    fn route(&self, target: String) {
        *self.target.lock().unwrap() = target;
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl tower::Service<Request<Full<Bytes>>> for Switch {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        let base = self.target.lock().unwrap().clone();
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = format!("{base}{pq}").parse::<Uri>().unwrap();
        self.calls.lock().unwrap().push(Instant::now());
        self.http.request(req)
    }
}

// ----- a raw HTTP/1.1 answerer for the bodies the mock cannot produce -----

#[derive(Clone)]
enum Answer {
    /// These bytes, as they are, then close.
    Raw(Vec<u8>),
    /// A 200 declaring a 1 GiB JSON body, streamed until the client hangs up.
    Huge,
}

struct RawServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    /// Body bytes the huge answer managed to write before the client hung up.
    written: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Answer::Raw(Vec::new())));
        let written = Arc::new(AtomicU64::new(0));
        let (a, w) = (answer.clone(), written.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let answer = a.lock().unwrap().clone();
                tokio::spawn(raw_connection(stream, answer, w.clone()));
            }
        });
        Self {
            addr,
            answer,
            written,
            task,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

fn http_answer(status: u16, content_type: &str, body: &[u8]) -> Answer {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    Answer::Raw(out)
}

async fn raw_connection(mut stream: TcpStream, answer: Answer, written: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    match answer {
        Answer::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
        }
        Answer::Huge => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\nconnection: close\r\n\r\n{\"data\":{\"access_token\":\"";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            let mut total = 0u64;
            while total < HUGE_LIMIT {
                if stream.write_all(&block).await.is_err() {
                    break;
                }
                total += block.len() as u64;
                written.store(total, Ordering::SeqCst);
            }
        }
    }
    let _ = stream.shutdown().await;
}

// ----- the cases -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    ConnectionRefused,
    Timeout,
    Http500,
    Http502,
    Http503DouyinBusy,
    TruncatedJson,
    TruncatedTransport,
    MalformedJson,
    HtmlWith200,
    SystemBusyCode,
    BadCredentialsCode,
    RateLimitCode,
    HugeBody,
    NoAccessToken,
    NegativeExpiry,
    ExpiredOnArrival,
    UnrepresentableToken,
}

/// The crate error behind a failed request: the source's own error for `TokenSource`, the
/// last failure for `Backoff`, else the error itself.
fn cause(err: &Error) -> &Error {
    let inner = match err {
        Error::TokenSource(s) => s.get_ref().downcast_ref::<Error>(),
        Error::Backoff { last, .. } => last.get_ref().downcast_ref::<Error>(),
        _ => None,
    };
    inner.unwrap_or(err)
}

fn protocol_says(err: &Error, what: &str) -> bool {
    matches!(err, Error::Protocol(m) if m.contains(what))
}

impl Fault {
    /// Whether `err` (the cause) is the typed error this fault must give.
    fn typed(self, err: &Error) -> bool {
        let code = |c: i64| err.douyin().map(|d| d.code()) == Some(c);
        match self {
            Fault::ConnectionRefused => matches!(err, Error::Service(_)),
            // The waiting requests give up at the refresh timeout; the fetch itself runs on and
            // fails with the late answer the mock gives (2100004).
            Fault::Timeout => {
                matches!(err, Error::RefreshTimeout(d) if *d == TIMEOUT) || code(2_100_004)
            }
            Fault::Http500 => protocol_says(err, "500"),
            Fault::Http502 => protocol_says(err, "502"),
            Fault::Http503DouyinBusy | Fault::SystemBusyCode => code(2_100_004),
            Fault::TruncatedJson => protocol_says(err, "truncated JSON"),
            Fault::TruncatedTransport => matches!(err, Error::Body(_)),
            Fault::MalformedJson => protocol_says(err, "malformed JSON"),
            Fault::HtmlWith200 => protocol_says(err, "not a JSON object"),
            Fault::BadCredentialsCode => code(10_013),
            Fault::RateLimitCode => code(10_020),
            Fault::HugeBody => matches!(
                err,
                Error::BodyTooLarge {
                    limit: MAX_RESPONSE_BYTES
                }
            ),
            Fault::NoAccessToken => protocol_says(err, "no access_token"),
            Fault::NegativeExpiry => protocol_says(err, "negative expires_in"),
            Fault::ExpiredOnArrival => matches!(err, Error::ExpiredToken),
            Fault::UnrepresentableToken => matches!(err, Error::InvalidHeaderValue),
        }
    }

    /// How long one failing attempt takes on the clock (a hung fetch lasts until the mock's
    /// late answer: the flight is not cut short at the refresh timeout).
    fn attempt(self) -> Duration {
        if self == Fault::Timeout {
            TIMEOUT + Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    }

    fn rate_limited(self) -> bool {
        self == Fault::RateLimitCode
    }
}

struct Env {
    fault: Fault,
    mock: MockDouyin,
    raw: RawServer,
    closed: String,
    switch: Switch,
    layer: DouyinAuthLayer,
    rec: Recorder,
}

impl Env {
    async fn start(fault: Fault) -> Self {
        let mock = MockDouyin::builder()
            .client_token_lifetime(LIFETIME)
            .start()
            .await
            .unwrap();
        let raw = RawServer::start().await;
        // A real closed port: bound, then let go.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let switch = Switch::new(mock.base_url());
        let source =
            ClientCredentials::with_client(mock.client_key(), mock.client_secret(), switch.clone())
                .classic()
                .base_url("https://token-endpoint.invalid");
        let layer = DouyinAuthLayer::builder(source)
            .refresh_margin(REFRESH_MARGIN)
            .expiry_margin(EXPIRY_MARGIN)
            .jitter(Duration::ZERO)
            .backoff(FLOOR, CAP)
            .refresh_timeout(TIMEOUT)
            .build();
        Self {
            fault,
            mock,
            raw,
            closed,
            switch,
            layer,
            rec: Recorder::new(),
        }
    }

    fn raw(&self, answer: Answer) {
        self.raw.answer(answer);
        self.switch.route(self.raw.base_url());
    }

    /// Breaks the token endpoint; `times` bounds the failures the mock injects.
    fn break_endpoint(&self, times: usize) {
        let ok = br#"{"data":{"access_token":"clt.x","error_code":0,"expires_in":"#;
        let with = |tail: &str| {
            let mut b = ok.to_vec();
            b.extend_from_slice(tail.as_bytes());
            b
        };
        match self.fault {
            Fault::ConnectionRefused => self.switch.route(self.closed.clone()),
            Fault::Timeout => {
                self.mock.set_token_latency(TIMEOUT + Duration::from_secs(1));
                // The late answers, after the client gave up, must not rotate tokens.
                self.mock
                    .fail_next_token_calls(10_000, TokenFailure::Code(2_100_004));
            }
            Fault::Http500 => self.mock.fail_next_token_calls(
                times,
                TokenFailure::HttpStatus(StatusCode::INTERNAL_SERVER_ERROR),
            ),
            Fault::Http502 => self
                .mock
                .fail_next_token_calls(times, TokenFailure::HttpStatus(StatusCode::BAD_GATEWAY)),
            Fault::Http503DouyinBusy => self.raw(http_answer(
                503,
                "application/json",
                br#"{"data":{"error_code":2100004,"description":"busy"},"extra":{"logid":"L","now":1}}"#,
            )),
            Fault::TruncatedJson => self
                .mock
                .fail_next_token_calls(times, TokenFailure::Malformed),
            Fault::TruncatedTransport => self.raw(Answer::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"data\":{\"acc"
                    .to_vec(),
            )),
            Fault::MalformedJson => self.raw(http_answer(
                200,
                "application/json",
                br#"{"data": {"access_token": clt.x, "expires_in": 7200}}"#,
            )),
            Fault::HtmlWith200 => self.raw(http_answer(
                200,
                "text/html",
                b"<html><body>gateway says hello</body></html>",
            )),
            Fault::SystemBusyCode => self
                .mock
                .fail_next_token_calls(times, TokenFailure::Code(2_100_004)),
            Fault::BadCredentialsCode => self
                .mock
                .fail_next_token_calls(times, TokenFailure::Code(10_013)),
            Fault::RateLimitCode => self
                .mock
                .fail_next_token_calls(times, TokenFailure::Code(10_020)),
            Fault::HugeBody => self.raw(Answer::Huge),
            Fault::NoAccessToken => self.raw(http_answer(
                200,
                "application/json",
                br#"{"data":{"error_code":0,"expires_in":7200},"message":"success"}"#,
            )),
            Fault::NegativeExpiry => {
                self.raw(http_answer(200, "application/json", &with("-5}}")))
            }
            Fault::ExpiredOnArrival => self.raw(http_answer(200, "application/json", &with("0}}"))),
            Fault::UnrepresentableToken => self.raw(http_answer(
                200,
                "application/json",
                br#"{"data":{"access_token":"clt.bad\u0001value","error_code":0,"expires_in":7200}}"#,
            )),
        }
    }

    async fn heal(&self) {
        if self.fault == Fault::Timeout {
            self.mock.set_token_latency(Duration::ZERO);
            // Let the answers that are still sleeping in the mock finish (into closed
            // connections) before the injected failures are cleared.
            advance(TIMEOUT + Duration::from_secs(1)).await;
            settle().await;
        }
        self.mock.clear_token_failures();
        self.switch.route(self.mock.base_url());
    }

    async fn request(&self) -> Result<String, Error> {
        let svc = self.layer.layer(self.rec.service(|_, _| text("ok")));
        let res = svc.oneshot(req("x")).await?;
        assert_eq!(res.status(), 200);
        Ok(self.rec.tokens().last().cloned().unwrap_or_default())
    }
}

/// What one case saw, for the report.
#[derive(Debug)]
struct Seen {
    fault: Fault,
    attempts_while_stale: usize,
    intervals: Vec<Duration>,
}

async fn run_case(fault: Fault) -> Seen {
    let env = Env::start(fault).await;
    let t0 = Instant::now();

    // --- cold cache: a typed error; the next request waits for the next attempt ---
    env.break_endpoint(2);
    let err = env.request().await.unwrap_err();
    assert!(err.is_token_source(), "{fault:?}: {err:?}");
    assert!(fault.typed(cause(&err)), "{fault:?}: {err:?}");
    assert_eq!(env.switch.count(), 1, "{fault:?}");
    assert_eq!(
        env.rec.count(),
        0,
        "{fault:?}: nothing sent without a token"
    );

    let asked = Instant::now();
    let second = env.request().await;
    if fault.rate_limited() {
        // A rate-limit answer backs off for the whole cap, beyond the wait budget: the
        // request fails at once, and nobody is called.
        let Err(Error::Backoff { retry_in, .. }) = &second else {
            panic!("{fault:?}: {second:?}")
        };
        assert_eq!(*retry_in, CAP, "{fault:?}: first back-off");
        assert!(
            fault.typed(cause(second.as_ref().unwrap_err())),
            "{fault:?}"
        );
        assert_eq!(env.switch.count(), 1, "{fault:?}: backing off calls nobody");
        advance(FLOOR).await;
        let err = env.request().await.unwrap_err();
        assert!(matches!(err, Error::Backoff { .. }), "{fault:?}: {err:?}");
        assert_eq!(env.switch.count(), 1);
    } else if fault == Fault::Timeout {
        // The hung fetch is still the one in flight: the request joins it, no second call.
        let err = second.unwrap_err();
        assert!(fault.typed(cause(&err)), "{fault:?}: {err:?}");
        assert_eq!(env.switch.count(), 1, "{fault:?}: one fetch in flight");
        assert_eq!(asked.elapsed(), Duration::from_secs(1), "{fault:?}");
    } else {
        // The floor is within the wait budget: the request waits for that attempt.
        let err = second.unwrap_err();
        assert!(fault.typed(cause(&err)), "{fault:?}: {err:?}");
        assert_eq!(env.switch.count(), 2, "{fault:?}: the next attempt");
        assert_eq!(asked.elapsed(), FLOOR, "{fault:?}: waited for the floor");
    }
    let cold_calls = env.switch.count();

    env.heal().await;
    if fault.rate_limited() {
        let due = t0 + CAP;
        let now = Instant::now();
        if now < due {
            advance(due - now).await;
        }
    }
    let t1 = env.request().await.unwrap();
    assert!(t1.starts_with("clt."), "{fault:?}: {t1}");
    assert_eq!(env.switch.count(), cold_calls + 1, "{fault:?}");
    let got_t1 = Instant::now();

    // --- warm cache, endpoint broken through the whole stale window ---
    advance(LIFETIME - REFRESH_MARGIN).await;
    env.break_endpoint(100_000);
    let stale_from = Instant::now();
    let calls_before = env.switch.count();
    let usable_until = got_t1 + LIFETIME - EXPIRY_MARGIN;
    while Instant::now() + STEP < usable_until {
        let token = env.request().await.unwrap_or_else(|e| {
            panic!(
                "{fault:?}: a valid token must keep serving at {:?}: {e:?}",
                Instant::now() - stale_from
            )
        });
        assert_eq!(token, t1, "{fault:?}: the still-valid token is sent");
        settle().await;
        advance(STEP).await;
    }
    let calls = env.switch.calls()[calls_before..].to_vec();
    assert_eq!(
        calls.first(),
        Some(&stale_from),
        "{fault:?}: refresh starts when stale"
    );
    let intervals: Vec<Duration> = calls
        .windows(2)
        .map(|w| w[1] - w[0] - fault.attempt())
        .collect();
    assert!(intervals.len() >= 10, "{fault:?}: {intervals:?}");
    for (i, gap) in intervals.iter().enumerate() {
        let (lo, hi) = if fault.rate_limited() {
            (CAP, CAP)
        } else {
            let full = FLOOR.saturating_mul(1 << i.min(20)).min(CAP);
            ((full / 2).max(FLOOR), full)
        };
        assert!(
            *gap >= lo && *gap <= hi + STEP,
            "{fault:?}: back-off #{i} was {gap:?}, expected {lo:?}..={hi:?}: {intervals:?}"
        );
    }
    let sent_before_expiry = env.rec.count();

    // --- past the expiry, still broken: typed errors, no expired token sent, no hang ---
    if Instant::now() < usable_until {
        advance(usable_until - Instant::now()).await;
    }
    for _ in 0..3 {
        let err = env.request().await.unwrap_err();
        assert!(err.is_token_source(), "{fault:?}: {err:?}");
        assert!(fault.typed(cause(&err)), "{fault:?}: {err:?}");
        advance(STEP).await;
    }
    assert_eq!(
        env.rec.count(),
        sent_before_expiry,
        "{fault:?}: no expired token sent"
    );

    // --- healed: the next attempt (within the cap) brings a new token, then quiet ---
    env.heal().await;
    let healed_at = Instant::now();
    let t2 = loop {
        match env.request().await {
            Ok(t) => break t,
            Err(e) => {
                assert!(matches!(e, Error::Backoff { .. }), "{fault:?}: {e:?}");
                assert!(
                    Instant::now() - healed_at <= CAP + STEP,
                    "{fault:?}: no recovery within the cap"
                );
                advance(STEP).await;
            }
        }
    };
    assert_ne!(t2, t1, "{fault:?}");
    let after = env.switch.count();
    for _ in 0..20 {
        assert_eq!(env.request().await.unwrap(), t2, "{fault:?}");
        advance(STEP).await;
    }
    assert_eq!(
        env.switch.count(),
        after,
        "{fault:?}: no refresh storm after recovery"
    );

    if fault == Fault::HugeBody {
        let written = env.raw.written.load(Ordering::SeqCst);
        assert!(
            written < HUGE_LIMIT,
            "the client read the huge body to its end ({written} bytes)"
        );
    }
    Seen {
        fault,
        attempts_while_stale: calls.len(),
        intervals,
    }
}

macro_rules! fault_tests {
    ($($name:ident => $fault:expr,)*) => {$(
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let seen = run_case($fault).await;
            assert_eq!(seen.fault, $fault);
            println!(
                "{:?}: {} refresh attempts while stale, back-offs {:?}",
                seen.fault, seen.attempts_while_stale, seen.intervals
            );
        }
    )*};
}

fault_tests! {
    connection_refused => Fault::ConnectionRefused,
    refresh_timeout => Fault::Timeout,
    http_500 => Fault::Http500,
    http_502 => Fault::Http502,
    http_503_with_a_douyin_busy_body => Fault::Http503DouyinBusy,
    truncated_json => Fault::TruncatedJson,
    body_cut_off_by_the_transport => Fault::TruncatedTransport,
    malformed_json => Fault::MalformedJson,
    html_with_200 => Fault::HtmlWith200,
    code_system_busy_with_200 => Fault::SystemBusyCode,
    code_bad_credentials_with_200 => Fault::BadCredentialsCode,
    code_rate_limited_backs_off_to_the_cap => Fault::RateLimitCode,
    huge_body => Fault::HugeBody,
    success_without_access_token => Fault::NoAccessToken,
    negative_expires_in => Fault::NegativeExpiry,
    token_expired_on_arrival => Fault::ExpiredOnArrival,
    unrepresentable_token => Fault::UnrepresentableToken,
}

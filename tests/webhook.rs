//! The webhook and SPI layers in front of a real axum server over loopback (and, where a test
//! must hold a handler or count the bytes pulled from a body, the same router in process).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::{Extension, Router};
use douyin_auth::webhook::{
    spi_signature, webhook_signature, SpiCall, VerifySpiLayer, VerifyWebhookLayer, WebhookEvent,
};
use douyin_auth::BoxError;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use tokio::sync::{mpsc, Semaphore};
use tower::{Layer, ServiceExt};

const SECRET: &str = "test_client_secret_8f2a";

type ClientBody = BoxBody<Bytes, BoxError>;

/// One call the handler saw: the envelope extension (if any) and the body.
type Call = (Option<WebhookEvent>, Bytes);

/// What the handler saw: every call's envelope and body.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Seen {
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
    fn get(&self, i: usize) -> Call {
        self.calls.lock().unwrap()[i].clone()
    }
}

fn webhook_app(seen: Seen, layer: VerifyWebhookLayer) -> Router {
    let handler = move |event: Option<Extension<WebhookEvent>>, body: Bytes| {
        let seen = seen.clone();
        async move {
            seen.calls
                .lock()
                .unwrap()
                .push((event.map(|Extension(e)| e), body));
            "handled"
        }
    };
    Router::new()
        .route("/webhook", post(handler))
        .route_layer(layer)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> Client<HttpConnector, ClientBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn full(body: impl Into<Bytes>) -> ClientBody {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

fn delivery(
    addr: SocketAddr,
    body: &[u8],
    signature: Option<&str>,
    msg_id: Option<&str>,
) -> Request<ClientBody> {
    let mut request =
        Request::post(format!("http://{addr}/webhook")).header("content-type", "application/json");
    if let Some(sig) = signature {
        request = request.header("x-douyin-signature", sig);
    }
    if let Some(id) = msg_id {
        request = request.header("msg-id", id);
    }
    request.body(full(body.to_vec())).unwrap()
}

async fn send(request: Request<ClientBody>) -> (StatusCode, String) {
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("an answer within 10 s")
        .expect("the request went through");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    v["error"].as_str().expect("an error code").to_owned()
}

// Odd bytes on purpose: newlines, spaces, escapes, non-ASCII; a verifier that re-serialises or
// re-joins lines fails on it.
const EVENT: &[u8] = b"{\"event\":\"im_receive_msg\",  \"client_key\":\"ck_1\",\n\"from_user_id\":\"u_from\",\"to_user_id\":\"u_to\",\r\n\"content\":{\"text\":\"\xe4\xbd\xa0\xe5\xa5\xbd \\u4f60\"},\"log_id\":\"L1\"}\n";

#[tokio::test]
async fn a_signed_event_reaches_the_handler_once_with_its_body_unchanged() {
    let seen = Seen::default();
    let addr = serve(webhook_app(seen.clone(), VerifyWebhookLayer::new(SECRET))).await;
    let sig = webhook_signature(SECRET, EVENT);

    let (status, body) = send(delivery(addr, EVENT, Some(&sig), Some("msg-1"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "handled"));
    assert_eq!(seen.count(), 1);
    let (event, bytes) = seen.get(0);
    assert_eq!(
        &bytes[..],
        EVENT,
        "the body reaches the handler byte for byte"
    );
    let event = event.expect("the envelope extension");
    assert_eq!(event.event, "im_receive_msg");
    assert_eq!(event.client_key, "ck_1");
    assert_eq!(event.from_user_id.as_deref(), Some("u_from"));
    assert_eq!(event.to_user_id.as_deref(), Some("u_to"));
    assert_eq!(event.content, serde_json::json!({"text": "你好 你"}));
    assert_eq!(event.log_id.as_deref(), Some("L1"));
    assert_eq!(event.msg_id.as_deref(), Some("msg-1"));
}

#[tokio::test]
async fn the_layer_works_with_router_layer_and_a_plain_tower_service() {
    // `Router::layer`: every route is verified, the 404 of an unknown path too.
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |body: Bytes| async move {
            seen.calls.lock().unwrap().push((None, body));
            "handled"
        }
    };
    let app = Router::new()
        .route("/webhook", post(handler))
        .layer(VerifyWebhookLayer::new(SECRET));
    let addr = serve(app).await;
    let sig = webhook_signature(SECRET, EVENT);
    let (status, body) = send(delivery(addr, EVENT, Some(&sig), Some("m"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "handled"));
    let unknown = Request::get(format!("http://{addr}/elsewhere"))
        .body(full(""))
        .unwrap();
    assert_eq!(send(unknown).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 1);

    // Any tower service over a body built from `Bytes`, here `Full<Bytes>`.
    let inner = tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let event = request.extensions().get::<WebhookEvent>().cloned();
        let body = request.into_body().collect().await?.to_bytes();
        let answer = format!(
            "{}:{}",
            event.map(|e| e.event).unwrap_or_default(),
            body.len()
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
    });
    let service = VerifyWebhookLayer::new(SECRET).layer(inner);
    let request = Request::post("/")
        .header("x-douyin-signature", sig)
        .body(Full::new(Bytes::from_static(EVENT)))
        .unwrap();
    let answer = service.oneshot(request).await.unwrap();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("im_receive_msg:{}", EVENT.len()));
}

#[tokio::test]
async fn forged_or_missing_signatures_get_401_and_the_handler_is_not_called() {
    let seen = Seen::default();
    let addr = serve(webhook_app(seen.clone(), VerifyWebhookLayer::new(SECRET))).await;
    let other_secret = webhook_signature("another_secret", EVENT);
    let other_body = webhook_signature(SECRET, b"{\"event\":\"im_receive_msg\"}");
    let garbage = "z".repeat(40);
    let cases = [
        (Some(other_secret.as_str()), "invalid_signature"),
        (Some(other_body.as_str()), "invalid_signature"),
        (Some(garbage.as_str()), "invalid_signature"),
        (Some(""), "invalid_signature"),
        (None, "missing_signature"),
    ];
    for (sig, code) in cases {
        let (status, body) = send(delivery(addr, EVENT, sig, Some("msg-f"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "signature {sig:?}");
        assert_eq!(error_code(&body), code, "signature {sig:?}");
        assert!(!body.contains(SECRET));
    }
    assert_eq!(seen.count(), 0, "no forged call reached the handler");

    // The forgeries did not poison the Msg-Id table: the genuine delivery still goes through.
    let sig = webhook_signature(SECRET, EVENT);
    let (status, _) = send(delivery(addr, EVENT, Some(&sig), Some("msg-f"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.count(), 1);
}

#[tokio::test]
async fn the_challenge_is_answered_exactly_by_the_layer() {
    let seen = Seen::default();
    let addr = serve(webhook_app(seen.clone(), VerifyWebhookLayer::new(SECRET))).await;
    // A challenge beyond 64 bits: only an echo of the raw JSON text keeps it exact.
    let body = br#"{"event":"verify_webhook","client_key":"ck_1","content":{"challenge":123456789012345678901234567890}}"#;
    let sig = webhook_signature(SECRET, body);
    let response = client()
        .request(delivery(addr, body, Some(&sig), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &answer[..],
        br#"{"challenge":123456789012345678901234567890}"#
    );

    let body = br#"{"event":"verify_webhook","client_key":"","content":{"challenge":12345}}"#;
    let sig = webhook_signature(SECRET, body);
    let (status, answer) = send(delivery(addr, body, Some(&sig), None)).await;
    assert_eq!(
        (status, answer.as_str()),
        (StatusCode::OK, r#"{"challenge":12345}"#)
    );
    assert_eq!(seen.count(), 0, "the challenge never reaches the handler");

    // Unsigned: refused by default.
    let (status, answer) = send(delivery(addr, body, None, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&answer), "missing_signature");
}

#[tokio::test]
async fn an_unsigned_challenge_is_answered_only_when_allowed() {
    let seen = Seen::default();
    let layer = VerifyWebhookLayer::new(SECRET).answer_unsigned_challenge(true);
    let addr = serve(webhook_app(seen.clone(), layer)).await;
    let challenge = br#"{"event":"verify_webhook","client_key":"","content":{"challenge":7}}"#;
    let (status, answer) = send(delivery(addr, challenge, None, None)).await;
    assert_eq!(
        (status, answer.as_str()),
        (StatusCode::OK, r#"{"challenge":7}"#)
    );
    // Every other event still needs its signature.
    let (status, _) = send(delivery(addr, EVENT, None, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.count(), 0);
}

#[tokio::test]
async fn a_repeated_msg_id_calls_the_handler_once() {
    let seen = Seen::default();
    let addr = serve(webhook_app(seen.clone(), VerifyWebhookLayer::new(SECRET))).await;
    let sig = webhook_signature(SECRET, EVENT);
    let (status, body) = send(delivery(addr, EVENT, Some(&sig), Some("msg-r"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "handled"));
    for _ in 0..3 {
        let (status, body) = send(delivery(addr, EVENT, Some(&sig), Some("msg-r"))).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"duplicate":true}"#)
        );
    }
    assert_eq!(seen.count(), 1);
    // Another delivery (another Msg-Id) is not a duplicate; nor is one without a Msg-Id.
    send(delivery(addr, EVENT, Some(&sig), Some("msg-s"))).await;
    send(delivery(addr, EVENT, Some(&sig), None)).await;
    send(delivery(addr, EVENT, Some(&sig), None)).await;
    assert_eq!(seen.count(), 4);
}

/// A router whose handler answers with the statuses of `script`, in order (200 after it).
fn scripted_app(calls: Arc<AtomicUsize>, script: Vec<StatusCode>) -> Router {
    let handler = move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let status = script.get(n).copied().unwrap_or(StatusCode::OK);
        async move { status }
    };
    Router::new()
        .route("/webhook", post(handler))
        .route_layer(VerifyWebhookLayer::new(SECRET))
}

#[tokio::test]
async fn a_retry_of_a_failed_delivery_reaches_the_handler() {
    let calls = Arc::new(AtomicUsize::new(0));
    let script = vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::TOO_MANY_REQUESTS,
    ];
    let addr = serve(scripted_app(calls.clone(), script)).await;
    let sig = webhook_signature(SECRET, EVENT);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            send(delivery(addr, EVENT, Some(&sig), Some("msg-x")))
                .await
                .0,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK,
            StatusCode::OK, // the duplicate, answered by the layer
        ]
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "only the delivered one is deduplicated"
    );
}

/// A handler held at a gate: it reports each entry, then waits for one permit.
fn gated_app(entered: mpsc::UnboundedSender<()>, gate: Arc<Semaphore>, fail_first: bool) -> Router {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = move || {
        let (entered, gate, calls) = (entered.clone(), gate.clone(), calls.clone());
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            entered.send(()).unwrap();
            gate.acquire().await.unwrap().forget();
            if fail_first && n == 0 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    };
    Router::new()
        .route("/webhook", post(handler))
        .route_layer(VerifyWebhookLayer::new(SECRET))
}

fn in_process(body: &[u8], msg_id: &str) -> Request<Body> {
    Request::post("/webhook")
        .header("x-douyin-signature", webhook_signature(SECRET, body))
        .header("msg-id", msg_id)
        .body(Body::from(body.to_vec()))
        .unwrap()
}

#[tokio::test]
async fn a_retry_during_the_first_delivery_waits_and_is_then_a_duplicate() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let app = gated_app(entered_tx, gate.clone(), false);

    let first = tokio::spawn(app.clone().oneshot(in_process(EVENT, "msg-w")));
    entered.recv().await.unwrap(); // the first delivery is in the handler
    let mut retry = tokio_test::task::spawn(app.clone().oneshot(in_process(EVENT, "msg-w")));
    assert!(
        retry.poll().is_pending(),
        "the retry waits for the first delivery"
    );
    assert!(
        entered.try_recv().is_err(),
        "the retry is not in the handler"
    );

    gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let retry = retry.await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    let body = retry.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"duplicate":true}"#);
    assert!(entered.try_recv().is_err(), "the handler ran once");
}

#[tokio::test]
async fn a_retry_during_a_failing_first_delivery_runs_after_it() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let app = gated_app(entered_tx, gate.clone(), true);

    let first = tokio::spawn(app.clone().oneshot(in_process(EVENT, "msg-v")));
    entered.recv().await.unwrap();
    let mut retry = tokio_test::task::spawn(app.clone().oneshot(in_process(EVENT, "msg-v")));
    assert!(retry.poll().is_pending());

    gate.add_permits(2);
    assert_eq!(
        first.await.unwrap().unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(retry.await.unwrap().status(), StatusCode::OK);
    assert!(entered.try_recv().is_ok(), "the retry reached the handler");
}

#[tokio::test]
async fn a_dropped_first_delivery_lets_the_retry_through() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let app = gated_app(entered_tx, gate.clone(), false);

    let first = tokio::spawn(app.clone().oneshot(in_process(EVENT, "msg-d")));
    entered.recv().await.unwrap();
    first.abort(); // the connection went away while the handler ran
    assert!(first.await.unwrap_err().is_cancelled());

    gate.add_permits(1);
    let retry = tokio::time::timeout(
        Duration::from_secs(10),
        app.oneshot(in_process(EVENT, "msg-d")),
    )
    .await
    .expect("the retry is not left waiting for the dropped delivery")
    .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert!(entered.try_recv().is_ok(), "the retry reached the handler");
}

/// A request body that sends `prefix` and then never ends (nor errors): a layer that read it to
/// the end would hang.
fn endless_after(prefix: usize) -> (ClientBody, mpsc::Sender<Result<Frame<Bytes>, BoxError>>) {
    let (tx, rx) = mpsc::channel(64);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let body = StreamBody::new(stream).boxed();
    let chunk = Bytes::from(vec![b'x'; 1024]);
    let mut sent = 0;
    while sent < prefix {
        let n = chunk.len().min(prefix - sent);
        tx.try_send(Ok(Frame::data(chunk.slice(..n)))).unwrap();
        sent += n;
    }
    (body, tx)
}

#[tokio::test]
async fn a_body_over_the_cap_gets_413_without_being_read_to_the_end() {
    let seen = Seen::default();
    let layer = VerifyWebhookLayer::new(SECRET).body_limit(16 * 1024);
    let addr = serve(webhook_app(seen.clone(), layer)).await;

    // Chunked, 16 KiB + 1 byte, then the body stays open.
    let (body, _keep_open) = endless_after(16 * 1024 + 1);
    let request = Request::post(format!("http://{addr}/webhook"))
        .header("x-douyin-signature", "0".repeat(40))
        .body(body)
        .unwrap();
    let (status, answer) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&answer), "body_too_large");

    // Content-Length over the cap: refused before a byte of the body is read.
    let (body, _keep_open) = endless_after(0);
    let request = Request::post(format!("http://{addr}/webhook"))
        .header("content-length", (16 * 1024 + 1).to_string())
        .body(body)
        .unwrap();
    let (status, _) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Exactly the cap is accepted (and verified).
    let big = vec![b' '; 16 * 1024];
    let sig = webhook_signature(SECRET, &big);
    let (status, answer) = send(delivery(addr, &big, Some(&sig), None)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "signed, but not a JSON object"
    );
    assert_eq!(error_code(&answer), "not_an_event");
    assert_eq!(seen.count(), 0);
}

/// A body of 1 KiB chunks without end that counts the bytes pulled from it, with a size hint
/// saying it has at least `lower` bytes.
struct Counted {
    pulled: Arc<AtomicUsize>,
    lower: u64,
    yielded: bool,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Every other poll yields to the runtime, so the test's timeout can fire if the layer
        // kept reading.
        let this = self.get_mut();
        this.yielded = !this.yielded;
        if this.yielded {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pulled.fetch_add(1024, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[b'x'; 1024])))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(self.lower);
        hint
    }
}

/// Sends an endless counted body through the layer (cap 8 KiB) and returns the status and the
/// bytes pulled from the body; the inner service must not be called.
async fn through_the_cap(lower: u64, content_length: Option<u64>) -> (StatusCode, usize) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = tower::service_fn({
        let calls = calls.clone();
        move |_: Request<CountedOrFull>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        }
    });
    let service = VerifyWebhookLayer::new(SECRET)
        .body_limit(8 * 1024)
        .layer(inner);
    let body = CountedOrFull::Counted(Counted {
        pulled: pulled.clone(),
        lower,
        yielded: false,
    });
    let mut request = Request::post("/");
    if let Some(n) = content_length {
        request = request.header("content-length", n);
    }
    // A layer that read past the cap would read this body for ever: fail instead of hanging.
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        service.oneshot(request.body(body).unwrap()),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    (answer.status(), pulled.load(Ordering::SeqCst))
}

#[tokio::test]
async fn reading_stops_at_the_cap() {
    assert_eq!(
        through_the_cap(0, None).await,
        (StatusCode::PAYLOAD_TOO_LARGE, 9 * 1024),
        "reading stopped at the first chunk past the cap"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    assert_eq!(
        through_the_cap(0, Some(8 * 1024 + 1)).await,
        (StatusCode::PAYLOAD_TOO_LARGE, 0),
        "Content-Length"
    );
    assert_eq!(
        through_the_cap(8 * 1024 + 1, None).await,
        (StatusCode::PAYLOAD_TOO_LARGE, 0),
        "the body's size hint"
    );
}

/// The request body of `reading_stops_at_the_cap`: the endless counted body going in, or the
/// `Full` the layer rebuilds from the bytes (the layer needs `From<Bytes>`).
enum CountedOrFull {
    Counted(Counted),
    Full(Full<Bytes>),
}

impl From<Bytes> for CountedOrFull {
    fn from(b: Bytes) -> Self {
        CountedOrFull::Full(Full::new(b))
    }
}

impl http_body::Body for CountedOrFull {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            CountedOrFull::Counted(c) => Pin::new(c).poll_frame(cx),
            CountedOrFull::Full(f) => Pin::new(f).poll_frame(cx),
        }
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            CountedOrFull::Counted(c) => c.size_hint(),
            CountedOrFull::Full(f) => f.size_hint(),
        }
    }
}

// ---- SPI ----

const NOW_MS: u64 = 1_790_574_887_543;

fn spi_app(seen: Seen, layer: VerifySpiLayer) -> Router {
    let handler = move |call: Option<Extension<SpiCall>>, body: Bytes| {
        let seen = seen.clone();
        async move {
            let call = call.map(|Extension(c)| c);
            let note = format!(
                "{:?}",
                call.as_ref()
                    .map(|c| (&c.client_key, &c.header_client_key, c.timestamp_ms))
            );
            seen.calls.lock().unwrap().push((None, body));
            note
        }
    };
    Router::new()
        .route("/spi/create_order", post(handler.clone()))
        .route("/spi/query", get(handler))
        .route_layer(layer)
}

fn fixed_clock(ms: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    move || UNIX_EPOCH + Duration::from_millis(ms)
}

fn spi_layer() -> VerifySpiLayer {
    VerifySpiLayer::new(SECRET).clock(fixed_clock(NOW_MS))
}

fn spi_request(
    addr: SocketAddr,
    path: &str,
    query: &str,
    body: &[u8],
    sign: Option<&str>,
) -> Request<ClientBody> {
    let mut request = Request::builder()
        .method(if body.is_empty() && path.ends_with("query") {
            "GET"
        } else {
            "POST"
        })
        .uri(format!("http://{addr}{path}?{query}"))
        .header("x-life-clientkey", "ck_header");
    if let Some(sign) = sign {
        request = request.header("x-life-sign", sign);
    }
    request.body(full(body.to_vec())).unwrap()
}

const ORDER: &[u8] =
    b"{\"order_id\":\"o-1\",\"pay_amount\":100,\n \"buyer\":{\"name\":\"\xe7\x90\x83\"}}";

#[tokio::test]
async fn a_signed_spi_call_reaches_the_handler_with_its_body_unchanged() {
    let seen = Seen::default();
    let addr = serve(spi_app(seen.clone(), spi_layer())).await;
    let query = format!("timestamp={NOW_MS}&client_key=ck_url&sign=old_md5_ignored&note=a+b%26c");
    let sign = spi_signature(SECRET, &query, ORDER);
    let (status, note) = send(spi_request(
        addr,
        "/spi/create_order",
        &query,
        ORDER,
        Some(&sign),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        note,
        format!("Some((Some(\"ck_url\"), Some(\"ck_header\"), {NOW_MS}))")
    );
    assert_eq!(seen.count(), 1);
    assert_eq!(&seen.get(0).1[..], ORDER);

    // A GET without a body: the parameters alone are signed.
    let query = format!("client_key=ck_url&timestamp={NOW_MS}");
    let sign = spi_signature(SECRET, &query, b"");
    let (status, _) = send(spi_request(addr, "/spi/query", &query, b"", Some(&sign))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn forged_missing_or_stale_spi_signatures_get_401() {
    let seen = Seen::default();
    let addr = serve(spi_app(seen.clone(), spi_layer())).await;
    let query = format!("client_key=ck_url&timestamp={NOW_MS}");
    let good = spi_signature(SECRET, &query, ORDER);
    let other_body = spi_signature(SECRET, &query, b"{\"order_id\":\"o-2\"}");
    let other_query = spi_signature(
        SECRET,
        &format!("client_key=ck_evil&timestamp={NOW_MS}"),
        ORDER,
    );
    let other_secret = spi_signature("another_secret", &query, ORDER);
    for (sign, code) in [
        (Some(other_body.as_str()), "invalid_signature"),
        (Some(other_query.as_str()), "invalid_signature"),
        (Some(other_secret.as_str()), "invalid_signature"),
        (Some(&good[..63]), "invalid_signature"),
        (None, "missing_signature"),
    ] {
        let (status, body) =
            send(spi_request(addr, "/spi/create_order", &query, ORDER, sign)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{sign:?}");
        assert_eq!(error_code(&body), code, "{sign:?}");
    }

    // Correctly signed, but outside the 5-minute window (either way), or with no timestamp.
    let window = 5 * 60 * 1000;
    for (ts, code) in [
        (Some(NOW_MS - window - 1), "stale_timestamp"),
        (Some(NOW_MS + window + 1), "stale_timestamp"),
        (None, "missing_timestamp"),
    ] {
        let query = match ts {
            Some(ts) => format!("client_key=ck_url&timestamp={ts}"),
            None => "client_key=ck_url".to_owned(),
        };
        let sign = spi_signature(SECRET, &query, ORDER);
        let (status, body) = send(spi_request(
            addr,
            "/spi/create_order",
            &query,
            ORDER,
            Some(&sign),
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{ts:?}");
        assert_eq!(error_code(&body), code, "{ts:?}");
    }
    assert_eq!(seen.count(), 0, "no rejected call reached the handler");

    // At the edges of the window: accepted.
    for ts in [NOW_MS - window, NOW_MS + window] {
        let query = format!("client_key=ck_url&timestamp={ts}");
        let sign = spi_signature(SECRET, &query, ORDER);
        let (status, _) = send(spi_request(
            addr,
            "/spi/create_order",
            &query,
            ORDER,
            Some(&sign),
        ))
        .await;
        assert_eq!(status, StatusCode::OK, "{ts}");
    }
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn an_spi_body_over_the_cap_gets_413_without_being_read_to_the_end() {
    let seen = Seen::default();
    let addr = serve(spi_app(seen.clone(), spi_layer().body_limit(4096))).await;
    let (body, _keep_open) = endless_after(4097);
    let query = format!("client_key=ck_url&timestamp={NOW_MS}");
    let request = Request::post(format!("http://{addr}/spi/create_order?{query}"))
        .header("x-life-sign", "0".repeat(64))
        .body(body)
        .unwrap();
    let (status, _) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(seen.count(), 0);
}

#[test]
fn secrets_stay_out_of_debug() {
    let webhook = format!("{:?}", VerifyWebhookLayer::new(SECRET));
    let spi = format!("{:?}", VerifySpiLayer::new(SECRET));
    assert!(
        !webhook.contains(SECRET) && webhook.contains("<redacted>"),
        "{webhook}"
    );
    assert!(!spi.contains(SECRET) && spi.contains("<redacted>"), "{spi}");
}

#[tokio::test(flavor = "current_thread")]
async fn rejections_are_traced_with_their_reason_and_without_the_secret() {
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = webhook_app(Seen::default(), VerifyWebhookLayer::new(SECRET));
    let mut forged = in_process(EVENT, "msg-t");
    forged.headers_mut().insert(
        "x-douyin-signature",
        webhook_signature("x", EVENT).parse().unwrap(),
    );
    assert_eq!(
        app.clone().oneshot(forged).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let spi = Router::new()
        .route("/", post(|| async { "" }))
        .route_layer(spi_layer());
    let query = format!("client_key=ck&timestamp={}", NOW_MS - 3_600_000);
    let stale = Request::post(format!("/?{query}"))
        .header("x-life-sign", spi_signature(SECRET, &query, b"{}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        spi.oneshot(stale).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("webhook rejected") && text.contains("reason=\"invalid_signature\""),
        "{text}"
    );
    assert!(text.contains("msg_id=\"msg-t\""), "{text}");
    assert!(
        text.contains("spi call rejected") && text.contains("reason=\"stale_timestamp\""),
        "{text}"
    );
    assert!(text.contains("douyin_auth"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

// ---- properties ----

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Flipping any bits of any byte of a signed body makes it a forgery.
    #[test]
    fn a_flipped_body_byte_gets_401(index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut body = EVENT.to_vec();
        let i = index.index(body.len());
        body[i] ^= mask;
        let calls = Arc::new(AtomicUsize::new(0));
        let app = scripted_app(calls.clone(), vec![]);
        let request = Request::post("/webhook")
            .header("x-douyin-signature", webhook_signature(SECRET, EVENT))
            .header("msg-id", "p")
            .body(Body::from(body))
            .unwrap();
        let status = runtime().block_on(app.oneshot(request)).unwrap().status();
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
        prop_assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// Flipping any bits of any byte of the signature makes it a forgery, unless the change is
    /// only the case of a hex letter (the same signature, accepted in either case).
    #[test]
    fn a_flipped_signature_byte_gets_401(index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let good = webhook_signature(SECRET, EVENT);
        let mut sig = good.clone().into_bytes();
        let i = index.index(sig.len());
        sig[i] ^= mask;
        let Ok(value) = http::HeaderValue::from_bytes(&sig) else {
            return Ok(()); // not a header value at all: it cannot be sent
        };
        let same = sig.eq_ignore_ascii_case(good.as_bytes());
        let calls = Arc::new(AtomicUsize::new(0));
        let app = scripted_app(calls.clone(), vec![]);
        let request = Request::post("/webhook")
            .header("x-douyin-signature", value)
            .body(Body::from(EVENT))
            .unwrap();
        let status = runtime().block_on(app.oneshot(request)).unwrap().status();
        if same {
            prop_assert_eq!(status, StatusCode::OK);
            prop_assert_eq!(calls.load(Ordering::SeqCst), 1);
        } else {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
            prop_assert_eq!(calls.load(Ordering::SeqCst), 0);
        }
    }

    /// The same for SPI calls: any flipped byte of the body, the query or the signature.
    #[test]
    fn a_flipped_spi_byte_gets_401(part in 0usize..3, index in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let query = format!("client_key=ck&timestamp={NOW_MS}");
        let good = spi_signature(SECRET, &query, ORDER);
        let (mut body, mut query, mut sig) = (ORDER.to_vec(), query.into_bytes(), good.clone().into_bytes());
        let target = [&mut body, &mut query, &mut sig][part].as_mut_slice();
        let i = index.index(target.len());
        target[i] ^= mask;
        let Ok(value) = http::HeaderValue::from_bytes(&sig) else { return Ok(()) };
        let Ok(query) = String::from_utf8(query) else { return Ok(()) };
        let Ok(uri) = format!("/?{query}").parse::<http::Uri>() else { return Ok(()) };
        // A query edit that decodes to the same parameters, or a case-only change of the hex,
        // is the same signed call.
        let same = signature_unchanged(uri.query().unwrap_or(""), &body, &sig, &good);
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/", post({
                let calls = calls.clone();
                move || { calls.fetch_add(1, Ordering::SeqCst); async { "ok" } }
            }))
            .route_layer(spi_layer());
        let request = Request::post(uri).header("x-life-sign", value).body(Body::from(body)).unwrap();
        let status = runtime().block_on(app.oneshot(request)).unwrap().status();
        if same {
            prop_assert_eq!(status, StatusCode::OK);
        } else {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
            prop_assert_eq!(calls.load(Ordering::SeqCst), 0);
        }
    }
}

/// Whether the flipped call still carries a valid signature: its hex equals the good one up to
/// case, and its query, re-signed, gives the same signature (e.g. `a=1` → `a=%31`, or an extra
/// `&`).
fn signature_unchanged(query: &str, body: &[u8], sig: &[u8], good: &str) -> bool {
    body == ORDER
        && sig.eq_ignore_ascii_case(good.as_bytes())
        && spi_signature(SECRET, query, body) == good
}

//! The layer: attaching, transparency, sharing, single-flight, staleness, failure, retry.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, NoRetry, StaticToken, Token, TokenPlacement};
use futures_util::future::join_all;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use support::*;
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};

const HOUR: Duration = Duration::from_secs(3600);

fn layer(source: Scripted) -> DouyinAuthLayer {
    DouyinAuthLayer::builder(source)
        .jitter(Duration::ZERO)
        .build()
}

#[tokio::test(start_paused = true)]
async fn attaches_header_and_passes_bodies_untouched() {
    let (mock, mut handle) = tower_test::mock::pair::<Req, Res>();
    let svc = layer(Scripted::new(HOUR)).layer(mock);
    let call = tokio::spawn(svc.oneshot(req(r#"{"q":1}"#)));

    let (seen, send) = handle.next_request().await.unwrap();
    assert_eq!(seen.headers()["access-token"], "clt.1");
    assert!(seen.headers()["access-token"].is_sensitive());
    assert_eq!(seen.headers()["content-type"], "application/json");
    assert_eq!(seen.uri(), "https://open.douyin.com/api/test/");
    assert_eq!(body_string(seen.into_body()).await, r#"{"q":1}"#);
    send.send_response(
        Response::builder()
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .header("x-extra", "1")
            .body(Full::new(Bytes::from_static(
                br#"{"data":{"error_code":0,"x":"y"}}"#,
            )))
            .unwrap(),
    );

    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["x-extra"], "1");
    assert_eq!(
        body_string(res.into_body()).await,
        r#"{"data":{"error_code":0,"x":"y"}}"#
    );
}

#[tokio::test(start_paused = true)]
async fn bearer_and_query_placements() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Request<()>>::new()));
    let s2 = seen.clone();
    let inner = tower::service_fn(move |r: Req| {
        let (parts, _) = r.into_parts();
        s2.lock().unwrap().push(Request::from_parts(parts, ()));
        async { Ok::<_, Infallible>(text("ok")) }
    });
    let bearer = DouyinAuthLayer::builder(StaticToken::new("clt.b"))
        .placement(TokenPlacement::Bearer)
        .build()
        .layer(inner.clone());
    bearer.oneshot(req("")).await.unwrap();
    let query = DouyinAuthLayer::builder(StaticToken::new("clt.q/+="))
        .placement(TokenPlacement::Query("access_token".into()))
        .build()
        .layer(inner);
    let r = Request::get("https://open.douyin.com/api/x/?open_id=o1")
        .body(Full::<Bytes>::default())
        .unwrap();
    query.oneshot(r).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].headers()["authorization"], "Bearer clt.b");
    assert!(seen[0].headers()["authorization"].is_sensitive());
    assert_eq!(
        seen[1].uri(),
        "https://open.douyin.com/api/x/?open_id=o1&access_token=clt.q%2F%2B%3D"
    );
    assert!(seen[1].headers().get("access-token").is_none());
}

#[tokio::test(start_paused = true)]
async fn cold_cache_64_concurrent_requests_make_one_fetch_and_clones_share() {
    let (source, gate) = Scripted::new(HOUR).gated();
    let layer = layer(source.clone());
    let rec = Recorder::new();
    let inner = rec.service(|_, _| text("ok"));
    let svc = layer.layer(inner.clone());
    let other = layer.clone().layer(inner);

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let svc = if i % 2 == 0 {
                svc.clone()
            } else {
                other.clone()
            };
            tokio::spawn(svc.oneshot(req("x")))
        })
        .collect();
    settle().await;
    assert_eq!(source.fetches(), 1);
    gate.add_permits(1);
    for r in join_all(calls).await {
        assert_eq!(r.unwrap().unwrap().status(), 200);
    }
    assert_eq!(source.fetches(), 1);
    assert_eq!(rec.count(), 64);
    assert!(rec.tokens().iter().all(|t| t == "clt.1"));
}

async fn expired_then_ok(expired: Res) {
    let (mock, mut handle) = tower_test::mock::pair::<Req, Res>();
    let source = Scripted::new(HOUR);
    let svc = layer(source.clone()).layer(mock);
    let call = tokio::spawn(svc.oneshot(req(r#"{"video":"v1"}"#)));

    let (first, send) = handle.next_request().await.unwrap();
    assert_eq!(token_of(&first), "clt.1");
    assert_eq!(body_string(first.into_body()).await, r#"{"video":"v1"}"#);
    send.send_response(expired);

    let (second, send) = handle.next_request().await.unwrap();
    assert_eq!(token_of(&second), "clt.2");
    assert_eq!(second.headers()["content-type"], "application/json");
    assert_eq!(body_string(second.into_body()).await, r#"{"video":"v1"}"#);
    send.send_response(json(r#"{"data":{"error_code":0}}"#));

    let res = call.await.unwrap().unwrap();
    assert_eq!(
        body_string(res.into_body()).await,
        r#"{"data":{"error_code":0}}"#
    );
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn http_401_refreshes_and_retries_once() {
    expired_then_ok(
        Response::builder()
            .status(401)
            .body(Full::default())
            .unwrap(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn every_douyin_expiry_shape_refreshes_and_retries_once() {
    for shape in EXPIRED_SHAPES {
        expired_then_ok(json(shape)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_expired_answer_reaches_the_caller_and_no_third_request_is_sent() {
    let rec = Recorder::new();
    let source = Scripted::new(HOUR);
    let svc = layer(source.clone()).layer(rec.service(|_, _| json(EXPIRED_SHAPES[0])));
    let res = svc.oneshot(req("payload")).await.unwrap();
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(rec.count(), 2);
    assert_eq!(rec.tokens(), ["clt.1", "clt.2"]);
    assert_eq!(source.fetches(), 2);
    let bodies: Vec<_> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(bodies, ["payload", "payload"]);
}

#[tokio::test(start_paused = true)]
async fn sixteen_concurrent_expiries_of_one_token_make_one_refresh() {
    let (source, gate) = Scripted::new(HOUR).gated();
    let rec = Recorder::new();
    let svc = layer(source.clone()).layer(rec.service(|token, _| {
        if token == "clt.1" {
            json(EXPIRED_SHAPES[2])
        } else {
            json(r#"{"err_no":0}"#)
        }
    }));
    gate.add_permits(1);
    let calls: Vec<_> = (0..16)
        .map(|_| tokio::spawn(svc.clone().oneshot(req("same"))))
        .collect();
    settle().await;
    gate.add_permits(1);
    for r in join_all(calls).await {
        let res = r.unwrap().unwrap();
        assert_eq!(body_string(res.into_body()).await, r#"{"err_no":0}"#);
    }
    assert_eq!(
        source.fetches(),
        2,
        "one fetch to start, ONE refresh for 16 expiries"
    );
    // The first request carried clt.1 and was rejected; the others read their bodies after
    // that, found clt.1 dropped, and waited for the same one refresh: nobody resends clt.1.
    let tokens = rec.tokens();
    assert_eq!(tokens.iter().filter(|t| *t == "clt.1").count(), 1);
    assert_eq!(tokens.iter().filter(|t| *t == "clt.2").count(), 16);
}

trait TapNoRetry {
    fn tap_no_retry(self) -> Self;
}

impl TapNoRetry for Req {
    fn tap_no_retry(mut self) -> Self {
        self.extensions_mut().insert(NoRetry);
        self
    }
}

#[tokio::test(start_paused = true)]
async fn business_errors_are_not_retried() {
    for body in [
        r#"{"data":{"error_code":2190004,"description":"no scope"}}"#,
        r#"{"err_no":28003018,"err_msg":"rate limited"}"#,
        r#"{"data":{"error_code":2190015},"extra":{"error_code":2190015}}"#,
    ] {
        let rec = Recorder::new();
        let source = Scripted::new(HOUR);
        let b = body.to_owned();
        let svc = layer(source.clone()).layer(rec.service(move |_, _| json(&b)));
        let res = svc.oneshot(req("x")).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, body);
        assert_eq!(rec.count(), 1);
        assert_eq!(source.fetches(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn stale_tokens_are_served_during_one_background_refresh_and_expired_ones_never_sent() {
    let (source, gate) = Scripted::new(Duration::from_secs(100)).gated();
    gate.add_permits(1);
    let layer = DouyinAuthLayer::builder(source.clone())
        .refresh_margin(Duration::from_secs(20))
        .expiry_margin(Duration::from_secs(5))
        .jitter(Duration::ZERO)
        .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| text("ok")));
    svc.clone().oneshot(req("a")).await.unwrap();
    assert_eq!(source.fetches(), 1);

    // 85 s in: stale (refresh from 80 s), still usable (until 95 s).
    advance(Duration::from_secs(85)).await;
    for _ in 0..10 {
        svc.clone().oneshot(req("b")).await.unwrap();
        settle().await;
    }
    assert_eq!(source.fetches(), 2, "exactly one background refresh");
    assert_eq!(
        source.completed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(rec.tokens().iter().all(|t| t == "clt.1"));

    // 96 s in: clt.1 may no longer be sent; the request waits for the refresh in flight.
    advance(Duration::from_secs(11)).await;
    let mut waiting = tokio::spawn(svc.clone().oneshot(req("c")));
    settle().await;
    assert!(futures_util::poll!(&mut waiting).is_pending());
    assert_eq!(rec.count(), 11);
    gate.add_permits(1);
    waiting.await.unwrap().unwrap();
    assert_eq!(rec.tokens().last().unwrap(), "clt.2");
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_gives_a_typed_error_keeps_a_valid_token_backs_off_and_recovers() {
    let source = Scripted::new(Duration::from_secs(100)).then(Step::Fail("boom"));
    let layer = DouyinAuthLayer::builder(source.clone())
        .refresh_margin(Duration::from_secs(20))
        .expiry_margin(Duration::from_secs(5))
        .jitter(Duration::ZERO)
        .backoff(Duration::from_secs(4), Duration::from_secs(30))
        .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| text("ok")));

    // Cold cache, failing source: a typed error, the source's message as its cause.
    let err = svc.clone().oneshot(req("a")).await.unwrap_err();
    assert!(matches!(err, Error::TokenSource(_)), "{err:?}");
    assert!(err.is_token_source());
    assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "boom");
    assert_eq!(source.fetches(), 1);

    // Backing off: the next request, with no token, waits for the next attempt (the floor,
    // within its wait budget) instead of failing at once, and recovers with it.
    let sent = tokio::time::Instant::now();
    svc.clone().oneshot(req("a")).await.unwrap();
    assert_eq!(
        sent.elapsed(),
        Duration::from_secs(4),
        "waited for the next attempt"
    );
    assert_eq!(source.fetches(), 2);
    assert_eq!(rec.tokens(), ["clt.2"]);

    // A failing background refresh keeps the still-valid token.
    source.push(Step::Fail("boom again"));
    advance(Duration::from_secs(85)).await;
    svc.clone().oneshot(req("b")).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(source.fetches(), 3);
    svc.clone().oneshot(req("c")).await.unwrap();
    assert_eq!(source.fetches(), 3, "backing off: no new refresh");
    assert_eq!(rec.tokens(), ["clt.2", "clt.2", "clt.2"]);
    advance(Duration::from_secs(4)).await;
    svc.clone().oneshot(req("d")).await.unwrap();
    tokio::task::yield_now().await;
    svc.clone().oneshot(req("e")).await.unwrap();
    assert_eq!(source.fetches(), 4);
    assert_eq!(rec.tokens().last().unwrap(), "clt.4");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_does_not_cancel_the_refresh() {
    let (source, gate) = Scripted::new(HOUR).gated();
    let layer = layer(source.clone());
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| text("ok")));
    let mut call = Box::pin(svc.clone().oneshot(req("a")));
    assert!(futures_util::poll!(&mut call).is_pending());
    drop(call);
    gate.add_permits(1);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        source.completed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(layer.cached_token().unwrap().secret(), "clt.1");
    svc.oneshot(req("b")).await.unwrap();
    assert_eq!(source.fetches(), 1);
    assert_eq!(rec.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_goes_out_once_and_the_expired_answer_reaches_the_caller() {
    use http_body_util::combinators::BoxBody;
    type B = BoxBody<Bytes, Infallible>;
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    let inner = tower::service_fn(move |r: Request<B>| {
        let n = c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let body = r.into_body().collect().await.unwrap().to_bytes();
            if n == 0 {
                assert_eq!(&body[..], b"part1part2");
            }
            Ok::<_, Infallible>(json(EXPIRED_SHAPES[0]))
        }
    });
    let source = Scripted::new(HOUR);
    let layer = layer(source.clone());
    let svc = layer.layer(inner);
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"part1"))),
        Ok(http_body::Frame::data(Bytes::from_static(b"part2"))),
    ]);
    let body: B = StreamBody::new(frames).boxed();
    let r = Request::post("https://open.douyin.com/x")
        .body(body)
        .unwrap();
    let res = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent once"
    );
    // The rejected token was dropped: the next request gets a new one.
    assert!(layer.cached_token().is_none());
    let empty = Full::new(Bytes::new()).map_err(|e| match e {}).boxed();
    let _ = svc.oneshot(Request::new(empty)).await;
    // clt.2 for the next request; it is rejected too and, being empty, replayed with clt.3.
    assert_eq!(source.fetches(), 3);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_replay_limit_and_no_retry_requests_go_out_once() {
    let rec = Recorder::new();
    let source = Scripted::new(HOUR);
    let svc = DouyinAuthLayer::builder(source.clone())
        .replay_limit(4)
        .build()
        .layer(rec.service(|_, _| json(EXPIRED_SHAPES[0])));
    let res = svc.clone().oneshot(req("12345")).await.unwrap();
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(rec.count(), 1);
    let res = svc.oneshot(req("123").tap_no_retry()).await.unwrap();
    assert_eq!(body_string(res.into_body()).await, EXPIRED_SHAPES[0]);
    assert_eq!(rec.count(), 2);
    assert_eq!(rec.tokens(), ["clt.1", "clt.2"]);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_header_value_is_a_typed_error_not_a_panic() {
    let svc = DouyinAuthLayer::new(StaticToken::new("clt.bad\nvalue"))
        .layer(Recorder::new().service(|_, _| text("ok")));
    let err = svc.oneshot(req("x")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidHeaderValue), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("clt.bad"));
}

#[tokio::test(start_paused = true)]
async fn tokens_go_only_to_allowed_targets() {
    let rec = Recorder::new();
    let svc =
        DouyinAuthLayer::new(StaticToken::new("clt.secret")).layer(rec.service(|_, _| text("ok")));
    for uri in [
        "https://evil.example/steal",
        "http://open.douyin.com/plain-http",
        "ftp://open.douyin.com/x",
    ] {
        let r = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
        let err = svc.clone().oneshot(r).await.unwrap_err();
        assert!(
            matches!(err, Error::DisallowedTarget { .. }),
            "{uri}: {err:?}"
        );
        assert!(!err.to_string().contains("clt.secret"));
    }
    assert_eq!(rec.count(), 0);
    let r = Request::get("http://127.0.0.1:9/x")
        .body(Full::<Bytes>::default())
        .unwrap();
    svc.oneshot(r).await.unwrap();
    assert_eq!(rec.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_peeked_body_reaches_the_caller_byte_for_byte_with_trailers() {
    use http_body_util::combinators::BoxBody;
    let inner = tower::service_fn(|_r: Req| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-trailer", "t".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"{\"data\":"))),
            Ok(http_body::Frame::data(Bytes::from_static(
                b"{\"error_code\":0}}",
            ))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let body: BoxBody<Bytes, Infallible> = StreamBody::new(frames).boxed();
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        )
    });
    let svc = DouyinAuthLayer::new(StaticToken::new("clt.x")).layer(inner);
    let res = svc.oneshot(req("")).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-trailer"], "t");
    assert_eq!(&collected.to_bytes()[..], b"{\"data\":{\"error_code\":0}}");
}

#[tokio::test(start_paused = true)]
async fn a_token_inside_the_refresh_window_does_not_cause_a_refresh_storm() {
    // Every fetch returns a token with only 30 s left: already inside a 10-minute margin.
    let source = Scripted::new(Duration::from_secs(30));
    let layer = DouyinAuthLayer::builder(source.clone())
        .jitter(Duration::ZERO)
        .build();
    let svc = layer.layer(Recorder::new().service(|_, _| text("ok")));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        svc.clone().oneshot(req("x")).await.unwrap();
        advance(Duration::from_millis(100)).await;
    }
    // 3000 requests over 300 s with 30-s tokens: one refresh per ~15 s at most.
    let fetches = source.fetches();
    assert!(fetches <= 25, "{fetches} fetches");
    assert!(fetches >= 10, "{fetches} fetches");
}

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let token = Token::new("act.SECRET1", HOUR).with_refresh_token("rft.SECRET2", HOUR);
    let layer = DouyinAuthLayer::new(StaticToken::from(token.clone()));
    let svc = layer.layer(tower::service_fn(|_r: Req| async {
        Ok::<_, Infallible>(text("ok"))
    }));
    svc.clone().oneshot(req("")).await.unwrap();
    let fut = svc.clone().call(req(""));
    let all = format!(
        "{token:?} {layer:?} {svc:?} {fut:?} {:?} {:?}",
        StaticToken::new("clt.SECRET3"),
        DouyinAuthLayer::builder(StaticToken::new("clt.SECRET4")),
    );
    for s in ["SECRET1", "SECRET2", "SECRET3", "SECRET4"] {
        assert!(!all.contains(s), "{s} in {all}");
    }
}

#[tokio::test(start_paused = true)]
async fn closures_are_sources() {
    let layer = DouyinAuthLayer::new(douyin_auth::source_fn(|| async {
        Ok::<_, BoxError>(Token::new("clt.closure", HOUR))
    }));
    let rec = Recorder::new();
    layer
        .layer(rec.service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    assert_eq!(rec.tokens(), ["clt.closure"]);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_times_out_still_runs_to_completion_and_its_token_is_used() {
    let (source, gate) = Scripted::new(HOUR).gated();
    let layer = DouyinAuthLayer::builder(source.clone())
        .jitter(Duration::ZERO)
        .refresh_timeout(Duration::from_secs(5))
        .build();
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| text("ok")));
    let err = svc.clone().oneshot(req("a")).await.unwrap_err();
    assert!(matches!(err, Error::RefreshTimeout(_)), "{err:?}");
    assert_eq!(
        source.completed.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // The source answers late: its token (perhaps bought with a consumed refresh token) is
    // not thrown away but published, and used without another fetch.
    gate.add_permits(1);
    settle().await;
    assert_eq!(
        source.completed.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(layer.cached_token().unwrap().secret(), "clt.1");
    svc.oneshot(req("b")).await.unwrap();
    assert_eq!(rec.tokens(), ["clt.1"]);
    assert_eq!(source.fetches(), 1);
}

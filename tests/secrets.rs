//! Secrets, tried on purpose: every public type and every error the crate makes from known
//! secrets is formatted (`Debug` and `Display`, down the whole chain of sources), every log
//! line is captured at TRACE, every request the HTTP client sees is formatted, and none of it
//! may hold a secret. Tokens are marked sensitive and go only to the configured hosts over
//! HTTPS (plain HTTP only to loopback, or where explicitly allowed), so a request sent or
//! redirected elsewhere never carries one.
#![cfg(all(feature = "mock", feature = "https"))]

mod support;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::{
    codes::CodeKind, parse_token_response, AuthorizationUrl, ClientCredentials,
    ClientTokenEndpoint, HttpsClient, OAuthClient, State, UserTokens,
};
use douyin_auth::expiry::{DouyinExpiry, GrpcExpiry, HeadVerdict};
use douyin_auth::mock::{MockDouyin, TokenFailure};
use douyin_auth::{
    source_fn, BoxError, DouyinAuthLayer, DouyinError, Error, NoRetry, StaticToken, Token,
    TokenPlacement,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tower::{Layer, Service, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const CLIENT_SECRET: &str = "cs.SECRET-CLIENT-0001";
const WRONG_SECRET: &str = "cs.SECRET-WRONG-0002";

// ----- a subscriber that keeps every field of every span and event -----

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        attrs.record(&mut Fields(&mut self.0.lock().unwrap()));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut out = self.0.lock().unwrap();
        let _ = write!(
            out,
            "\n{} {}: ",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

// ----- what was shown, and the secrets that must not be in it -----

#[derive(Default)]
struct Shown {
    text: String,
    secrets: Vec<String>,
}

impl Shown {
    fn debug(&mut self, v: &dyn std::fmt::Debug) {
        let _ = writeln!(self.text, "{v:?}");
        let _ = writeln!(self.text, "{v:#?}");
    }

    /// An error: its `Debug`, `Display` and those of every source in its chain.
    fn error(&mut self, e: &(dyn std::error::Error + 'static)) {
        let mut cur = Some(e);
        while let Some(e) = cur {
            let _ = writeln!(self.text, "{e} | {e:?} | {e:#?}");
            cur = e.source();
        }
    }

    fn secret(&mut self, s: &str) {
        assert!(s.len() >= 8, "too short to search for: {s:?}");
        self.secrets.push(s.to_owned());
    }

    fn token(&mut self, t: &Token) {
        self.secret(t.secret());
        if let Some(r) = t.refresh_token() {
            self.secret(r);
        }
        self.debug(t);
    }

    fn assert_clean(&self, logs: &str) {
        assert!(self.secrets.len() >= 10, "{:?}", self.secrets);
        for s in &self.secrets {
            assert!(
                !self.text.contains(s.as_str()),
                "secret {s:?} shown:\n{}",
                self.text
            );
            assert!(!logs.contains(s.as_str()), "secret {s:?} logged:\n{logs}");
        }
    }
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The HTTP client, recording the `Debug` of every request it sends (headers included).
fn recording_http(
    seen: Arc<Mutex<Vec<String>>>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = hyper_util::client::legacy::Error,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let client = http();
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        if let Some(v) = req.headers().get("access-token") {
            assert!(v.is_sensitive(), "the token header is not marked sensitive");
        }
        seen.lock().unwrap().push(format!("{req:?}"));
        client.request(req)
    })
}

async fn api<S>(svc: S, url: &str) -> Result<serde_json::Value, Error>
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<douyin_auth::ResponseBody<hyper::body::Incoming>>,
        Error = Error,
    >,
{
    let res = svc
        .oneshot(Request::get(url).body(Full::default()).unwrap())
        .await?;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Ok(serde_json::from_slice(&body).unwrap())
}

fn ok(v: &serde_json::Value) -> bool {
    v["data"]["error_code"].as_i64() == Some(0)
}

#[tokio::test(start_paused = true)]
async fn no_secret_in_any_debug_display_error_or_log() {
    let capture = Capture::default();
    // Global, not thread-local: tracing caches each call site's interest process-wide, so a
    // thread-local subscriber misses events whose call sites another test thread registered
    // first. Only this test sets it; the other tests' lines land here too.
    tracing::subscriber::set_global_default(capture.clone()).unwrap();
    let mut shown = Shown::default();
    shown.secret(CLIENT_SECRET);
    shown.secret(WRONG_SECRET);

    let mock = MockDouyin::builder()
        .client_secret(CLIENT_SECRET)
        .start()
        .await
        .unwrap();
    shown.debug(&mock);
    shown.debug(&MockDouyin::builder().client_secret(CLIENT_SECRET));
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let requests = Arc::new(Mutex::new(Vec::new()));

    // --- the client token: fetch, expiry, refresh, retry; then a wrong secret ---
    // (The token endpoint's own request carries the secret in its body by necessity; only the
    // API requests the layer sends are recorded.)
    let creds = ClientCredentials::with_client(mock.client_key(), CLIENT_SECRET, http())
        .base_url(mock.base_url());
    shown.debug(&creds);
    let layer = DouyinAuthLayer::builder(creds.clone()).build();
    shown.debug(&layer);
    let svc = layer.layer(recording_http(requests.clone()));
    assert!(ok(&api(svc.clone(), &url).await.unwrap()));
    shown.token(&layer.cached_token().unwrap());
    mock.expire_all_tokens();
    assert!(ok(&api(svc.clone(), &url).await.unwrap()));
    shown.token(&layer.cached_token().unwrap());
    shown.debug(&layer.layer(http()));
    let fut = svc
        .clone()
        .call(Request::get(url.as_str()).body(Full::default()).unwrap());
    shown.debug(&fut);
    let res = fut.await.unwrap();
    shown.debug(&res);
    drop(res);

    let wrong = ClientCredentials::with_client(mock.client_key(), WRONG_SECRET, http())
        .base_url(mock.base_url());
    shown.debug(&wrong);
    let err = DouyinAuthLayer::new(wrong.clone())
        .layer(http())
        .oneshot(Request::get(url.as_str()).body(Full::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.douyin().map(DouyinError::code), Some(10_013));
    shown.error(&err);
    for failure in [
        TokenFailure::Malformed,
        TokenFailure::HttpStatus(StatusCode::BAD_GATEWAY),
        TokenFailure::Code(10_020),
    ] {
        mock.fail_next_token_calls(1, failure);
        shown.error(&creds.fetch_token().await.unwrap_err());
    }

    // --- a user: adopt, expire, renew and refresh, a failing persistence hook, revocation ---
    let grant = mock.issue_user_tokens("open-secrets", ["user_info"]);
    shown.debug(&grant);
    shown.secret(&grant.access_token);
    shown.secret(&grant.refresh_token);
    let stored = Token::new(grant.access_token.clone(), 15 * DAY)
        .with_open_id("open-secrets")
        .with_refresh_token(grant.refresh_token.clone(), 30 * DAY)
        .with_scopes(["user_info"]);
    let persisted = Arc::new(Mutex::new(Vec::<Token>::new()));
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let (p, h) = (persisted.clone(), hook_calls.clone());
    let user = UserTokens::with_client(mock.client_key(), CLIENT_SECRET, stored, http())
        .base_url(mock.base_url())
        .renew_window(31 * DAY)
        .on_refresh(move |t: Token| {
            let (p, h) = (p.clone(), h.clone());
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err::<(), BoxError>("the database is down".into());
                }
                p.lock().unwrap().push(t);
                Ok(())
            }
        });
    shown.debug(&user);
    let user_layer = DouyinAuthLayer::new(user.clone());
    let user_svc = user_layer.layer(recording_http(requests.clone()));
    let user_url = format!("{url}?open_id=open-secrets");
    assert!(ok(&api(user_svc.clone(), &user_url).await.unwrap()));
    mock.expire_all_tokens();
    // The refresh's hook fails: the caller gets Douyin's answer, the failure is logged.
    assert!(!ok(&api(user_svc.clone(), &user_url).await.unwrap()));
    // The pair waits in memory; writing it fails once more, as a typed error.
    let err = user.fetch_token().await.unwrap_err();
    assert!(matches!(err, Error::Persist(_)), "{err:?}");
    shown.error(&err);
    // The new pair waits in memory for the hook; after the back-off it is handed out.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(ok(&api(user_svc.clone(), &user_url).await.unwrap()));
    for t in persisted.lock().unwrap().iter() {
        shown.token(t);
    }
    shown.token(&user.current());
    shown.debug(&user);
    shown.debug(&user_layer);
    mock.revoke_user("open-secrets");
    mock.expire_all_tokens();
    // No new token can be had: the caller gets Douyin's answer; the next request the error.
    assert!(!ok(&api(user_svc.clone(), &user_url).await.unwrap()));
    let err = api(user_svc.clone(), &user_url).await.unwrap_err();
    assert!(
        err.is_reauthorization_required() || err.is_token_source(),
        "{err:?}"
    );
    shown.error(&err);
    shown.error(&user.fetch_token().await.unwrap_err());

    // --- the authorization-code flow ---
    let oauth = OAuthClient::with_client(mock.client_key(), CLIENT_SECRET, http())
        .base_url(mock.base_url());
    shown.debug(&oauth);
    let builder = oauth
        .authorization_url("https://app.example/callback")
        .scope("user_info");
    let (_url, state) = builder.clone().build().unwrap();
    shown.secret(state.as_str());
    shown.debug(&state);
    shown.debug(&builder.state(state.clone()));
    let kept = State::from_string("state.SECRET-KEPT-0003");
    shown.secret(kept.as_str());
    shown.debug(&kept);
    shown.debug(&AuthorizationUrl::new("k", "https://app.example/cb").state(kept));
    let code = mock.authorize("open-oauth", ["user_info"]);
    shown.secret(&code);
    let token = oauth.exchange_code(&code).await.unwrap();
    shown.token(&token);
    shown.debug(&oauth.user_tokens(token));
    let err = oauth.exchange_code(&code).await.unwrap_err();
    assert_eq!(err.douyin().map(DouyinError::code), Some(10_007));
    shown.error(&err);

    // --- parsed answers and parse errors that held tokens ---
    let body = br#"{"data":{"access_token":"act.SECRET-PARSED-0004","refresh_token":"rft.SECRET-PARSED-0005","expires_in":7200,"error_code":0}}"#;
    shown.secret("act.SECRET-PARSED-0004");
    shown.secret("rft.SECRET-PARSED-0005");
    shown.debug(&parse_token_response(body).unwrap());
    for cut in [10, 30, 40, 60, body.len() - 1] {
        if let Err(e) = parse_token_response(&body[..cut]) {
            shown.error(&e);
        }
    }
    let bad = br#"{"data":{"access_token":"act.SECRET-PARSED-0004","expires_in":"soon"}}"#;
    shown.error(&parse_token_response(bad).unwrap_err());

    // --- the rest of the public types, built from secrets ---
    shown.secret("clt.SECRET-STATIC-0006");
    shown.secret("clt.SECRET-CLOSURE-0007");
    let st = StaticToken::new("clt.SECRET-STATIC-0006");
    shown.debug(&st);
    shown.debug(&DouyinAuthLayer::builder(st.clone()));
    let f = source_fn(|| async { Ok::<_, BoxError>(Token::new("clt.SECRET-CLOSURE-0007", HOUR)) });
    shown.debug(&f);
    let closure_layer = DouyinAuthLayer::new(f);
    closure_layer
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    shown.debug(&closure_layer);
    shown.debug(&TokenPlacement::Query("access_token".into()));
    shown.debug(&NoRetry);
    shown.debug(&DouyinExpiry::default());
    shown.debug(&GrpcExpiry);
    shown.debug(&HeadVerdict::PeekBody);
    shown.debug(&ClientTokenEndpoint::Classic);
    shown.debug(&HttpsClient::new());
    shown.debug(&mock.counters());
    let _ = writeln!(shown.text, "{}", CodeKind::of(10_013));

    // --- tokens that are refused, and requests sent where they must not go ---
    for bad in ["clt.SECRET-BAD\n-0008", "clt.SECRET-BAD\u{7f}-0009"] {
        let err = DouyinAuthLayer::new(StaticToken::new(bad))
            .layer(Recorder::new().service(|_, _| text("ok")))
            .oneshot(req(""))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidHeaderValue), "{err:?}");
        shown.error(&err);
        shown.secret("SECRET-BAD");
    }
    let st_svc = DouyinAuthLayer::new(st).layer(Recorder::new().service(|_, _| text("ok")));
    for uri in [
        "https://evil.example/?access_token=clt.SECRET-QUERY-0010",
        "https://user:clt.SECRET-USERINFO-0011@evil.example/",
    ] {
        let err = st_svc
            .clone()
            .oneshot(Request::get(uri).body(Full::default()).unwrap())
            .await
            .unwrap_err();
        shown.error(&err);
    }
    shown.secret("clt.SECRET-QUERY-0010");
    shown.secret("clt.SECRET-USERINFO-0011");

    // --- every request the HTTP client saw: headers marked sensitive, never shown ---
    let requests = requests.lock().unwrap();
    assert!(requests.iter().any(|r| r.contains("access-token")));
    for r in requests.iter() {
        shown.text.push_str(r);
    }
    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.contains("token refresh finished"), "{logs}");
    assert!(logs.contains("token refresh failed"), "{logs}");
    shown.assert_clean(&logs);
}

// ----- the sensitive flag on every placement and on the retry -----

#[tokio::test(start_paused = true)]
async fn the_token_header_is_sensitive_on_first_send_and_retry() {
    for placement in [
        TokenPlacement::default(),
        TokenPlacement::Bearer,
        TokenPlacement::Header(http::HeaderName::from_static("x-douyin-token")),
    ] {
        let name = match &placement {
            TokenPlacement::Bearer => "authorization".to_owned(),
            TokenPlacement::Header(h) => h.as_str().to_owned(),
            _ => unreachable!(),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let n = Arc::new(AtomicUsize::new(0));
        let inner = tower::service_fn(move |r: Req| {
            let v = r.headers().get(name.as_str()).cloned();
            s2.lock().unwrap().push(v);
            let first = n.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                Ok::<_, Infallible>(if first {
                    json(EXPIRED_SHAPES[0])
                } else {
                    json("{}")
                })
            }
        });
        let source = Scripted::new(HOUR);
        let svc = DouyinAuthLayer::builder(source)
            .placement(placement.clone())
            .build()
            .layer(inner);
        svc.oneshot(req("x")).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{placement:?}: first send and retry");
        for v in seen.iter() {
            let v = v.as_ref().unwrap();
            assert!(v.is_sensitive(), "{placement:?}");
            assert!(!format!("{v:?}").contains("clt."), "{placement:?}");
        }
    }
}

// ----- where tokens may go -----

fn allowed(layer: &DouyinAuthLayer, uri: &str) -> bool {
    let rec = Recorder::new();
    let svc = layer.layer(rec.service(|_, _| text("ok")));
    let r = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
    let out = futures_util::FutureExt::now_or_never(svc.oneshot(r)).expect("no waiting");
    match out {
        Ok(_) => {
            assert_eq!(rec.tokens(), ["clt.where"], "{uri}");
            true
        }
        Err(Error::DisallowedTarget { target }) => {
            assert_eq!(rec.count(), 0, "{uri}: nothing sent");
            assert!(!target.contains('/') || target.contains("://"), "{target}");
            assert!(!target.contains('?') && !target.contains('@'), "{target}");
            false
        }
        Err(e) => panic!("{uri}: {e:?}"),
    }
}

#[tokio::test]
async fn tokens_go_only_to_douyin_hosts_over_https_or_to_loopback() {
    let layer = DouyinAuthLayer::new(StaticToken::new("clt.where"));
    // Prime the cache so every check below runs without waiting.
    layer
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    for uri in [
        "https://open.douyin.com/x",
        "https://OPEN.DOUYIN.COM/x",
        "https://open.douyin.com:443/x",
        "https://open.snssdk.com/x",
        "https://open-api.ixigua.com/x",
        "https://developer.toutiao.com/x",
        "http://127.0.0.1:8080/x",
        "http://127.8.9.10/x",
        "http://[::1]:9/x",
        "http://localhost/x",
        "http://LOCALHOST:1/x",
        "/relative/path",
    ] {
        assert!(allowed(&layer, uri), "{uri} must be allowed");
    }
    for uri in [
        "http://open.douyin.com/x",
        "https://evil.example/x",
        "https://open.douyin.com.evil.example/x",
        "https://evilopen.douyin.com/x",
        "https://open.douyin.co/x",
        "https://douyin.com/x",
        "https://open.douyin.com@evil.example/x",
        "https://user:pw@evil.example/x",
        "https://evil.example/open.douyin.com",
        "https://evil.example/?next=https://open.douyin.com",
        "https://open.douyin.com./x",
        "ws://open.douyin.com/x",
        "wss://open.douyin.com/x",
        "ftp://open.douyin.com/x",
        "http://localhost.evil.example/x",
        "http://127.0.0.1.evil.example/x",
        "http://0.0.0.0/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.0.0.1/x",
        "http://[fe80::1]/x",
    ] {
        assert!(!allowed(&layer, uri), "{uri} must be refused");
    }

    let custom = DouyinAuthLayer::builder(StaticToken::new("clt.where"))
        .allow_host("api.partner.example")
        .build();
    custom
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    assert!(allowed(&custom, "https://api.partner.example/x"));
    assert!(!allowed(&custom, "http://api.partner.example/x"));
    assert!(!allowed(&custom, "https://sub.api.partner.example/x"));

    let insecure = DouyinAuthLayer::builder(StaticToken::new("clt.where"))
        .allow_insecure_http(true)
        .build();
    insecure
        .layer(Recorder::new().service(|_, _| text("ok")))
        .oneshot(req(""))
        .await
        .unwrap();
    assert!(allowed(&insecure, "http://open.douyin.com/x"));
    assert!(!allowed(&insecure, "http://evil.example/x"));
}

// Redirects that would carry the token off the allowed hosts: tests/redirects.rs (tower,
// over loopback with a redirecting server) and tests/reqwest_middleware.rs (reqwest).

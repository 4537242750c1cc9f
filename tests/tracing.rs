//! The tracing events and spans the crate emits: the documented names and fields show up, and
//! no secret (client secret, access or refresh token, authorization code) ever does.
#![cfg(all(feature = "mock", feature = "https"))]

mod support;

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::{ClientCredentials, OAuthClient};
use douyin_auth::mock::{MockDouyin, TokenFailure};
use douyin_auth::{source_fn, BoxError, DouyinAuthLayer, Token};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

/// Everything the subscriber writes, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A subscriber for this thread (the tests run on a current-thread runtime, so the refresh
/// tasks they spawn are seen too), recording every level of every target.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn assert_no_secret(log: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!log.contains(s.as_str()), "secret {s:?} in the log:\n{log}");
    }
}

#[tokio::test]
async fn refresh_expiry_retry_failure_and_persistence_are_traced_without_secrets() {
    let (captured, _guard) = capture();
    let mock = MockDouyin::start().await.unwrap();
    let mut secrets = vec![mock.client_secret().to_owned()];
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let layer = DouyinAuthLayer::new(source.clone());
    let client = layer.layer(http.clone());
    let url = format!(
        "{}/data/extern/billboard/hot_video/?open_id=o1",
        mock.base_url()
    );
    let get = || {
        http::Request::get(url.as_str())
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // A refresh, an expiry, a retry.
    let res = client.clone().oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    secrets.push(layer.cached_token().unwrap().secret().to_owned());
    mock.expire_all_tokens();
    let res = client.clone().oneshot(get()).await.unwrap();
    res.into_body().collect().await.unwrap();
    secrets.push(layer.cached_token().unwrap().secret().to_owned());

    // A failed refresh.
    mock.fail_next_token_calls(1, TokenFailure::Code(2_100_004));
    let cold = DouyinAuthLayer::new(source).layer(http.clone());
    assert!(cold.oneshot(get()).await.is_err());

    // A code exchange, then a user's refresh whose persistence hook fails.
    let code = mock.authorize("o-user", ["user_info"]);
    secrets.push(code.clone());
    let oauth = OAuthClient::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let token = oauth.exchange_code(&code).await.unwrap();
    secrets.push(token.secret().to_owned());
    secrets.push(token.refresh_token().unwrap().to_owned());
    let user = oauth
        .user_tokens(token)
        .on_refresh(|_t: Token| async { Err::<(), BoxError>("database unavailable".into()) });
    // The stored token is fresh: the first fetch adopts it, the next one refreshes.
    user.fetch_token().await.unwrap();
    let err = user.fetch_token().await.unwrap_err();
    assert!(matches!(err, douyin_auth::Error::Persist(_)), "{err:?}");
    secrets.push(user.current().secret().to_owned());
    secrets.push(user.current().refresh_token().unwrap().to_owned());

    let log = captured.text();
    for needle in [
        "token_refresh{source=",
        "token refresh started",
        "token refresh finished",
        "outcome=\"fetched\"",
        "duration_ms=",
        "generation=",
        "token expiry detected",
        "retry=true",
        "token invalidated",
        "retry sent",
        "token refresh failed",
        "outcome=\"error\"",
        "persisting a refreshed token failed",
        "open_id=\"o-user\"",
        "cause=",
    ] {
        assert!(
            log.contains(needle),
            "{needle:?} missing from the log:\n{log}"
        );
    }
    assert_no_secret(&log, &secrets);
}

#[tokio::test(start_paused = true)]
async fn stale_token_served_is_traced_without_the_token() {
    let (captured, _guard) = capture();
    let n = Arc::new(Mutex::new(0u32));
    let layer = DouyinAuthLayer::builder(source_fn(move || {
        let n = n.clone();
        async move {
            let mut n = n.lock().unwrap();
            *n += 1;
            Ok::<_, BoxError>(Token::new(
                format!("clt.very-secret-{n}"),
                Duration::from_secs(3600),
            ))
        }
    }))
    .jitter(Duration::ZERO)
    .build();
    let inner = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let svc = layer.layer(inner);
    let req = || {
        http::Request::get("https://open.douyin.com/x")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    svc.clone().oneshot(req()).await.unwrap();
    // Into the refresh margin (10 minutes before expiry): stale, still served.
    tokio::time::advance(Duration::from_secs(3600 - 5 * 60)).await;
    svc.clone().oneshot(req()).await.unwrap();
    support::settle().await;
    let log = captured.text();
    assert!(log.contains("stale token served"), "{log}");
    assert!(log.contains("token refresh finished"), "{log}");
    assert_no_secret(&log, &["very-secret".to_owned()]);
}

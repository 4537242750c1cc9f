//! Errors a new user can act on: `Display` of a failed request says once, in words, what failed
//! (the token endpoint request, the API request) and the root cause, with no repeated layers;
//! the typed kinds and `source()` chains stay. The source is named shortly in logs and `Debug`.
#![cfg(all(feature = "mock", feature = "https"))]

mod support;

use std::error::Error as _;

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::{source_fn, DouyinAuthLayer, DouyinError, Error, StaticToken};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

/// A loopback address nothing listens on: a port the OS gave us, then closed.
fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

/// Every message of the chain, top first.
fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        out.push(e.to_string());
        cur = e.source();
    }
    out
}

fn root(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).pop().unwrap()
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_the_connection_is_named_once_with_the_root_cause() {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let source = ClientCredentials::new("key", "secret.value").base_url(refused_base_url());
    let client = DouyinAuthLayer::new(source).layer(http);
    let err = client
        .oneshot(get("http://127.0.0.1:9/data/external/user/fans/"))
        .await
        .unwrap_err();

    let shown = err.to_string();
    assert!(err.is_token_source(), "{err:?}");
    assert!(
        shown.starts_with("could not get a token: the token endpoint request (/oauth/")
            && shown.contains("/) failed: "),
        "{shown}"
    );
    let root = root(&err);
    assert!(
        shown.ends_with(&root),
        "the root cause {root:?} in {shown:?}"
    );
    assert!(root.to_lowercase().contains("refused"), "{root}");
    assert_eq!(shown.matches("failed").count(), 1, "{shown}");
    // The typed kinds are still there below: the source's error is a `Service` error.
    let Error::TokenSource(shared) = &err else {
        panic!("{err:?}")
    };
    let inner = shared.get_ref().downcast_ref::<Error>().unwrap();
    assert!(matches!(inner, Error::Service(_)), "{inner:?}");
    assert!(chain(&err).len() >= 4, "{:?}", chain(&err));
}

#[tokio::test]
async fn an_api_request_that_fails_says_so_with_the_root_cause() {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = DouyinAuthLayer::new(StaticToken::new("clt.static")).layer(http);
    let url = format!("{}/data/external/user/fans/", refused_base_url());
    let err = client.oneshot(get(&url)).await.unwrap_err();
    assert!(matches!(err, Error::Service(_)), "{err:?}");
    let shown = err.to_string();
    assert!(shown.starts_with("the API request failed: "), "{shown}");
    let root = root(&err);
    assert!(
        shown.ends_with(&root),
        "the root cause {root:?} in {shown:?}"
    );
    assert!(err.source().is_some());
}

#[tokio::test]
async fn nested_layers_do_not_repeat_themselves() {
    // A layer over a layer over a client that fails: the outer error is the inner one, not
    // "the API request failed" wrapping "the API request failed".
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let inner = DouyinAuthLayer::new(StaticToken::new("clt.inner")).layer(http);
    let client = DouyinAuthLayer::new(StaticToken::new("clt.outer")).layer(inner);
    let url = format!("{}/data/external/user/fans/", refused_base_url());
    let err = client.oneshot(get(&url)).await.unwrap_err();
    assert!(matches!(err, Error::Service(_)), "{err:?}");
    let chain = chain(&err);
    assert_eq!(
        chain
            .iter()
            .filter(|m| m.starts_with("the API request failed"))
            .count(),
        1,
        "{chain:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_and_the_back_off_after_it_show_the_sources_error() {
    let source = source_fn(|| async { Err::<douyin_auth::Token, _>("the vault is sealed".into()) });
    let client = DouyinAuthLayer::new(source)
        .layer(support::Recorder::new().service(|_, _| support::text("ok")));
    let err = client.oneshot(support::req("")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not get a token: the vault is sealed"
    );

    // A rate-limit answer backs off past the wait budget: the next request fails at once.
    let source = source_fn(|| async {
        Err::<douyin_auth::Token, _>(DouyinError::new(10_020, "too many calls", None).into())
    });
    let client = DouyinAuthLayer::new(source)
        .layer(support::Recorder::new().service(|_, _| support::text("ok")));
    let first = client.clone().oneshot(support::req("")).await.unwrap_err();
    let cause = std::error::Error::source(&first).unwrap().to_string();
    assert!(
        cause.contains("10020") && cause.ends_with("too many calls"),
        "{cause}"
    );
    assert_eq!(first.to_string(), format!("could not get a token: {cause}"));
    let err = client.oneshot(support::req("")).await.unwrap_err();
    assert!(matches!(err, Error::Backoff { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.starts_with("could not get a token (the last refresh failed, next attempt in ")
            && shown.ends_with(&format!("): {cause}")),
        "{shown}"
    );
}

#[tokio::test]
async fn the_source_is_named_shortly_in_debug() {
    let mock = MockDouyin::start().await.unwrap();
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let layer = DouyinAuthLayer::new(source);
    let shown = format!("{layer:?}");
    assert!(shown.contains("source: \"ClientCredentials\""), "{shown}");
    assert!(!shown.contains("douyin_auth::douyin"), "{shown}");
}

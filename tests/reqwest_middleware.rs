//! `DouyinAuthMiddleware` on a reqwest-middleware client, against the embedded mock over
//! loopback HTTP.
#![cfg(all(feature = "reqwest-middleware", feature = "mock", feature = "https"))]

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::{DouyinAuthLayer, DouyinAuthMiddleware, NoRetry, TokenPlacement};
use http_body_util::{BodyExt, Full};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::Value;
use tower::{Layer, ServiceExt};

fn source(mock: &MockDouyin) -> ClientCredentials<douyin_auth::douyin::HttpsClient> {
    ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url())
}

fn client(mw: DouyinAuthMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new()).with(mw).build()
}

async fn json(res: reqwest::Response) -> Value {
    let bytes = res.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn attaches_the_token_and_hands_the_body_back_byte_for_byte() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(source(&mock)));
    let url = format!(
        "{}/data/extern/billboard/hot_video/?open_id=o1",
        mock.base_url()
    );

    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The answer was read to classify it; the URL and length survive the rebuild.
    assert_eq!(res.url().as_str(), url);
    let len = res.content_length();
    let body = json(res).await;
    assert!(len.is_some());
    assert_eq!(body["data"]["error_code"], 0);
    assert_eq!(body["data"]["token_type"], "client");
    assert_eq!(mock.counters().stable_client_token_calls, 1);

    // A second request reuses the cached token.
    client.get(&url).send().await.unwrap();
    assert_eq!(mock.counters().stable_client_token_calls, 1);
    assert_eq!(mock.counters().api_rejected(), 0);
}

#[tokio::test]
async fn expired_token_is_refreshed_and_the_request_sent_once_more() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(source(&mock)));
    let url = format!("{}/api/douyin/v1/video/list/", mock.base_url());

    client
        .post(&url)
        .body(r#"{"cursor":0}"#)
        .send()
        .await
        .unwrap();
    mock.expire_all_tokens();
    let res = client
        .post(&url)
        .body(r#"{"cursor":0}"#)
        .send()
        .await
        .unwrap();
    let body = json(res).await;
    assert_eq!(body["err_no"], 0, "{body}");
    let c = mock.counters();
    assert_eq!(c.stable_client_token_calls, 2);
    assert_eq!(c.api_expired, 1);
    assert_eq!(c.api_calls, 3);
}

#[tokio::test]
async fn http_401_is_expiry_too() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(source(&mock)));
    let url = format!("{}/test/401/x/", mock.base_url());
    client.get(&url).send().await.unwrap();
    mock.expire_all_tokens();
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(mock.counters().api_expired, 1);
    assert_eq!(mock.counters().stable_client_token_calls, 2);
}

#[tokio::test]
async fn no_retry_hands_back_the_expired_answer_and_the_next_request_gets_a_new_token() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(source(&mock)));
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    client.get(&url).send().await.unwrap();
    mock.expire_all_tokens();

    let res = client
        .get(&url)
        .with_extension(NoRetry)
        .send()
        .await
        .unwrap();
    let body = json(res).await;
    assert_eq!(body["data"]["error_code"], 2_190_008, "{body}");
    assert_eq!(mock.counters().api_calls, 2);

    let body = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["data"]["error_code"], 0, "{body}");
    assert_eq!(mock.counters().stable_client_token_calls, 2);
}

#[tokio::test]
async fn a_second_expired_answer_reaches_the_caller() {
    let mock = MockDouyin::start().await.unwrap();
    // Tokens the mock never issued (a new one each fetch): every answer is "invalid", so the
    // retry, with another token, fails too.
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let unknown = douyin_auth::source_fn(move || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            Ok(douyin_auth::Token::new(
                format!("clt.unknown{i}"),
                std::time::Duration::from_secs(3600),
            ))
        }
    });
    let client = client(DouyinAuthMiddleware::new(unknown));
    let url = format!("{}/oauth/userinfo/", mock.base_url());
    let body = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["data"]["error_code"], 2_190_002);
    assert_eq!(
        mock.counters().api_calls,
        2,
        "sent twice, never three times"
    );
}

/// A source that hands the rejected token back: the middleware does not resend it; the
/// caller gets the first answer.
#[tokio::test]
async fn the_rejected_token_is_never_resent() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(douyin_auth::StaticToken::new(
        "clt.unknown",
    )));
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let body = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["data"]["error_code"], 2_190_002);
    assert_eq!(
        mock.counters().api_calls,
        1,
        "sent once: never again with the same token"
    );
}

#[tokio::test]
async fn query_placement() {
    let mock = MockDouyin::start().await.unwrap();
    let layer = DouyinAuthLayer::builder(source(&mock))
        .placement(TokenPlacement::Query("access_token".into()))
        .build();
    let client = client(DouyinAuthMiddleware::from_layer(&layer));
    let url = format!(
        "{}/data/extern/billboard/hot_video/?open_id=o1",
        mock.base_url()
    );
    let body = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["data"]["error_code"], 0, "{body}");
}

#[tokio::test]
async fn disallowed_hosts_get_no_token() {
    let client = client(DouyinAuthMiddleware::new(douyin_auth::StaticToken::new(
        "clt.secret-token",
    )));
    let err = client
        .get("http://example.invalid/x?access_token=nope")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_middleware());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret-token"), "{shown}");
    assert!(!shown.contains("nope"), "{shown}");
}

#[tokio::test]
async fn tower_layer_and_middleware_share_one_cache() {
    let mock = MockDouyin::start().await.unwrap();
    let layer = DouyinAuthLayer::new(source(&mock));
    let mw_client = client(DouyinAuthMiddleware::from_layer(&layer));

    let hyper_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
    let tower_client = layer.layer(hyper_client);
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());

    let res = tower_client
        .clone()
        .oneshot(
            http::Request::get(url.as_str())
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["data"]["error_code"], 0);

    let body = json(mw_client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["data"]["error_code"], 0);
    assert_eq!(mock.counters().stable_client_token_calls, 1, "one fetch");

    // An expiry seen by the middleware refreshes the token the tower client uses too.
    mock.expire_all_tokens();
    mw_client.get(&url).send().await.unwrap();
    let fresh = layer.cached_token().unwrap();
    let res = tower_client
        .oneshot(
            http::Request::get(url.as_str())
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(layer.cached_token().unwrap(), fresh);
    assert_eq!(mock.counters().stable_client_token_calls, 2);
}

#[tokio::test]
async fn a_body_that_cannot_be_cloned_goes_out_once_and_the_next_request_gets_a_new_token() {
    let mock = MockDouyin::start().await.unwrap();
    let client = client(DouyinAuthMiddleware::new(source(&mock)));
    let url = format!("{}/api/douyin/v1/video/list/", mock.base_url());
    client.get(&url).send().await.unwrap();
    mock.expire_all_tokens();

    // A wrapped http_body is a stream to reqwest: `try_clone` gives `None`.
    let streaming = reqwest::Body::wrap(Full::new(Bytes::from_static(br#"{"cursor":0}"#)));
    let res = client.post(&url).body(streaming).send().await.unwrap();
    let body = json(res).await;
    assert_eq!(body["err_no"], 28_001_008, "{body}");
    assert_eq!(mock.counters().api_calls, 2, "no retry");

    let body = json(client.post(&url).body("{}").send().await.unwrap()).await;
    assert_eq!(body["err_no"], 0, "{body}");
    assert_eq!(mock.counters().stable_client_token_calls, 2);
}

#[tokio::test]
async fn with_the_token_in_the_query_a_transport_error_does_not_print_it() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let layer = DouyinAuthLayer::builder(douyin_auth::StaticToken::new("clt.QUERY-SECRET"))
        .placement(TokenPlacement::Query("access_token".into()))
        .build();
    let client = client(DouyinAuthMiddleware::from_layer(&layer));
    let err = client
        .get(format!("http://{closed}/api/x/"))
        .send()
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("QUERY-SECRET"), "{shown}");
}

#[path = "support/redirects.rs"]
mod redirects;

fn redirect_middleware() -> DouyinAuthMiddleware {
    DouyinAuthMiddleware::from_layer(
        &DouyinAuthLayer::builder(douyin_auth::StaticToken::new("clt.secret-token"))
            .allow_host("api.test")
            .allow_insecure_http(true)
            .build(),
    )
}

/// With the middleware's redirect policy, reqwest does not follow a redirect off the allowed
/// hosts: the token never reaches the other host, and the 3xx reaches the caller.
#[tokio::test]
async fn with_the_redirect_policy_the_token_never_follows_a_redirect_elsewhere() {
    let pair = redirects::RedirectPair::start("evil.test").await;
    let mw = redirect_middleware();
    let http = reqwest::Client::builder()
        .redirect(mw.redirect_policy())
        .resolve("api.test", pair.api)
        .resolve("evil.test", pair.evil)
        .build()
        .unwrap();
    let client = ClientBuilder::new(http).with(mw).build();
    let url = format!("http://api.test:{}/x", pair.api.port());
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert!(pair.reached_evil.lock().unwrap().is_empty());
}

/// Without the policy (reqwest's default follows), the middleware refuses the answer that
/// came from elsewhere, so the caller never takes it for Douyin's.
#[tokio::test]
async fn without_the_policy_an_answer_from_another_host_is_refused() {
    let pair = redirects::RedirectPair::start("evil.test").await;
    let http = reqwest::Client::builder()
        .resolve("api.test", pair.api)
        .resolve("evil.test", pair.evil)
        .build()
        .unwrap();
    let client = ClientBuilder::new(http).with(redirect_middleware()).build();
    let url = format!("http://api.test:{}/x", pair.api.port());
    let err = client.get(&url).send().await.unwrap_err();
    let douyin = match &err {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<douyin_auth::Error>(),
        _ => None,
    };
    assert!(
        matches!(douyin, Some(douyin_auth::Error::DisallowedTarget { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn form_placement() {
    let mock = MockDouyin::start().await.unwrap();
    let layer = DouyinAuthLayer::builder(source(&mock))
        .placement(TokenPlacement::form())
        .build();
    let client = client(DouyinAuthMiddleware::from_layer(&layer));
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let body = json(
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("cursor=0&access_token=forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["data"]["error_code"], 0, "{body}");
    assert_eq!(body["data"]["token_type"], "client");
    // A JSON body cannot carry the token as a form field: refused, nothing sent.
    let err = client
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    assert_eq!(mock.counters().api_calls, 1);
}

//! What a new user reaches for first: the built-in HTTPS client as the layer's inner client for
//! any replayable body, and `StoredUsers` made from the `OAuthClient` that exchanged the codes.
#![cfg(all(feature = "mock", feature = "https"))]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::{ClientCredentials, HttpsClient, OAuthClient};
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::MemoryStore;
use douyin_auth::users::StoredUsers;
use douyin_auth::{DouyinAuthLayer, ReplayBody, Token, TokenSource};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Calls the mock's fans endpoint through the layer over `HttpsClient<B>` and returns the body.
async fn fans_over<B>(mock: &MockDouyin) -> Bytes
where
    B: ReplayBody + http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<douyin_auth::BoxError>,
{
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let client = DouyinAuthLayer::new(source).layer(HttpsClient::<B>::with_body());
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let request = http::Request::get(url)
        .body(B::from_bytes(Bytes::new()))
        .unwrap();
    let answer = client.oneshot(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn the_https_client_carries_a_boxed_body_behind_the_layer() {
    let mock = MockDouyin::start().await.unwrap();
    let body = fans_over::<UnsyncBoxBody<Bytes, Infallible>>(&mock).await;
    assert!(
        body.starts_with(br#"{"data":{"description":"","error_code":0"#),
        "{body:?}"
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_https_client_carries_an_axum_body_behind_the_layer() {
    let mock = MockDouyin::start().await.unwrap();
    let body = fans_over::<axum::body::Body>(&mock).await;
    assert!(
        body.starts_with(br#"{"data":{"description":"","error_code":0"#),
        "{body:?}"
    );
}

#[tokio::test]
async fn stored_users_from_oauth_refresh_with_the_oauth_clients_key_secret_and_base_url() {
    let mock = MockDouyin::start().await.unwrap();
    let oauth = OAuthClient::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let users = StoredUsers::from_oauth(&oauth, MemoryStore::new());
    let grant = mock.issue_user_tokens("u1", ["user_info"]);
    // The stored access token has expired, so the first fetch refreshes it at the mock: with
    // the default base URL it would go to open.douyin.com, with a wrong key or secret the mock
    // would refuse it.
    let stored = Token::new(grant.access_token.clone(), Duration::ZERO)
        .with_open_id(grant.open_id.clone())
        .with_refresh_token(grant.refresh_token.clone(), DAY);
    users.save(&stored).await.unwrap();
    let token = users.user("u1").fetch().await.unwrap();
    let counters = mock.counters();
    assert_eq!((counters.renew_calls, counters.refresh_calls), (1, 1));
    assert!(
        token.remaining() > DAY,
        "the mock's new lifetime: {:?}",
        token.remaining()
    );
}

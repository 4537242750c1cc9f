//! A hyper-util legacy `Client<HttpConnector, Full<Bytes>>` behind `DouyinAuthLayer`, calling
//! the embedded mock Douyin server over real loopback HTTP.
//!
//! Run it with `cargo run --example hyper_client`. It starts the mock, calls a user API with
//! the app's client token, lets every token expire on the mock's side, calls again (the layer
//! sees the expiry code, refreshes the token and sends the request once more), prints what
//! happened and exits.

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::DouyinAuthLayer;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockDouyin::start().await?;
    println!("mock Douyin listening on {}", mock.base_url());

    // The app's client token, fetched from the mock's stable endpoint.
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());

    // The user's existing HTTP client, unchanged ...
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // ... with the layer in front of it.
    let client = ServiceBuilder::new()
        .layer(DouyinAuthLayer::new(source))
        .service(http);

    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let call = |client: douyin_auth::DouyinAuth<_>| {
        let url = url.clone();
        async move {
            let request = http::Request::get(url).body(Full::<Bytes>::default())?;
            let response = client.oneshot(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((status, String::from_utf8_lossy(&body).into_owned()))
        }
    };

    let (status, body) = call(client.clone()).await?;
    println!("first call:  HTTP {status} {body}");
    assert!(body.contains(r#""error_code":0"#), "{body}");

    mock.expire_all_tokens();
    println!("the mock expired every token it issued");

    let (status, body) = call(client.clone()).await?;
    println!("second call: HTTP {status} {body}");
    assert!(body.contains(r#""error_code":0"#), "{body}");

    let counters = mock.counters();
    println!(
        "token fetches: {}, API calls: {} ({} answered \"expired\", then retried once)",
        counters.stable_client_token_calls, counters.api_calls, counters.api_expired
    );
    assert_eq!(counters.stable_client_token_calls, 2);
    assert_eq!(counters.api_expired, 1);
    assert_eq!(counters.api_calls, 3);
    mock.shutdown().await;
    Ok(())
}

//! Quickstart: a hyper client with `DouyinAuthLayer` calling the embedded mock Douyin server.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No credentials and no network: the mock runs on 127.0.0.1. The example calls an API, makes
//! the mock expire every token, and calls again: the layer sees Douyin's "access token
//! expired" answer, fetches a new token once and sends the request once more.

use std::process::ExitCode;

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::{BoxError, DouyinAuthLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // 1. The mock Douyin OpenAPI server, on a random loopback port.
    let mock = MockDouyin::start().await?;
    let base = mock.base_url();
    println!("mock Douyin server   {base}");

    // 2. The token source (the stable client-token endpoint) and the layer, stacked on a
    //    plain hyper-util client: the only two lines a real service needs.
    let source = ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(&base);
    let client = ServiceBuilder::new()
        .layer(DouyinAuthLayer::new(source))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    // 3. Call an API: the layer fetches the client token and attaches it.
    let url = format!("{base}/data/extern/billboard/hot_video/");
    let first = call(&client, &url).await?;
    println!("first call           {first}");

    // 4. Douyin expires the token; the next call is answered "access token expired"
    //    (code 2190008), and the layer refreshes and retries once, transparently.
    mock.expire_all_tokens();
    println!("mock                 expired every token");
    let second = call(&client, &url).await?;
    println!("second call          {second}");

    let c = mock.counters();
    println!(
        "what happened        {} token fetches, {} API requests ({} answered \"expired\", then retried)",
        c.all_client_token_calls(),
        c.api_calls,
        c.api_expired,
    );
    if c.all_client_token_calls() != 2 || c.api_calls != 3 || c.api_expired != 1 {
        return Err("the mock saw something other than fetch, call, expire, refresh, retry".into());
    }
    Ok(())
}

type Layered = douyin_auth::DouyinAuth<
    Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
>;

/// Sends one GET and returns "HTTP status, Douyin error code".
async fn call(client: &Layered, url: &str) -> Result<String, BoxError> {
    let req = http::Request::get(url).body(Full::default())?;
    let res = client.clone().oneshot(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let code = &json["data"]["error_code"];
    Ok(format!("HTTP {status}, Douyin error_code {code}"))
}

//! An axum app whose handlers call Douyin through ONE shared, layered client held in the app
//! state: a hyper-util `Client<HttpConnector, axum::body::Body>` behind `DouyinAuthLayer`.
//!
//! Run it with `cargo run --example axum_app --features axum`. It starts the embedded mock
//! Douyin server, serves the app on `127.0.0.1:0`, calls its own routes (as a browser would),
//! lets every token expire on the mock's side, calls again, prints what happened and exits.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::{DouyinAuth, DouyinAuthLayer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one client every handler shares: clones share the connection pool and the token cache.
type DouyinClient = DouyinAuth<Client<HttpConnector, Body>>;

#[derive(Clone)]
struct AppState {
    douyin: DouyinClient,
    base_url: String,
}

/// Sends `path` to Douyin through the shared client and streams the answer back.
async fn forward(state: &AppState, path_and_query: String) -> Response {
    let request = match http::Request::get(format!("{}{path_and_query}", state.base_url))
        .body(Body::empty())
    {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match state.douyin.clone().oneshot(request).await {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, ct.clone());
            }
            response
        }
        // The error never carries a token.
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct OpenId {
    open_id: String,
}

async fn fans(State(state): State<AppState>, Query(q): Query<OpenId>) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("open_id", &q.open_id)
        .finish();
    forward(&state, format!("/data/extern/billboard/hot_video/?{query}")).await
}

async fn poi(State(state): State<AppState>) -> Response {
    forward(&state, "/goodlife/v1/poi/query/".to_owned()).await
}

/// A tiny "browser": GET on the app, the body as text.
async fn get_text(
    browser: &Client<HttpConnector, Full<Bytes>>,
    url: String,
) -> Result<(StatusCode, String), BoxError> {
    let res = browser.get(url.parse()?).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockDouyin::start().await?;
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());

    let douyin = ServiceBuilder::new()
        .layer(DouyinAuthLayer::new(source))
        .service(Client::builder(TokioExecutor::new()).build_http::<Body>());
    let app = Router::new()
        .route("/fans", get(fans))
        .route("/poi", get(poi))
        .with_state(AppState {
            douyin,
            base_url: mock.base_url(),
        });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("app on {app_url}, mock Douyin on {}", mock.base_url());

    let browser = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut seen = HashMap::new();
    for (i, path) in ["/fans?open_id=alice", "/poi", "/fans?open_id=bob"]
        .into_iter()
        .enumerate()
    {
        if i == 2 {
            mock.expire_all_tokens();
            println!("the mock expired every token it issued");
        }
        let (status, body) = get_text(&browser, format!("{app_url}{path}")).await?;
        println!("GET {path} -> {status} {body}");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#""error_code":0"#), "{body}");
        seen.insert(path, body);
    }

    let c = mock.counters();
    println!(
        "one shared client: {} token fetches for {} Douyin calls ({} answered \"expired\" and were retried)",
        c.stable_client_token_calls, c.api_calls, c.api_expired
    );
    assert_eq!(c.stable_client_token_calls, 2);
    assert_eq!(c.api_expired, 1);
    assert_eq!(c.api_calls, 4);

    server.abort();
    mock.shutdown().await;
    Ok(())
}

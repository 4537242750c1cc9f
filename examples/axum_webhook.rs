//! An axum app receiving Douyin's calls: event webhooks behind `VerifyWebhookLayer`, a
//! life-service SPI route behind `VerifySpiLayer`.
//!
//! Run with `cargo run --example axum_webhook --features webhook`. It serves on a loopback
//! port, then plays Douyin against itself: a signed event, a forged one, an unsigned one, the
//! URL-verification challenge, a repeated delivery (Douyin's retry), and SPI calls (signed,
//! forged, stale). It checks every answer and exits with an error if one is wrong.
//!
//! In production, put the app behind HTTPS (Douyin calls `https://` URLs only) and pass the
//! secret from your configuration: the app's `client_secret` (or, for products that issue one,
//! the webhook key shown in the console).

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::routing::post;
use axum::{Extension, Router};
use douyin_auth::webhook::{
    spi_signature, webhook_signature, SpiCall, VerifySpiLayer, VerifyWebhookLayer, WebhookEvent,
};
use douyin_auth::BoxError;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// What the handlers did, in order.
type Journal = Arc<Mutex<Vec<String>>>;

/// The webhook handler: the layer has checked the signature, answered the challenge and
/// dropped retries, so this runs once per genuine delivery.
async fn on_event(
    Extension(journal): Extension<Journal>,
    Extension(event): Extension<WebhookEvent>,
    body: Bytes,
) -> StatusCode {
    let line = format!(
        "event {} from {} ({} bytes, msg {})",
        event.event,
        event.from_user_id.as_deref().unwrap_or("-"),
        body.len(),
        event.msg_id.as_deref().unwrap_or("-"),
    );
    println!("handler: {line}");
    journal.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    StatusCode::OK
}

/// An SPI handler: answers in Douyin's SPI shape.
async fn create_order(
    Extension(journal): Extension<Journal>,
    Extension(call): Extension<SpiCall>,
    body: Bytes,
) -> &'static str {
    let line = format!(
        "spi create_order for {} ({} bytes)",
        call.client_key.as_deref().unwrap_or("-"),
        body.len()
    );
    println!("handler: {line}");
    journal.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    r#"{"data":{"error_code":0,"description":"success"}}"#
}

fn app(secret: &str, journal: Journal) -> Router {
    let webhooks = Router::new()
        .route("/douyin/webhook", post(on_event))
        .route_layer(VerifyWebhookLayer::new(secret));
    let spi = Router::new()
        .route("/douyin/spi/create_order", post(create_order))
        .route_layer(VerifySpiLayer::new(secret));
    webhooks.merge(spi).layer(Extension(journal))
}

struct Douyin {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    secret: String,
}

impl Douyin {
    /// Delivers `body` to the webhook route, signed with `key` (or unsigned).
    async fn deliver(
        &self,
        body: &str,
        key: Option<&str>,
        msg_id: Option<&str>,
    ) -> Result<(StatusCode, String), BoxError> {
        let mut request = Request::post(format!("{}/douyin/webhook", self.base))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header(
                "x-douyin-signature",
                webhook_signature(key, body.as_bytes()),
            );
        }
        if let Some(id) = msg_id {
            request = request.header("msg-id", id);
        }
        self.send(request.body(Full::new(Bytes::from(body.to_owned())))?)
            .await
    }

    /// Calls the SPI route with the given timestamp, signed with `key`.
    async fn spi(
        &self,
        body: &str,
        timestamp_ms: u128,
        key: &str,
    ) -> Result<(StatusCode, String), BoxError> {
        let query = format!("client_key=your_client_key&timestamp={timestamp_ms}");
        let request = Request::post(format!("{}/douyin/spi/create_order?{query}", self.base))
            .header("content-type", "application/json")
            .header("x-life-clientkey", "your_client_key")
            .header("x-life-sign", spi_signature(key, &query, body.as_bytes()))
            .body(Full::new(Bytes::from(body.to_owned())))?;
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, String), BoxError> {
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn expect(
    what: &str,
    got: (StatusCode, String),
    status: StatusCode,
    body: Option<&str>,
) -> Result<(), BoxError> {
    let ok = got.0 == status && body.is_none_or(|b| got.1 == b);
    println!("{:<44} -> {} {}", what, got.0.as_u16(), got.1);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {status} {body:?}, got {} {:?}",
            got.0, got.1
        )
        .into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(true)
        .init();

    let secret = "your_client_secret";
    let journal = Journal::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, app(secret, journal.clone())).into_future());
    println!("serving on {base}");

    let douyin = Douyin {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base,
        secret: secret.to_owned(),
    };
    let key = douyin.secret.as_str();
    let event = r#"{"event":"authorize","client_key":"your_client_key","from_user_id":"open_id_1","content":{"scopes":["user_info"]}}"#;

    let challenge = r#"{"event":"verify_webhook","client_key":"your_client_key","content":{"challenge":12345}}"#;
    expect(
        "URL verification (challenge)",
        douyin.deliver(challenge, Some(key), None).await?,
        StatusCode::OK,
        Some(r#"{"challenge":12345}"#),
    )?;
    expect(
        "signed event",
        douyin.deliver(event, Some(key), Some("msg-1")).await?,
        StatusCode::OK,
        Some(""),
    )?;
    expect(
        "Douyin's retry of the same delivery",
        douyin.deliver(event, Some(key), Some("msg-1")).await?,
        StatusCode::OK,
        Some(r#"{"duplicate":true}"#),
    )?;
    expect(
        "forged event (wrong key)",
        douyin
            .deliver(event, Some("guessed_secret"), Some("msg-2"))
            .await?,
        StatusCode::UNAUTHORIZED,
        None,
    )?;
    expect(
        "unsigned event",
        douyin.deliver(event, None, Some("msg-3")).await?,
        StatusCode::UNAUTHORIZED,
        None,
    )?;

    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let order = r#"{"order_id":"o-1","pay_amount":100}"#;
    expect(
        "signed SPI call",
        douyin.spi(order, now_ms, key).await?,
        StatusCode::OK,
        Some(r#"{"data":{"error_code":0,"description":"success"}}"#),
    )?;
    expect(
        "forged SPI call",
        douyin.spi(order, now_ms, "guessed_secret").await?,
        StatusCode::UNAUTHORIZED,
        None,
    )?;
    expect(
        "replayed SPI call, an hour old",
        douyin.spi(order, now_ms - 3_600_000, key).await?,
        StatusCode::UNAUTHORIZED,
        None,
    )?;

    let journal = journal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let expected = [
        format!(
            "event authorize from open_id_1 ({} bytes, msg msg-1)",
            event.len()
        ),
        format!(
            "spi create_order for your_client_key ({} bytes)",
            order.len()
        ),
    ];
    if journal != expected {
        return Err(format!("the handlers ran {journal:?}, expected {expected:?}").into());
    }
    println!("ok: each genuine call reached its handler once; every forgery was refused");
    server.abort();
    Ok(())
}

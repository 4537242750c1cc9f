//! Verifying Douyin's calls into your app: event webhooks and life-service SPI calls
//! (feature `webhook`).
//!
//! Apps that call Douyin also receive Douyin's calls: event webhooks (a user authorised or
//! cancelled, a message, an order) and life-service SPI requests (create an order, check a
//! booking). Each is signed. The two layers here check the signature over the raw body bytes,
//! in constant time, before any handler runs:
//!
//! | layer | header | signature | also |
//! | --- | --- | --- | --- |
//! | [`VerifyWebhookLayer`] | `X-Douyin-Signature` | hex SHA-1 of `secret \|\| raw body` | answers the `verify_webhook` challenge; drops a repeated `Msg-Id`; a [`WebhookEvent`] extension |
//! | [`VerifySpiLayer`] | `x-life-sign` | hex SHA-256 of `secret&k=v&…&http_body=<raw body>` | the millisecond `timestamp` parameter within a window; a [`SpiCall`] extension |
//!
//! A missing or wrong signature, or a stale SPI timestamp, gets **401** with a JSON error and
//! the handler is never called; a body over the limit (1 MiB by default) gets **413** without
//! being read further. The handler gets the body byte for byte. Rejections are logged as
//! tracing events (target `douyin_auth`, WARN, messages `webhook rejected` and
//! `spi call rejected`) with the reason (`missing_signature`, `invalid_signature`,
//! `missing_timestamp`, `stale_timestamp`, `body_too_large`, `unreadable_body`,
//! `not_an_event`, `no_challenge`), never with the secret or the signature.
//!
//! # Which secret
//!
//! Douyin signs webhooks with the app's `client_secret` in the open-platform and life-service
//! docs ("AppSecret" in the console); some mini-app products issue a separate webhook key in the
//! console. SPI calls are signed with the life-service app's `client_secret`. The layers take
//! the secret as a parameter: pass whichever your product's console names.
//!
//! # Example
//!
//! An axum route behind [`VerifyWebhookLayer`] (`examples/axum_webhook.rs` is a complete app
//! that sends itself signed, forged, challenge and repeated deliveries):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{body::Bytes, routing::post, Extension, Router};
//! use douyin_auth::webhook::{webhook_signature, VerifyWebhookLayer, WebhookEvent};
//! use tower::ServiceExt;
//!
//! async fn on_event(Extension(event): Extension<WebhookEvent>, body: Bytes) -> &'static str {
//!     // `body` is the signed body byte for byte; `event` its parsed envelope.
//!     assert_eq!(event.event, "authorize");
//!     assert_eq!(&body[..], br#"{"event":"authorize","client_key":"ck","content":{}}"#);
//!     "ok"
//! }
//!
//! let secret = "your_client_secret"; // or the webhook key your console shows
//! let app = Router::new()
//!     .route("/douyin/webhook", post(on_event))
//!     .route_layer(VerifyWebhookLayer::new(secret));
//!
//! // What Douyin sends:
//! let body = r#"{"event":"authorize","client_key":"ck","content":{}}"#;
//! let request = http::Request::post("/douyin/webhook")
//!     .header("x-douyin-signature", webhook_signature(secret, body.as_bytes()))
//!     .header("msg-id", "m-1")
//!     .body(axum::body::Body::from(body))?;
//! assert_eq!(app.clone().oneshot(request).await?.status(), 200);
//!
//! // A forgery:
//! let request = http::Request::post("/douyin/webhook")
//!     .header("x-douyin-signature", "0".repeat(40))
//!     .body(axum::body::Body::from(body))?;
//! assert_eq!(app.oneshot(request).await?.status(), 401);
//! # Ok(()) }
//! ```
//!
//! Use `route_layer` (or a nested router) so that only the webhook route is verified; with
//! `Router::layer` the check also runs before the 404 of unknown paths. Any other tower service
//! works too, if its request body can be built from [`Bytes`](bytes::Bytes)
//! (`axum::body::Body`, `http_body_util::Full<Bytes>`); in front of a hyper service that takes
//! `hyper::body::Incoming`, map the body first (e.g. `.map_request(|r: Request<Incoming>|
//! r.map(axum::body::Body::new))`).
//!
//! # SPI calls
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::post, Extension, Router};
//! use douyin_auth::webhook::{spi_signature, SpiCall, VerifySpiLayer};
//! use tower::ServiceExt;
//!
//! async fn create_order(Extension(call): Extension<SpiCall>) -> &'static str {
//!     assert_eq!(call.client_key.as_deref(), Some("ck"));
//!     r#"{"data":{"error_code":0,"description":"success"}}"#
//! }
//!
//! let app = Router::new()
//!     .route("/douyin/spi/create_order", post(create_order))
//!     .route_layer(VerifySpiLayer::new("your_client_secret"));
//!
//! let now_ms = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)?
//!     .as_millis();
//! let query = format!("client_key=ck&timestamp={now_ms}");
//! let body = r#"{"order_id":"o-1"}"#;
//! let request = http::Request::post(format!("/douyin/spi/create_order?{query}"))
//!     .header("x-life-sign", spi_signature("your_client_secret", &query, body.as_bytes()))
//!     .body(axum::body::Body::from(body))?;
//! assert_eq!(app.oneshot(request).await?.status(), 200);
//! # Ok(()) }
//! ```
//!
//! # What was checked against what
//!
//! - Webhook signature: Douyin's webhook overview (open platform, "消息来源验证") and its Go
//!   demo (`sha1.New()`, write the secret, write the body, lowercase hex); the life-service
//!   webhook page names the key "AppSecret". Hex is accepted in either case.
//! - Challenge: `{"event":"verify_webhook","client_key":"…","content":{"challenge":12345}}`,
//!   answered with the JSON text `{"challenge":12345}`; the layer echoes the raw JSON of the
//!   value, so a number of any size is returned exactly. A content sent as a JSON string (the
//!   life-service shape) is looked into too.
//! - SPI signature: Douyin's "SPI签名规则" page gives the layout
//!   `yyyyyy&client_key=xxxxxx&timestamp=1624293280123&http_body=zzzzzz` (secret first,
//!   parameters except `sign` sorted by key, each as `&k=v`, the raw body last as
//!   `&http_body=`), SHA-256, and says not to re-serialise the body. The unit tests check the
//!   functions against hashlib. Chosen where the doc is silent, following the Go verifiers
//!   published by integrators (which read the parameters with Go's `url.Query()`): values are
//!   percent-decoded (`+` is a space), a repeated key's values are sorted too, `&http_body=` is
//!   added for a non-empty body (an empty POST also accepts the `&http_body=` form), hex in
//!   either case. This layout also reproduces a signed callback that an integrator published as
//!   captured from Douyin (both its SHA-256 header and its MD5 `sign`).
//! - Retries: Douyin waits 5 s for an answer and retries up to 3 times; `Msg-Id` identifies a
//!   delivery. The life-service docs add that Douyin does not guarantee a single delivery.
//! - SPI timestamp: the `timestamp` URL parameter, in milliseconds.

use std::fmt;
use std::sync::Arc;

mod body;
mod dedup;
mod event;
mod future;
mod layer;
mod signature;
mod spi;

pub use body::ResponseBody;
pub use event::WebhookEvent;
pub use future::ResponseFuture;
pub use layer::{VerifyWebhook, VerifyWebhookLayer, DEFAULT_DEDUP_CAPACITY, DEFAULT_DEDUP_WINDOW};
pub use signature::{
    spi_signature, verify_spi_signature, verify_webhook_signature, webhook_signature,
};
pub use spi::{SpiCall, VerifySpi, VerifySpiLayer, DEFAULT_SPI_WINDOW};

/// The largest request body the layers accept by default: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The webhook signature header, `X-Douyin-Signature`.
pub const SIGNATURE_HEADER: &str = "x-douyin-signature";

/// The webhook delivery id header, `Msg-Id`: the same for Douyin's retries of one delivery.
pub const MSG_ID_HEADER: &str = "msg-id";

/// The SPI signature header, `x-life-sign`.
pub const SPI_SIGN_HEADER: &str = "x-life-sign";

/// The SPI client key header, `x-life-clientkey` (a label; not signed).
pub const SPI_CLIENT_KEY_HEADER: &str = "x-life-clientkey";

/// A secret whose `Debug` never shows the value.
#[derive(Clone)]
struct Secret(Arc<str>);

impl Secret {
    fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

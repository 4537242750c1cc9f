//! [`VerifySpiLayer`] and [`VerifySpi`]: Douyin's life-service SPI calls, verified.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{read_capped, ReadError, Reject, ResponseBody};
use super::future::ResponseFuture;
use super::signature::{query_pairs, verify_spi_signature};
use super::{Secret, DEFAULT_BODY_LIMIT, SPI_CLIENT_KEY_HEADER, SPI_SIGN_HEADER};
use crate::BoxError;

/// How far a call's `timestamp` may be from the clock by default: 5 minutes either way.
pub const DEFAULT_SPI_WINDOW: Duration = Duration::from_secs(5 * 60);

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone)]
struct Config {
    secret: Secret,
    body_limit: usize,
    window: Duration,
    clock: Clock,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("secret", &self.secret)
            .field("body_limit", &self.body_limit)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// What [`VerifySpi`] checked, put in the request's extensions for the inner service (read it
/// in axum with `Extension<SpiCall>`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpiCall {
    /// The `client_key` URL parameter (signed), if present.
    pub client_key: Option<String>,
    /// The `x-life-clientkey` header (not signed: Douyin sends it as a label only; it differs
    /// from `client_key` for apps migrated to the service-provider platform).
    pub header_client_key: Option<String>,
    /// The call's `timestamp` parameter, in milliseconds since the Unix epoch (signed, and
    /// within the window).
    pub timestamp_ms: u64,
}

/// Verifies Douyin's life-service SPI calls before the inner service sees them.
///
/// For each call, [`VerifySpi`]:
///
/// 1. buffers the body up to the [body limit](Self::body_limit) (1 MiB by default; **413**
///    past it, without reading further);
/// 2. checks `x-life-sign`: the hex SHA-256 of
///    `secret&k1=v1&k2=v2…&http_body=<raw body>`, the URL parameters except `sign`
///    percent-decoded and sorted by key, `&http_body=…` only for a non-empty body (see
///    [`spi_signature`](super::spi_signature)), compared in constant time; a missing or
///    wrong signature gets **401** with a JSON error and the inner service is not called;
/// 3. checks the signed `timestamp` parameter (milliseconds): missing, or further than the
///    [window](Self::timestamp_window) from the clock in either direction, gets **401**;
/// 4. calls the inner service with the body byte for byte and a [`SpiCall`] extension.
///
/// Only the new header signature (`x-life-sign`, SHA-256) is checked, as Douyin recommends for
/// every new integration; the old MD5 `sign` URL parameter is ignored. Within its window a
/// captured call can be sent again: make the inner service idempotent on the call's business id
/// (`order_id`, …), as Douyin's SPI docs ask anyway.
///
/// # Which secret
///
/// The life-service app's `client_secret` ("AppSecret"); for a service provider, the provider
/// app's secret. Never in `Debug`, logs or errors.
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug)]
#[must_use]
pub struct VerifySpiLayer {
    config: Arc<Config>,
}

impl VerifySpiLayer {
    /// A layer verifying SPI calls signed with `secret` (the app's `client_secret`).
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            config: Arc::new(Config {
                secret: Secret::new(secret),
                body_limit: DEFAULT_BODY_LIMIT,
                window: DEFAULT_SPI_WINDOW,
                clock: Arc::new(SystemTime::now),
            }),
        }
    }

    /// The largest body accepted, in bytes ([`DEFAULT_BODY_LIMIT`], 1 MiB, by default).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = bytes;
        self
    }

    /// How far the call's `timestamp` may be from the clock, either way
    /// ([`DEFAULT_SPI_WINDOW`], 5 minutes, by default).
    pub fn timestamp_window(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).window = window;
        self
    }

    /// The wall clock the timestamp is checked against (`SystemTime::now` by default), e.g. a
    /// fixed time in tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }
}

impl<S> Layer<S> for VerifySpiLayer {
    type Service = VerifySpi<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifySpi {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`VerifySpiLayer`]: see there for what it checks.
#[derive(Clone, Debug)]
pub struct VerifySpi<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> VerifySpi<S> {
    /// Wraps `inner`, verifying SPI calls signed with `secret`, with the default options.
    pub fn new(inner: S, secret: impl Into<String>) -> Self {
        VerifySpiLayer::new(secret).layer(inner)
    }

    /// A [`VerifySpiLayer`] (the same as [`VerifySpiLayer::new`]).
    pub fn layer(secret: impl Into<String>) -> VerifySpiLayer {
        VerifySpiLayer::new(secret)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifySpi<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(serve(inner, Arc::clone(&self.config), request))
    }
}

async fn serve<S, ReqBody, ResBody>(
    mut inner: S,
    config: Arc<Config>,
    request: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let reject = |reason: Reject| {
        crate::metrics::webhook_rejected("spi", reason.code());
        tracing::warn!(
            target: "douyin_auth",
            reason = reason.code(),
            path = parts.uri.path(),
            "spi call rejected"
        );
        Ok(reason.response())
    };

    let bytes = match read_capped(&parts.headers, body, config.body_limit).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => return reject(Reject::TooLarge),
        Err(ReadError::Body(error)) => {
            crate::metrics::webhook_rejected("spi", Reject::UnreadableBody.code());
            tracing::warn!(
                target: "douyin_auth",
                reason = Reject::UnreadableBody.code(),
                error = %error,
                "spi call rejected"
            );
            return Ok(Reject::UnreadableBody.response());
        }
    };
    let query = parts.uri.query().unwrap_or("");
    let Some(signature) = parts.headers.get(SPI_SIGN_HEADER) else {
        return reject(Reject::MissingSignature);
    };
    let is_post = parts.method == Method::POST;
    if !verify_spi_signature(
        config.secret.expose(),
        query,
        is_post,
        &bytes,
        signature.as_bytes(),
    ) {
        return reject(Reject::InvalidSignature);
    }

    let mut client_key = None;
    let mut timestamp = None;
    for (k, v) in query_pairs(query) {
        match k.as_slice() {
            b"client_key" if client_key.is_none() => {
                client_key = Some(String::from_utf8_lossy(&v).into_owned());
            }
            b"timestamp" if timestamp.is_none() => {
                timestamp = Some(
                    std::str::from_utf8(&v)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok()),
                );
            }
            _ => {}
        }
    }
    let Some(Some(timestamp_ms)) = timestamp else {
        return reject(Reject::MissingTimestamp);
    };
    let now_ms = (config.clock)()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let window_ms = u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX);
    if now_ms.abs_diff(timestamp_ms) > window_ms {
        return reject(Reject::StaleTimestamp);
    }

    let call = SpiCall {
        client_key,
        header_client_key: parts
            .headers
            .get(SPI_CLIENT_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        timestamp_ms,
    };
    let mut request = Request::from_parts(parts, ReqBody::from(bytes));
    request.extensions_mut().insert(call);
    inner
        .call(request)
        .await
        .map(|r| r.map(ResponseBody::inner))
}

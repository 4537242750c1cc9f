//! [`VerifyWebhookLayer`] and [`VerifyWebhook`]: Douyin's event webhooks, verified.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{json, read_capped, ReadError, Reject, ResponseBody};
use super::dedup::{Claim, Dedup, Ticket};
use super::event::{challenge_answer, WebhookEvent};
use super::future::ResponseFuture;
use super::signature::verify_webhook_signature;
use super::{Secret, DEFAULT_BODY_LIMIT, MSG_ID_HEADER, SIGNATURE_HEADER};
use crate::BoxError;

/// How long a delivered `Msg-Id` is remembered by default: one hour.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60 * 60);

/// How many `Msg-Id`s are remembered at most by default (about 100 bytes each).
pub const DEFAULT_DEDUP_CAPACITY: usize = 10_000;

#[derive(Clone, Debug)]
struct Config {
    secret: Secret,
    body_limit: usize,
    unsigned_challenge: bool,
}

/// Verifies Douyin's event webhooks before the inner service sees them.
///
/// For each call, [`VerifyWebhook`]:
///
/// 1. buffers the body up to the [body limit](Self::body_limit) (1 MiB by default): a longer
///    body (declared by `Content-Length`, or seen while reading, which stops there) gets
///    **413**;
/// 2. checks `X-Douyin-Signature`, the hex SHA-1 of `secret || body` over the bytes as received,
///    in constant time: a missing or wrong signature gets **401** with a JSON error
///    (`{"error":"invalid_signature","message":"…"}`) and the inner service is not called;
/// 3. answers Douyin's URL verification (`"event":"verify_webhook"`) itself with
///    `{"challenge":N}`, `N` echoed exactly as sent;
/// 4. answers a repeated `Msg-Id` (a retry of a delivery the inner service already took, within
///    the [window](Self::dedup_window)) with **200** `{"duplicate":true}` so Douyin stops
///    retrying, without calling the inner service;
/// 5. otherwise calls the inner service with the body byte for byte (rebuilt with
///    `From<Bytes>`) and a [`WebhookEvent`] extension holding the parsed envelope. A body that is
///    not a JSON object gets **400**.
///
/// # Which secret
///
/// Douyin signs with the app's `client_secret` for the open-platform (dop) and life-service
/// webhooks ("AppSecret" in the console); some mini-app products issue a separate webhook key in
/// the console. Pass whichever your product's console names. The secret never appears in
/// `Debug`, logs or errors.
///
/// # Retries and failures
///
/// A `Msg-Id` counts as delivered only when the inner service answers with a 2xx status. If it
/// fails, answers anything else, or its future is dropped (the connection went away), the id is
/// forgotten and Douyin's retry reaches the inner service again: a delivery is never lost to
/// deduplication. A retry that arrives while the first delivery is still running waits for it,
/// then is answered as a duplicate (first one succeeded) or runs (first one failed). Ids are
/// remembered per layer, in memory, in bounded space: past the
/// [capacity](Self::dedup_capacity) the oldest are forgotten first. Several instances behind a
/// load balancer each remember their own ids: deduplicate in a shared store as well if a retry
/// may reach another instance.
///
/// # Sharing
///
/// Clones of the layer, and every service it builds, share one table of ids. The setters
/// that change the table (`dedup_window`, `dedup_capacity`) start a new one: call them before
/// cloning.
///
/// See the [module docs](super) for an example.
#[derive(Clone, Debug)]
#[must_use]
pub struct VerifyWebhookLayer {
    config: Arc<Config>,
    dedup: Option<Arc<Dedup>>,
    window: Duration,
    capacity: usize,
}

impl VerifyWebhookLayer {
    /// A layer verifying webhooks signed with `secret` (the app's `client_secret`, or the
    /// webhook key of your product's console).
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            config: Arc::new(Config {
                secret: Secret::new(secret),
                body_limit: DEFAULT_BODY_LIMIT,
                unsigned_challenge: false,
            }),
            dedup: Some(Arc::new(Dedup::new(
                DEFAULT_DEDUP_CAPACITY,
                DEFAULT_DEDUP_WINDOW,
            ))),
            window: DEFAULT_DEDUP_WINDOW,
            capacity: DEFAULT_DEDUP_CAPACITY,
        }
    }

    /// The largest body accepted, in bytes ([`DEFAULT_BODY_LIMIT`], 1 MiB, by default).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).body_limit = bytes;
        self
    }

    /// How long a delivered `Msg-Id` is remembered ([`DEFAULT_DEDUP_WINDOW`], one hour, by
    /// default). `Duration::ZERO` turns deduplication off.
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.window = window;
        self.rebuild_dedup();
        self
    }

    /// How many `Msg-Id`s are remembered at most ([`DEFAULT_DEDUP_CAPACITY`] by default); `0`
    /// turns deduplication off.
    pub fn dedup_capacity(mut self, ids: usize) -> Self {
        self.capacity = ids;
        self.rebuild_dedup();
        self
    }

    /// Answer the `verify_webhook` challenge even when it is not signed (off by default: the
    /// doc's signing example is a `verify_webhook` body, so Douyin signs it). Echoing the
    /// challenge reveals nothing and calls nothing; turn this on only if your console's URL
    /// check fails with the signature enforced. Every other event still needs its signature.
    pub fn answer_unsigned_challenge(mut self, yes: bool) -> Self {
        Arc::make_mut(&mut self.config).unsigned_challenge = yes;
        self
    }

    fn rebuild_dedup(&mut self) {
        self.dedup = (self.capacity > 0 && !self.window.is_zero())
            .then(|| Arc::new(Dedup::new(self.capacity, self.window)));
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook {
            inner,
            config: Arc::clone(&self.config),
            dedup: self.dedup.clone(),
        }
    }
}

/// The service of [`VerifyWebhookLayer`]: see there for what it checks and answers.
#[derive(Clone, Debug)]
pub struct VerifyWebhook<S> {
    inner: S,
    config: Arc<Config>,
    dedup: Option<Arc<Dedup>>,
}

impl<S> VerifyWebhook<S> {
    /// Wraps `inner`, verifying webhooks signed with `secret`, with the default options.
    pub fn new(inner: S, secret: impl Into<String>) -> Self {
        VerifyWebhookLayer::new(secret).layer(inner)
    }

    /// A [`VerifyWebhookLayer`] (the same as [`VerifyWebhookLayer::new`]).
    pub fn layer(secret: impl Into<String>) -> VerifyWebhookLayer {
        VerifyWebhookLayer::new(secret)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyWebhook<S>
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
        // The instance that was polled ready goes into the future; a clone stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let dedup = self.dedup.clone();
        ResponseFuture::new(deliver(inner, config, dedup, request))
    }
}

async fn deliver<S, ReqBody, ResBody>(
    mut inner: S,
    config: Arc<Config>,
    dedup: Option<Arc<Dedup>>,
    request: Request<ReqBody>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let msg_id = parts
        .headers
        .get(MSG_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reject = |reason: Reject| {
        crate::metrics::webhook_rejected("webhook", reason.code());
        tracing::warn!(
            target: "douyin_auth",
            reason = reason.code(),
            msg_id = msg_id.as_deref().unwrap_or(""),
            "webhook rejected"
        );
        Ok(reason.response())
    };

    let bytes = match read_capped(&parts.headers, body, config.body_limit).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => return reject(Reject::TooLarge),
        Err(ReadError::Body(error)) => {
            crate::metrics::webhook_rejected("webhook", Reject::UnreadableBody.code());
            tracing::warn!(
                target: "douyin_auth",
                reason = Reject::UnreadableBody.code(),
                error = %error,
                "webhook rejected"
            );
            return Ok(Reject::UnreadableBody.response());
        }
    };

    let signature = parts.headers.get(SIGNATURE_HEADER);
    let verdict = match signature {
        None => Err(Reject::MissingSignature),
        Some(sig) if !verify_webhook_signature(config.secret.expose(), &bytes, sig.as_bytes()) => {
            Err(Reject::InvalidSignature)
        }
        Some(_) => Ok(()),
    };
    let event = WebhookEvent::parse(&bytes, msg_id.clone());
    if let Err(reason) = verdict {
        let unsigned_challenge =
            config.unsigned_challenge && event.as_ref().is_some_and(WebhookEvent::is_challenge);
        if !unsigned_challenge {
            return reject(reason);
        }
    }
    let Some(event) = event else {
        return reject(Reject::NotAnEvent);
    };

    if event.is_challenge() {
        return match challenge_answer(&bytes) {
            Some(answer) => {
                tracing::info!(
                    target: "douyin_auth",
                    client_key = %event.client_key,
                    "webhook challenge answered"
                );
                Ok(json(StatusCode::OK, answer))
            }
            None => reject(Reject::NoChallenge),
        };
    }

    let ticket: Option<Ticket> = match (&dedup, &msg_id) {
        (Some(dedup), Some(id)) => match claim(dedup, id).await {
            Some(ticket) => Some(ticket),
            None => {
                tracing::debug!(
                    target: "douyin_auth",
                    msg_id = %id,
                    event = %event.event,
                    "webhook duplicate dropped"
                );
                return Ok(json(StatusCode::OK, &br#"{"duplicate":true}"#[..]));
            }
        },
        _ => None,
    };

    let mut request = Request::from_parts(parts, ReqBody::from(bytes));
    request.extensions_mut().insert(event);
    let result = inner.call(request).await;
    if let Some(ticket) = ticket {
        ticket.finish(matches!(&result, Ok(r) if r.status().is_success()));
    }
    result.map(|r| r.map(ResponseBody::inner))
}

/// Claims `id`, waiting while another delivery of it runs. `None`: a duplicate.
async fn claim(dedup: &Arc<Dedup>, id: &str) -> Option<Ticket> {
    loop {
        match dedup.claim(id.as_bytes()) {
            Claim::Run(ticket) => return Some(ticket),
            Claim::Duplicate => return None,
            Claim::Wait(mut rx) => {
                // Wakes when the running delivery ends (its sender is dropped).
                while rx.changed().await.is_ok() {}
            }
        }
    }
}

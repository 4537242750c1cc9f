//! Reading a request body up to a cap, the response body of the layers, and the answers the
//! layers give themselves (rejections, the challenge, duplicates).

use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The response body of [`VerifyWebhook`](super::VerifyWebhook) and
    /// [`VerifySpi`](super::VerifySpi): the inner service's body as it came, or the small JSON
    /// answer the layer gave itself (a rejection, the challenge, a duplicate's acknowledgement).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Local { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn local(data: Bytes) -> Self {
        Self {
            kind: Kind::Local { data: Some(data) },
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Local { data } => f
                .debug_struct("ResponseBody::Local")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Local { data } => {
                Poll::Ready(data.take().map(|d| Ok(Frame::data(B::Data::from(d)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Local { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Why a body could not be buffered.
pub(crate) enum ReadError {
    /// Longer than the cap (declared or seen); reading stopped there.
    TooLarge,
    /// The body itself failed (the client went away, a malformed chunk).
    Body(BoxError),
}

/// Buffers `body` up to `limit` bytes. Refuses at once when `Content-Length` or the body's
/// size hint says it is longer, and stops reading as soon as the bytes seen pass the cap.
pub(crate) async fn read_capped<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit_u64) || body.size_hint().lower() > limit_u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = pin!(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: not part of the signed bytes
        };
        let n = data.remaining();
        if n > limit - len {
            return Err(ReadError::TooLarge);
        }
        len += n;
        chunks.push(data.copy_to_bytes(n));
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut all = BytesMut::with_capacity(len);
            for c in chunks {
                all.extend_from_slice(&c);
            }
            all.freeze()
        }
    })
}

/// A JSON answer from the layer itself.
pub(crate) fn json<B>(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::local(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Why the layer refused a call: the code in the JSON error body and in the tracing event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    MissingSignature,
    InvalidSignature,
    MissingTimestamp,
    StaleTimestamp,
    TooLarge,
    UnreadableBody,
    NotAnEvent,
    NoChallenge,
}

impl Reject {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::MissingSignature
            | Self::InvalidSignature
            | Self::MissingTimestamp
            | Self::StaleTimestamp => StatusCode::UNAUTHORIZED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody | Self::NotAnEvent | Self::NoChallenge => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingTimestamp => "missing_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::TooLarge => "body_too_large",
            Self::UnreadableBody => "unreadable_body",
            Self::NotAnEvent => "not_an_event",
            Self::NoChallenge => "no_challenge",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::MissingSignature => "the request carries no signature header",
            Self::InvalidSignature => "the signature does not match the request",
            Self::MissingTimestamp => {
                "the request carries no valid millisecond timestamp parameter"
            }
            Self::StaleTimestamp => "the request's timestamp is outside the accepted window",
            Self::TooLarge => "the request body is larger than the limit",
            Self::UnreadableBody => "the request body could not be read",
            Self::NotAnEvent => "the signed body is not a JSON object",
            Self::NoChallenge => "the verify_webhook event carries no content.challenge",
        }
    }

    /// The JSON error answer: `{"error":"<code>","message":"<message>"}`.
    pub(crate) fn response<B>(self) -> Response<ResponseBody<B>> {
        let body = format!(
            r#"{{"error":"{}","message":"{}"}}"#,
            self.code(),
            self.message()
        );
        json(self.status(), body)
    }
}

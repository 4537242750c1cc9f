//! The replay copy of a request: its head, and its body buffered up to the replay limit.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use http_body::Body;

use super::options::Shared;
use super::service::NoRetry;
use crate::body::ReplayBody;

/// What is kept of a request to send it a second time: everything but the token.
pub(crate) struct Replay {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    // `None` for a request without headers: nothing to copy, nothing to drop.
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) extensions: Extensions,
    pub(crate) body: Bytes,
}

impl Replay {
    /// A copy of the head of a request whose body is empty.
    #[inline(always)]
    pub(crate) fn capture<B>(req: &Request<B>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: copy_headers(req.headers()),
            extensions: req.extensions().clone(),
            body: Bytes::new(),
        }
    }

    /// The head itself, kept while the body is buffered (no copy yet).
    pub(crate) fn from_parts(parts: http::request::Parts) -> Self {
        Self {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: Some(parts.headers),
            extensions: parts.extensions,
            body: Bytes::new(),
        }
    }

    /// A copy to keep for the replay, so that the original (whose header map has room for the
    /// token, where a clone's has none) is sent.
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: self.version,
            headers: self.headers.as_ref().and_then(copy_headers),
            extensions: self.extensions.clone(),
            body: self.body.clone(),
        }
    }

    pub(crate) fn into_request<B: ReplayBody>(mut self) -> Request<B> {
        let body = B::from_bytes(std::mem::take(&mut self.body));
        self.with_body(body)
    }

    /// The request as it came, trailers and all, if the body type can carry trailers.
    pub(crate) fn into_request_with_trailers<B: ReplayBody>(
        mut self,
        trailers: HeaderMap,
    ) -> Option<Request<B>> {
        let body = B::from_bytes_with_trailers(std::mem::take(&mut self.body), trailers)?;
        Some(self.with_body(body))
    }

    fn with_body<B>(self, body: B) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        if let Some(headers) = self.headers {
            *req.headers_mut() = headers;
        }
        *req.extensions_mut() = self.extensions;
        req
    }
}

/// A copy of `headers`, or `None` when there are none (cloning an empty map's tables and
/// dropping them costs more than the rest of an empty request's copy).
#[inline]
pub(crate) fn copy_headers(headers: &HeaderMap) -> Option<HeaderMap> {
    (!headers.is_empty()).then(|| headers.clone())
}

/// Request body bytes collected for replay; one frame is kept as it is, never copied.
#[derive(Default)]
pub(crate) enum BufferedBytes {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl BufferedBytes {
    pub(crate) fn push(&mut self, mut data: impl Buf) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(data.copy_to_bytes(data.remaining())),
            Self::One(first) => {
                let mut m = BytesMut::with_capacity(first.len() + data.remaining());
                m.extend_from_slice(&first);
                m.put(data);
                Self::Many(m)
            }
            Self::Many(mut m) => {
                m.put(data);
                Self::Many(m)
            }
        };
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(crate) fn finish(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}

/// Whether a body can be buffered for replay within `limit`.
pub(crate) fn replayable<B: Body>(body: &B, limit: usize) -> bool {
    body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= limit))
}

/// How a request with a token is sent.
pub(crate) enum Plan {
    /// Once: no retry (turned off, or the body cannot be replayed).
    Once,
    /// With a copy of its head kept for a replay (its body is empty).
    Replay,
    /// After its body is buffered for a replay.
    Buffer,
}

impl Plan {
    #[inline]
    pub(crate) fn of<B: Body>(req: &Request<B>, shared: &Shared<impl Sized>) -> Self {
        let retry = shared.retry && req.extensions().get::<NoRetry>().is_none();
        if !retry || !replayable(req.body(), shared.replay_limit) {
            Plan::Once
        } else if req.body().is_end_stream() {
            Plan::Replay
        } else {
            Plan::Buffer
        }
    }
}

//! Bodies: request bodies the layer can replay, and the response body it hands back.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

/// A request body type the layer can rebuild from bytes, so that a request whose token was
/// rejected can be sent a second time with the same bytes, while the inner service keeps
/// seeing the body type it accepts.
///
/// The layer buffers a body for replay only when its size is known exactly and is at most the
/// replay limit (64 KiB by default), or when it is empty. Any other body goes out once,
/// untouched, and an "expired" answer to it reaches the caller as it came.
///
/// Implemented for [`Full<Bytes>`], [`String`], `http_body_util`'s boxed bodies, and, behind
/// features, `axum::body::Body` and `tonic::body::Body`. Implement it for your own body type:
///
/// ```
/// use bytes::Bytes;
/// use douyin_auth::ReplayBody;
/// use http_body_util::Full;
///
/// struct MyBody(Full<Bytes>);
/// # impl http_body::Body for MyBody {
/// #     type Data = Bytes;
/// #     type Error = std::convert::Infallible;
/// #     fn poll_frame(
/// #         self: std::pin::Pin<&mut Self>,
/// #         cx: &mut std::task::Context<'_>,
/// #     ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
/// #         std::pin::Pin::new(&mut self.get_mut().0).poll_frame(cx)
/// #     }
/// # }
///
/// impl ReplayBody for MyBody {
///     fn from_bytes(bytes: Bytes) -> Self {
///         MyBody(Full::new(bytes))
///     }
/// }
/// ```
pub trait ReplayBody: Body + Sized {
    /// A body that yields exactly `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;
}

impl ReplayBody for Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes)
    }
}

impl ReplayBody for String {
    fn from_bytes(bytes: Bytes) -> Self {
        // Only bytes that came out of a `String` are ever replayed into one.
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl<E: 'static> ReplayBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt;
        Full::new(bytes).map_err(|never| match never {}).boxed()
    }
}

impl<E: 'static> ReplayBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt;
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl ReplayBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl ReplayBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        tonic::body::Body::new(Full::new(bytes))
    }
}

pin_project! {
    /// The response body the layer hands back: the inner body, untouched, or, when the layer
    /// peeked at a small JSON answer, the frames it read followed by the rest. Either way the
    /// caller reads exactly the bytes (and trailers, and error) the server sent.
    pub struct ResponseBody<B: Body> {
        // What the layer read ahead, if anything: behind a box, so that the body of every
        // answer the layer did not read is its inner body and one pointer.
        peeked: Option<Box<Peeked<B>>>,
        #[pin]
        rest: Option<B>,
    }
}

/// Frames read ahead, then the error the body ended with (if any).
struct Peeked<B: Body> {
    prefix: VecDeque<Frame<B::Data>>,
    error: Option<B::Error>,
}

impl<B: Body> Peeked<B> {
    /// The next frame or error read ahead; drops what was read ahead once it is all out.
    #[cold]
    fn next(peeked: &mut Option<Box<Self>>) -> Option<Result<Frame<B::Data>, B::Error>> {
        let p = peeked.as_mut()?;
        if let Some(frame) = p.prefix.pop_front() {
            return Some(Ok(frame));
        }
        let error = p.error.take();
        *peeked = None;
        error.map(Err)
    }
}

impl<B: Body> ResponseBody<B> {
    /// The inner body, passed through untouched.
    pub(crate) fn passthrough(inner: B) -> Self {
        Self {
            peeked: None,
            rest: Some(inner),
        }
    }

    /// Frames already read, then the error the body ended with (if any), then the rest of the
    /// body (if it did not end).
    pub(crate) fn replay(
        prefix: VecDeque<Frame<B::Data>>,
        error: Option<B::Error>,
        rest: Option<B>,
    ) -> Self {
        // A body that ended with an error is never polled after it.
        let rest = if error.is_some() { None } else { rest };
        let peeked =
            (!prefix.is_empty() || error.is_some()).then(|| Box::new(Peeked { prefix, error }));
        Self { peeked, rest }
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field(
                "buffered_frames",
                &self.peeked.as_ref().map_or(0, |p| p.prefix.len()),
            )
            .field("rest", &self.rest.is_some())
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if this.peeked.is_some() {
            if let Some(next) = Peeked::next(this.peeked) {
                return Poll::Ready(Some(next));
            }
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peeked
            .as_ref()
            .is_none_or(|p| p.prefix.is_empty() && p.error.is_none())
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        use bytes::Buf;
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let Some(peeked) = &self.peeked else {
            return rest;
        };
        let buffered: u64 = peeked
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.remaining() as u64))
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// Joins the data frames read so far into one contiguous buffer for the classifier; a single
/// frame is borrowed, never copied.
pub(crate) fn contiguous(frames: &VecDeque<Frame<Bytes>>) -> Bytes {
    let mut data = frames.iter().filter_map(Frame::data_ref);
    match (data.next(), data.next()) {
        (None, _) => Bytes::new(),
        (Some(one), None) => one.clone(),
        (Some(_), Some(_)) => {
            let mut out = Vec::new();
            for d in frames.iter().filter_map(Frame::data_ref) {
                out.extend_from_slice(d);
            }
            Bytes::from(out)
        }
    }
}

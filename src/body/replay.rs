//! [`ReplayBody`]: request body types the layer can rebuild from bytes.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

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
///
/// A client of a body type that is not `ReplayBody` (here http-body-util's `Empty`, or
/// `axum::body::Body` without the `axum` feature) is no `Service`; the compiler's error says
/// which feature to turn on:
///
/// ```compile_fail,E0277
/// use bytes::Bytes;
/// use douyin_auth::{DouyinAuthLayer, StaticToken};
/// use http_body_util::{Empty, Full};
/// use tower::Layer;
///
/// fn needs_a_service<S: tower::Service<http::Request<Empty<Bytes>>>>(_: S) {}
///
/// let inner = tower::service_fn(|_: http::Request<Empty<Bytes>>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
/// });
/// needs_a_service(DouyinAuthLayer::new(StaticToken::new("t")).layer(inner));
/// ```
///
/// If `client.oneshot(request)` fails with E0599 ("the method `oneshot` exists … but its
/// trait bounds were not satisfied"), the request body is not `ReplayBody`: for
/// `axum::body::Body` turn on the `axum` feature (for `tonic::body::Body`, `tonic`). rustc
/// shows this trait's own message only for E0277, as in the call
/// `tower::ServiceExt::oneshot(client, request)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request body the douyin-auth layer can replay",
    label = "the layer's service needs a `ReplayBody` request body",
    note = "for `axum::body::Body` turn on douyin-auth's `axum` feature, for `tonic::body::Body` its `tonic` feature",
    note = "`Full<Bytes>`, `String` and http-body-util's `BoxBody`/`UnsyncBoxBody` work without a feature; for a body type of your own, implement `ReplayBody`"
)]
pub trait ReplayBody: Body + Unpin + Sized {
    /// A body that yields exactly `bytes`.
    fn from_bytes(bytes: Bytes) -> Self;

    /// A body that yields `bytes` and then `trailers`, if this type can carry trailers.
    ///
    /// The layer reads a replayable body before sending it; when that body ends with
    /// trailers, the request cannot be replayed faithfully from bytes, so it is sent once, as
    /// it came, rebuilt by this method. The default is `None` (the request then fails with
    /// [`Error::Body`](crate::Error::Body)): right for types that never carry trailers, such
    /// as [`Full`] and [`String`]. The boxed bodies and the axum and tonic bodies carry them.
    fn from_bytes_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Option<Self> {
        let _ = (bytes, trailers);
        None
    }
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

    fn from_bytes_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Option<Self> {
        use http_body_util::BodyExt;
        let body = WithTrailers::new(bytes, trailers);
        Some(body.map_err(|never| match never {}).boxed())
    }
}

impl<E: 'static> ReplayBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt;
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn from_bytes_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Option<Self> {
        use http_body_util::BodyExt;
        let body = WithTrailers::new(bytes, trailers);
        Some(body.map_err(|never| match never {}).boxed_unsync())
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl ReplayBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }

    fn from_bytes_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Option<Self> {
        Some(axum_core::body::Body::new(WithTrailers::new(
            bytes, trailers,
        )))
    }
}

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl ReplayBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        tonic::body::Body::new(Full::new(bytes))
    }

    fn from_bytes_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Option<Self> {
        Some(tonic::body::Body::new(WithTrailers::new(bytes, trailers)))
    }
}

/// A body of one data frame and then trailers: a request body rebuilt as it came.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    len: u64,
}

impl WithTrailers {
    fn new(data: Bytes, trailers: HeaderMap) -> Self {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        Self {
            data: (!data.is_empty()).then_some(data),
            trailers: Some(trailers),
            len,
        }
    }
}

impl Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.data.is_some() { self.len } else { 0 })
    }
}

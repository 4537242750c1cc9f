//! [`DouyinAuth`], the service a [`DouyinAuthLayer`](crate::DouyinAuthLayer) makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{Lookup, ResponseFuture};
use super::options::Shared;
use crate::body::{ReplayBody, ResponseBody};
use crate::cache::TokenHandle;
use crate::error::{BoxError, Error};
use crate::expiry::ClassifyExpiry;

/// A request extension that turns the retry off for one request: its body is not buffered and
/// an "expired" answer reaches the caller as it came (the rejected token is still dropped
/// from the cache, so the next request gets a new one).
///
/// ```
/// let mut req = http::Request::new(http_body_util::Full::<bytes::Bytes>::default());
/// req.extensions_mut().insert(douyin_auth::NoRetry);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoRetry;

/// The service [`DouyinAuthLayer`](crate::DouyinAuthLayer) makes: it attaches the token to
/// each request and sends a request once more when the answer says the token expired.
///
/// # Clone
///
/// The inner service must be `Clone`: each call moves the instance that was polled ready into
/// the response future (tower's "clone and swap"), which also sends the retry. Wrap a service
/// that is not `Clone` in `tower::buffer::Buffer`.
///
/// # Retry semantics
///
/// A request is sent at most twice. It is sent again only when the classifier says the first
/// answer means "expired or invalid token" and the request body could be replayed (empty, or
/// of known size up to the replay limit) and the request carries no [`NoRetry`]. Before the
/// retry the rejected token is dropped from the cache, unless a newer one replaced it already,
/// and the request waits for the one refresh in flight. The second answer reaches the caller
/// whatever it says.
pub struct DouyinAuth<S, C = crate::expiry::DouyinExpiry> {
    inner: S,
    shared: Arc<Shared<C>>,
    // This service's handle on the layer's cached token.
    token: TokenHandle,
}

impl<S: Clone, C> Clone for DouyinAuth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            token: self.token.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for DouyinAuth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinAuth")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, C> DouyinAuth<S, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<C>>) -> Self {
        let token = TokenHandle::new(&shared.cache);
        Self {
            inner,
            shared,
            token,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for DouyinAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: ReplayBody,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::service)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture::start(
            &mut self.inner,
            &self.shared,
            Lookup::Layer(&mut self.token),
            req,
        )
    }
}

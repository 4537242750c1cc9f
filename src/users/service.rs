//! [`DouyinUserAuth`], the per-user service, and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::open_id::OpenId;
use super::slots::Slots;
use crate::auth::future::{Lookup, ResponseFuture};
use crate::auth::options::Shared;
use crate::body::{ReplayBody, ResponseBody};
use crate::error::{BoxError, Error};
use crate::expiry::{ClassifyExpiry, DouyinExpiry};

/// The service [`UserTokenLayer`](crate::users::UserTokenLayer) makes: [`DouyinAuth`](crate::DouyinAuth) with the token of
/// each request's user ([`OpenId`]). The inner service must be `Clone`, as for `DouyinAuth`.
pub struct DouyinUserAuth<S, C = DouyinExpiry> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<C>>,
    pub(crate) slots: Arc<Slots>,
}

impl<S: Clone, C> Clone for DouyinUserAuth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for DouyinUserAuth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinUserAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for DouyinUserAuth<S, C>
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
    type Future = UserResponseFuture<S, ReqBody, ResBody, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::service)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The user is read in place (no copy of the open_id); the URI with the open_id in its
        // query, if the APIs want it there, is set once the borrow ends.
        let found = req.extensions().get::<OpenId>().map(|id| {
            let uri = self
                .slots
                .open_id_param
                .as_ref()
                .map(|param| crate::auth::placement::set_query_param(req.uri(), param, &id.0))
                .transpose()?;
            Ok::<_, Error>((self.slots.cache_for(&id.0), uri))
        });
        let inner = match found {
            Some(Ok(((cache, now), uri))) => {
                if let Some(uri) = uri {
                    *req.uri_mut() = uri;
                }
                ResponseFuture::start(&mut self.inner, &self.shared, Lookup::User(cache, now), req)
            }
            Some(Err(e)) => ResponseFuture::failed(&self.shared, e),
            None => ResponseFuture::failed(&self.shared, Error::MissingOpenId),
        };
        UserResponseFuture { inner }
    }
}

pin_project! {
    /// The response future of [`DouyinUserAuth`].
    #[must_use = "futures do nothing unless polled"]
    pub struct UserResponseFuture<S, ReqBody, ResBody, C>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        inner: ResponseFuture<S, ReqBody, ResBody, C>,
    }
}

impl<S, ReqBody, ResBody, C> fmt::Debug for UserResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody, C> Future for UserResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ReqBody: ReplayBody,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    type Output = Result<Response<ResponseBody<ResBody>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(surface)
    }
}

/// Lifts the errors a user's caller acts on (reauthorise, a failed write, the store) from
/// behind a failed refresh to the top.
pub(crate) fn surface(e: Error) -> Error {
    let shared = match &e {
        Error::TokenSource(s) => s.clone(),
        Error::Backoff { last, .. } => last.clone(),
        _ => return e,
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(shared.get_ref());
    while let Some(x) = cur {
        match x.downcast_ref::<Error>() {
            Some(Error::ReauthorizationRequired { open_id, cause }) => {
                return Error::ReauthorizationRequired {
                    open_id: open_id.clone(),
                    cause: cause.clone(),
                };
            }
            Some(Error::Persist(_)) => return Error::Persist(Box::new(shared)),
            Some(Error::Store(_)) => return Error::Store(Box::new(shared)),
            _ => {}
        }
        cur = x.source();
    }
    e
}

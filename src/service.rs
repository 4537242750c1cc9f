//! [`DouyinAuth`], the service, and its [`ResponseFuture`].

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::{contiguous, ReplayBody, ResponseBody};
use crate::cache::{Ready, TokenCache, TokenHandle};
use crate::expiry::{ClassifyExpiry, HeadVerdict};
use crate::layer::{Shared, TokenPlacement};
use crate::source::BoxFuture;
use crate::{BoxError, Error};

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

    /// Wraps `inner` with `layer`'s cache and options (the same as `layer.layer(inner)`).
    pub fn new(inner: S, layer: &crate::DouyinAuthLayer<C>) -> Self {
        Self::from_shared(inner, Arc::clone(layer.shared()))
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
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Service(e.into()))
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

impl<S, ReqBody, ResBody, C> ResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: ReplayBody,
{
    /// Starts a request with the layer's own cache through the service's handle on it (the
    /// single-token layer: no extra reference count on the hot path), or with a user's cache.
    pub(crate) fn start(
        this_inner: &mut S,
        this_shared: &Arc<Shared<C>>,
        lookup: Lookup<'_>,
        mut req: Request<ReqBody>,
    ) -> Self {
        let shared = Arc::clone(this_shared);
        let (cache, handle) = match lookup {
            Lookup::Layer(handle) => (None, Some(handle)),
            Lookup::User(cache) => (Some(cache), None),
        };
        let c = cache.as_ref().unwrap_or(&shared.cache);
        // Each arm builds the whole future in one expression: the future is large, and every
        // intermediate value of it would be one more copy per request. The inner service is
        // cloned only for a future that may call it later (after waiting for a token, or for
        // a retry): a request sent once is sent by the service that was polled ready.
        if let Err(e) = shared.targets.check(req.uri()) {
            return Self::with_state(None, shared, cache, State::Failed { error: Some(e) });
        }
        let ready = match handle {
            Some(handle) => c.lookup_with(handle),
            None => c.lookup(),
        };
        let Some(mut ready) = ready else {
            let state = State::WaitToken {
                wait: Box::pin(Arc::clone(c).wait()),
                request: Some(Box::new(req)),
            };
            return Self::with_state(Some(take_ready(this_inner)), shared, cache, state);
        };
        let mut inner = match Plan::of(&req, &shared) {
            Plan::Once => None,
            Plan::Replay => Some(take_ready(this_inner)),
            Plan::Buffer => {
                let (parts, body) = req.into_parts();
                return ResponseFuture {
                    state: State::Buffer {
                        body,
                        buf: BufferedBytes::default(),
                        ready: Some(ready),
                    },
                    inner: Some(take_ready(this_inner)),
                    shared,
                    cache,
                    replay: Some(Replay::from_parts(parts)),
                    generation: None,
                    retried: false,
                };
            }
        };
        let generation = Some(ready.generation);
        // The fields are evaluated in the order written: the copy of the head for the replay
        // is taken before the token is attached and the request sent. (The copy is kept when
        // attaching fails, which only `Query` placement can; the future fails at once.)
        ResponseFuture {
            replay: if inner.is_some() {
                Some(Replay::capture(&req))
            } else {
                None
            },
            state: match attach(&mut req, &mut ready, &shared) {
                Ok(()) => State::Send {
                    fut: inner.as_mut().unwrap_or(this_inner).call(req),
                },
                Err(e) => State::Failed { error: Some(e) },
            },
            inner,
            shared,
            cache,
            generation,
            retried: false,
        }
    }

    fn with_state(
        inner: Option<S>,
        shared: Arc<Shared<C>>,
        cache: Option<Arc<TokenCache>>,
        state: State<S::Future, ReqBody, ResBody>,
    ) -> Self {
        ResponseFuture {
            state,
            inner,
            shared,
            cache,
            replay: None,
            generation: None,
            retried: false,
        }
    }

    /// A future that fails at once with `error`.
    pub(crate) fn failed(shared: &Arc<Shared<C>>, error: Error) -> Self {
        Self::with_state(
            None,
            Arc::clone(shared),
            None,
            State::Failed { error: Some(error) },
        )
    }
}

/// The service that was polled ready, for a future that calls it later; a clone takes its
/// place (tower's "clone and swap").
fn take_ready<S: Clone>(this: &mut S) -> S {
    let clone = this.clone();
    std::mem::replace(this, clone)
}

/// Where a request's token comes from.
pub(crate) enum Lookup<'a> {
    /// The layer's own cache, through the calling service's handle on it.
    Layer(&'a mut TokenHandle),
    /// A user's cache (the per-user layer).
    User(Arc<TokenCache>),
}

/// What is kept of a request to send it a second time: everything but the token.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    // `None` for a request without headers: nothing to copy, nothing to drop.
    headers: Option<HeaderMap>,
    extensions: Extensions,
    body: Bytes,
}

impl Replay {
    /// A copy of the head of a request whose body is empty.
    #[inline(always)]
    fn capture<B>(req: &Request<B>) -> Self {
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
    fn from_parts(parts: http::request::Parts) -> Self {
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
    fn duplicate(&self) -> Self {
        Self {
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: self.version,
            headers: self.headers.as_ref().and_then(copy_headers),
            extensions: self.extensions.clone(),
            body: self.body.clone(),
        }
    }

    fn into_request<B: ReplayBody>(self) -> Request<B> {
        let mut req = Request::new(B::from_bytes(self.body));
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
fn copy_headers(headers: &HeaderMap) -> Option<HeaderMap> {
    (!headers.is_empty()).then(|| headers.clone())
}

pin_project! {
    #[project = StateProj]
    enum State<F, ReqBody, ResBody> {
        Start,
        Failed { error: Option<Error> },
        // The states the hot path never enters keep their large parts behind a box (a request
        // waiting for a token, a response being peeked at), so that the future stays small:
        // it is moved several times per request.
        WaitToken {
            wait: BoxFuture<'static, Result<Ready, Error>>,
            request: Option<Box<Request<ReqBody>>>,
        },
        // The request's head waits in the future's `replay` meanwhile.
        Buffer {
            #[pin]
            body: ReqBody,
            buf: BufferedBytes,
            ready: Option<Ready>,
        },
        Send { #[pin] fut: F },
        Peek { peek: Box<Peek<ResBody>> },
        Refresh { wait: BoxFuture<'static, Result<Ready, Error>> },
        RetryReady { ready: Ready },
        Retry { #[pin] fut: F },
        Done,
    }
}

pin_project! {
    /// Response future of [`DouyinAuth`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, ReqBody, ResBody, C>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S::Future, ReqBody, ResBody>,
        // The service that sends the request later (after a wait for a token, or the retry);
        // `None` for a request that was sent at once and will not be sent again.
        inner: Option<S>,
        shared: Arc<Shared<C>>,
        // The cache of this request when it is not the layer's own (the per-user layer).
        cache: Option<Arc<TokenCache>>,
        replay: Option<Replay>,
        // The generation of the token the request was sent with.
        generation: Option<u64>,
        retried: bool,
    }
}

/// A JSON answer being read for the classifier.
struct Peek<B> {
    head: Option<http::response::Parts>,
    body: Option<B>,
    frames: VecDeque<Frame<Bytes>>,
    seen: usize,
}

impl<S, ReqBody, ResBody, C> fmt::Debug for ResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("retried", &self.retried)
            .finish_non_exhaustive()
    }
}

/// Request body bytes collected for replay; one frame is kept as it is, never copied.
#[derive(Default)]
enum BufferedBytes {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl BufferedBytes {
    fn push(&mut self, mut data: impl Buf) {
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

    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    fn finish(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}

/// Whether a body can be buffered for replay within `limit`.
fn replayable<B: Body>(body: &B, limit: usize) -> bool {
    body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= limit))
}

/// Puts the token where the layer is configured to put it.
///
/// The header value is moved out of `ready` (leaving an empty static one, which costs
/// nothing), so a request costs one reference-count increment on the token's bytes, not two:
/// on two threads every such shared increment moves a cache line. Only `ready.generation` is
/// read after this.
fn attach<B>(
    req: &mut Request<B>,
    ready: &mut Ready,
    shared: &Shared<impl Sized>,
) -> Result<(), Error> {
    let header = std::mem::replace(&mut ready.header, http::HeaderValue::from_static(""));
    if let Some(name) = &shared.header_name {
        req.headers_mut().insert(name.clone(), header);
        return Ok(());
    }
    if let TokenPlacement::Query(param) = &shared.placement {
        let token = header.to_str().map_err(|_| Error::InvalidHeaderValue)?;
        let uri = req.uri();
        let mut pq = String::with_capacity(uri.path().len() + param.len() + token.len() + 16);
        pq.push_str(uri.path());
        pq.push('?');
        if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
            pq.push_str(q);
            pq.push('&');
        }
        pq.push_str(param);
        pq.push('=');
        percent_encode_into(token, &mut pq);
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(pq.parse().map_err(|_| Error::InvalidHeaderValue)?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Error::InvalidHeaderValue)?;
    }
    Ok(())
}

fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn send_first<S, ReqBody, ResBody, C>(
    inner: &mut S,
    shared: &Shared<C>,
    generation: &mut Option<u64>,
    mut req: Request<ReqBody>,
    mut ready: Ready,
) -> State<S::Future, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    if let Err(e) = attach(&mut req, &mut ready, shared) {
        return State::Failed { error: Some(e) };
    }
    *generation = Some(ready.generation);
    State::Send {
        fut: inner.call(req),
    }
}

impl<S, ReqBody, ResBody, C> Future for ResponseFuture<S, ReqBody, ResBody, C>
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
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Start | StateProj::Done => {
                    return Poll::Ready(Err(Error::Protocol(
                        "response future polled after completion".into(),
                    )));
                }
                StateProj::Failed { error } => {
                    let e = error.take().unwrap_or(Error::InvalidHeaderValue);
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
                StateProj::WaitToken { wait, request } => {
                    let ready = match ready!(wait.as_mut().poll(cx)) {
                        Ok(r) => r,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                    };
                    let Some(req) = request.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("request already sent".into())));
                    };
                    let Some(inner) = this.inner.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("inner service missing".into())));
                    };
                    Begin {
                        inner,
                        shared: &*this.shared,
                        replay: this.replay,
                        generation: this.generation,
                    }
                    .begin(*req, ready)
                }
                StateProj::Buffer {
                    mut body,
                    buf,
                    ready,
                } => loop {
                    match ready!(body.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buf.push(data);
                            }
                            // Trailers of a request body cannot be replayed and are dropped.
                            // A body that yields more than it declared is never buffered
                            // without bound.
                            let limit = this.shared.replay_limit;
                            if buf.len() > limit {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(Error::BodyTooLarge { limit }));
                            }
                        }
                        Some(Err(e)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(Error::Body(e.into())));
                        }
                        None => {
                            let Some(head) = this.replay.as_mut() else {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(Error::Protocol(
                                    "request parts missing".into(),
                                )));
                            };
                            head.body = std::mem::take(buf).finish();
                            let copy = head.duplicate();
                            let req = std::mem::replace(head, copy).into_request::<ReqBody>();
                            let Some(ready) = ready.take() else {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(Error::Protocol("token missing".into())));
                            };
                            let Some(inner) = this.inner.as_mut() else {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(Error::Protocol(
                                    "inner service missing".into(),
                                )));
                            };
                            break send_first(inner, this.shared, this.generation, req, ready);
                        }
                    }
                },
                StateProj::Send { fut } => {
                    let res = match ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(Error::Service(e.into())));
                        }
                    };
                    match this
                        .shared
                        .classifier
                        .classify_head(res.status(), res.headers())
                    {
                        HeadVerdict::NotExpired => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res.map(ResponseBody::passthrough)));
                        }
                        HeadVerdict::Expired => {
                            match on_expired(
                                this.cache.as_ref().unwrap_or(&this.shared.cache),
                                *this.generation,
                                this.replay,
                                *this.retried,
                            ) {
                                Some(next) => next,
                                None => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Ok(res.map(ResponseBody::passthrough)));
                                }
                            }
                        }
                        HeadVerdict::PeekBody => {
                            if too_large(&res, this.shared.peek_limit) {
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(res.map(ResponseBody::passthrough)));
                            }
                            let (head, body) = res.into_parts();
                            State::Peek {
                                peek: Box::new(Peek {
                                    head: Some(head),
                                    body: Some(body),
                                    frames: VecDeque::new(),
                                    seen: 0,
                                }),
                            }
                        }
                    }
                }
                StateProj::Peek { peek } => {
                    let Peek {
                        head,
                        body,
                        frames,
                        seen,
                    } = &mut **peek;
                    let limit = this.shared.peek_limit;
                    let mut ended = false;
                    let mut error = None;
                    if let Some(b) = body.as_mut() {
                        loop {
                            if b.is_end_stream() {
                                ended = true;
                                break;
                            }
                            match ready!(Pin::new(&mut *b).poll_frame(cx)) {
                                Some(Ok(frame)) => {
                                    if let Some(d) = frame.data_ref() {
                                        *seen = seen.saturating_add(d.len());
                                    }
                                    frames.push_back(frame);
                                    if *seen > limit {
                                        break;
                                    }
                                }
                                Some(Err(e)) => {
                                    error = Some(e);
                                    break;
                                }
                                None => {
                                    ended = true;
                                    break;
                                }
                            }
                        }
                    }
                    let Some(head) = head.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("response head missing".into())));
                    };
                    let rest = if ended { None } else { body.take() };
                    let expired = ended
                        && error.is_none()
                        && this.shared.classifier.classify_body(
                            head.status,
                            &head.headers,
                            &contiguous(frames),
                        );
                    let next = if expired {
                        on_expired(
                            this.cache.as_ref().unwrap_or(&this.shared.cache),
                            *this.generation,
                            this.replay,
                            *this.retried,
                        )
                    } else {
                        None
                    };
                    match next {
                        Some(next) => next,
                        None => {
                            let body = ResponseBody::replay(std::mem::take(frames), error, rest);
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(Response::from_parts(head, body)));
                        }
                    }
                }
                StateProj::Refresh { wait } => match ready!(wait.as_mut().poll(cx)) {
                    Ok(ready) => State::RetryReady { ready },
                    Err(e) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                },
                StateProj::RetryReady { ready } => {
                    let Some(inner) = this.inner.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("inner service missing".into())));
                    };
                    if let Err(e) = ready!(inner.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Service(e.into())));
                    }
                    let Some(replay) = this.replay.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("replay missing".into())));
                    };
                    let mut req = replay.into_request::<ReqBody>();
                    if let Err(e) = attach(&mut req, ready, this.shared) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    *this.generation = Some(ready.generation);
                    *this.retried = true;
                    tracing::debug!(
                        target: "douyin_auth",
                        generation = ready.generation,
                        "retry sent"
                    );
                    State::Retry {
                        fut: inner.call(req),
                    }
                }
                StateProj::Retry { fut } => {
                    let res = ready!(fut.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(match res {
                        Ok(res) => Ok(res.map(ResponseBody::passthrough)),
                        Err(e) => Err(Error::Service(e.into())),
                    });
                }
            };
            this.state.set(next);
        }
    }
}

/// How a request with a token is sent.
enum Plan {
    /// Once: no retry (turned off, or the body cannot be replayed).
    Once,
    /// With a copy of its head kept for a replay (its body is empty).
    Replay,
    /// After its body is buffered for a replay.
    Buffer,
}

impl Plan {
    #[inline]
    fn of<B: Body>(req: &Request<B>, shared: &Shared<impl Sized>) -> Self {
        let retry = shared.retry && req.extensions().get::<crate::NoRetry>().is_none();
        if !retry || !replayable(req.body(), shared.replay_limit) {
            Plan::Once
        } else if req.body().is_end_stream() {
            Plan::Replay
        } else {
            Plan::Buffer
        }
    }
}

/// Borrowed fields of the future, so `begin` can run from inside `poll` (once the token
/// came); the same steps as the hot path in `start`.
struct Begin<'a, S, C> {
    inner: &'a mut S,
    shared: &'a Arc<Shared<C>>,
    replay: &'a mut Option<Replay>,
    generation: &'a mut Option<u64>,
}

impl<S, C> Begin<'_, S, C> {
    fn begin<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        ready: Ready,
    ) -> State<S::Future, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        ReqBody: ReplayBody,
    {
        match Plan::of(&req, self.shared) {
            Plan::Once => {}
            Plan::Replay => *self.replay = Some(Replay::capture(&req)),
            Plan::Buffer => {
                let (parts, body) = req.into_parts();
                *self.replay = Some(Replay::from_parts(parts));
                return State::Buffer {
                    body,
                    buf: BufferedBytes::default(),
                    ready: Some(ready),
                };
            }
        }
        send_first(self.inner, self.shared, self.generation, req, ready)
    }
}

/// Whether the declared size of a response is over the peek limit.
fn too_large<B: Body>(res: &Response<B>, limit: usize) -> bool {
    let declared = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let lower = res.body().size_hint().lower();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    declared.is_some_and(|n| n > limit) || lower > limit
}

/// The token was rejected: drop it from the cache (if it is still the one used) and, when
/// the request can be sent again and was not yet, wait for the refresh.
fn on_expired<F, ReqBody, ResBody>(
    cache: &Arc<TokenCache>,
    generation: Option<u64>,
    replay: &Option<Replay>,
    retried: bool,
) -> Option<State<F, ReqBody, ResBody>> {
    if let Some(generation) = generation {
        cache.invalidate(generation);
    }
    let will_retry = !retried && replay.is_some();
    tracing::debug!(
        target: "douyin_auth",
        generation,
        retry = will_retry,
        "token expiry detected"
    );
    will_retry.then(|| State::Refresh {
        wait: Box::pin(Arc::clone(cache).wait()),
    })
}

//! [`ResponseFuture`]: one request's way through the layer, as a state machine.
//!
//! `start` is the hot path (a cached token: attach it and send). The states, each with one job:
//! `WaitToken` waits for the one refresh in flight; `Buffer` reads a replayable body that
//! keeps the reader waiting (one in memory is read in `start`); `Send` awaits the first answer
//! and classifies its head (a JSON answer in memory is classified there too); `Peek` reads a
//! JSON body that keeps the reader waiting, for the classifier; `Refresh` waits for the new token after an expiry; `RetryReady`/`Retry` send the
//! request once more; `Failed`/`Done` end it. The file is one concern (the state machine) and
//! reads best whole.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::options::Shared;
use super::peek::{too_large, Filled, Peek};
use super::placement::attach;
use super::replay::{read_body, BufferedBytes, Plan, Read, Replay};
use crate::body::{contiguous, ReadAhead, ReplayBody, ResponseBody};
use crate::cache::{AfterRejection, Ready, TokenCache, TokenHandle};
use crate::error::{BoxError, Error};
use crate::expiry::{ClassifyExpiry, HeadVerdict, Rejection};
use crate::source::BoxFuture;
use crate::users::OpenId;

impl<S, ReqBody, ResBody, C> ResponseFuture<S, ReqBody, ResBody, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: ReplayBody,
    ReqBody::Error: Into<BoxError>,
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
        let (cache, handle, now) = match lookup {
            Lookup::Layer(handle) => (None, Some(handle), None),
            Lookup::User(cache, now) => (Some(cache), None, Some(now)),
        };
        let c = cache.as_ref().unwrap_or(&shared.cache);
        // Each arm builds the whole future in one expression: the future is large, and every
        // intermediate value of it would be one more copy per request. The inner service is
        // cloned only for a future that may call it later (after waiting for a token, or for
        // a retry): a request sent once is sent by the service that was polled ready.
        if let Err(e) = shared.targets.check(req.uri()) {
            return Self::with_state(None, shared, cache, State::Failed { error: Some(e) });
        }
        let ready = match (handle, now) {
            (Some(handle), _) => c.lookup_with(handle),
            (None, Some(now)) => c.lookup_at(now),
            (None, None) => c.lookup(),
        };
        // A user's request carries its `OpenId`: when that is its only extension, the replay
        // copy leaves the extensions out (copying one allocates three times) and a retry gets
        // the `OpenId` back from the user's cache. They are set aside meanwhile, whole (taking
        // one out and putting it back would box it again).
        let user = (cache.is_some()
            && req.extensions().len() == 1
            && req.extensions().get::<OpenId>().is_some())
        .then(|| std::mem::take(req.extensions_mut()));
        let Some(mut ready) = ready else {
            restore(&mut req, user);
            let state = State::WaitToken {
                wait: Box::pin(crate::metrics::waited_for_token(Arc::clone(c).wait())),
                request: Some(Box::new(req)),
            };
            return Self::with_state(Some(take_ready(this_inner)), shared, cache, state);
        };
        // The bytes of a body read here for the replay.
        let mut read = None;
        let mut inner = match Plan::of(&req, &shared) {
            Plan::Once => None,
            Plan::Replay => Some(take_ready(this_inner)),
            Plan::Buffer => {
                // A body in memory (`Full`, a JSON body the caller built) is read here, at once,
                // with no task to wake; the request then goes as one with an empty body does.
                // A body that makes the reader wait, or ends with trailers, goes to the
                // `Buffer` state with what was read, polled there with the task's waker.
                let (mut buf, mut trailers) = (BufferedBytes::default(), None);
                let mut at_once = Context::from_waker(std::task::Waker::noop());
                let limit = shared.replay_limit;
                match read_body(req.body_mut(), &mut at_once, &mut buf, &mut trailers, limit) {
                    Read::Ended if trailers.is_none() => {
                        let bytes = buf.finish();
                        *req.body_mut() = ReqBody::from_bytes(bytes.clone());
                        read = Some(bytes);
                        Some(take_ready(this_inner))
                    }
                    Read::Failed(e) => {
                        let e = Error::Body(e.into());
                        return Self::with_state(
                            None,
                            shared,
                            cache,
                            State::Failed { error: Some(e) },
                        );
                    }
                    Read::TooLarge => {
                        let e = Error::BodyTooLarge { limit };
                        return Self::with_state(
                            None,
                            shared,
                            cache,
                            State::Failed { error: Some(e) },
                        );
                    }
                    Read::Ended | Read::Waiting => {
                        restore(&mut req, user);
                        let (parts, body) = req.into_parts();
                        drop(ready);
                        return ResponseFuture {
                            state: State::Buffer {
                                body,
                                buf,
                                trailers,
                            },
                            inner: Some(take_ready(this_inner)),
                            shared,
                            cache,
                            replay: Some(Replay::from_parts(parts)),
                            generation: None,
                            retried: false,
                        };
                    }
                }
            }
        };
        let generation = Some(ready.generation);
        // The copy of the head for the replay is taken before the token is attached and the
        // request sent. (The copy is kept when attaching fails, which only `Query` placement
        // can; the future fails at once.)
        let replay = if inner.is_some() {
            Replay::capture(&req).map(|mut copy| {
                copy.body = read.unwrap_or_default();
                copy
            })
        } else {
            None
        };
        restore(&mut req, user);
        let attached = attach(&mut req, &mut ready, &shared);
        ResponseFuture {
            replay,
            state: match attached {
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

/// Puts a user's request's extensions (its `OpenId`) back.
#[inline]
fn restore<B>(req: &mut Request<B>, user: Option<http::Extensions>) {
    if let Some(extensions) = user {
        *req.extensions_mut() = extensions;
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
    /// A user's cache (the per-user layer), and the time the layer looked it up at.
    User(Arc<TokenCache>, tokio::time::Instant),
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
        // The request's head waits in the future's `replay` meanwhile; the token is taken
        // once the body is in (it may have expired while the body came).
        Buffer {
            body: ReqBody,
            buf: BufferedBytes,
            trailers: Option<Box<HeaderMap>>,
        },
        Send { #[pin] fut: F },
        Peek { peek: Box<Peek<ResBody>> },
        // The token was rejected: wait for another one, or hand the caller the first answer.
        Refresh {
            wait: BoxFuture<'static, Option<Ready>>,
            first: Option<Box<First<ResBody>>>,
        },
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

fn send_first<S, ReqBody, ResBody, C>(
    inner: &mut S,
    shared: &Shared<C>,
    generation: &mut Option<u64>,
    mut req: Request<ReqBody>,
    mut ready: Ready,
) -> State<S::Future, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    ReqBody: ReplayBody,
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
                    body,
                    buf,
                    trailers,
                } => match read_body(body, cx, buf, trailers, this.shared.replay_limit) {
                    Read::Waiting => return Poll::Pending,
                    Read::Failed(e) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Body(e.into())));
                    }
                    Read::TooLarge => {
                        let limit = this.shared.replay_limit;
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::BodyTooLarge { limit }));
                    }
                    Read::Ended => {
                        let Some(mut head) = this.replay.take() else {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(Error::Protocol(
                                "request parts missing".into(),
                            )));
                        };
                        head.body = std::mem::take(buf).finish();
                        let Some(inner) = this.inner.as_mut() else {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(Error::Protocol(
                                "inner service missing".into(),
                            )));
                        };
                        let cache = this.cache.as_ref().unwrap_or(&this.shared.cache);
                        // Trailers cannot be replayed from bytes: the request goes once,
                        // rebuilt as it came.
                        let req = match trailers.take() {
                            Some(t) => match head.into_request_with_trailers::<ReqBody>(*t) {
                                Some(req) => req,
                                None => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Err(Error::Body(Box::from(
                                            "this request body type cannot carry the request's trailers (ReplayBody::from_bytes_with_trailers)",
                                        ))));
                                }
                            },
                            None => {
                                // The original is sent (its header map has room for the
                                // token; a copy's has none) and the copy kept.
                                *this.replay = head.duplicate();
                                head.into_request::<ReqBody>()
                            }
                        };
                        let req = match req {
                            Ok(req) => req,
                            Err(e) => {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(e));
                            }
                        };
                        // The token is read now: it may have expired while the body came.
                        match cache.lookup() {
                            Some(ready) => {
                                send_first(inner, this.shared, this.generation, req, ready)
                            }
                            None => {
                                *this.replay = None;
                                State::WaitToken {
                                    wait: Box::pin(crate::metrics::waited_for_token(
                                        Arc::clone(cache).wait(),
                                    )),
                                    request: Some(Box::new(req)),
                                }
                            }
                        }
                    }
                },
                StateProj::Send { fut } => {
                    let res = match ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(Error::service(e)));
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
                            let first = First::Head(res);
                            match on_rejected(
                                this.cache.as_ref().unwrap_or(&this.shared.cache),
                                *this.generation,
                                Rejection::Expired,
                                this.replay,
                                first,
                            ) {
                                Ok(next) => next,
                                Err(first) => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(Ok((*first).into_response()));
                                }
                            }
                        }
                        HeadVerdict::PeekBody => {
                            if too_large(&res, this.shared.peek_limit) {
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(res.map(ResponseBody::passthrough)));
                            }
                            let (head, body) = res.into_parts();
                            // Most answers are in memory once their head is: read here, they
                            // are settled without boxing the reader. One that keeps the
                            // reader waiting moves to the `Peek` state, box and all.
                            let mut peek = Peek::new(head, body);
                            let read = read_answer(
                                &mut peek,
                                cx,
                                this.shared,
                                this.cache,
                                *this.generation,
                                this.replay,
                            );
                            match read {
                                Poll::Ready(Settled::Next(next)) => next,
                                Poll::Ready(Settled::Answer(out)) => {
                                    this.state.set(State::Done);
                                    return Poll::Ready(out);
                                }
                                Poll::Pending => State::Peek {
                                    peek: Box::new(peek),
                                },
                            }
                        }
                    }
                }
                StateProj::Peek { peek } => {
                    let read = read_answer(
                        peek,
                        cx,
                        this.shared,
                        this.cache,
                        *this.generation,
                        this.replay,
                    );
                    match ready!(read) {
                        Settled::Next(next) => next,
                        Settled::Answer(out) => {
                            this.state.set(State::Done);
                            return Poll::Ready(out);
                        }
                    }
                }
                StateProj::Refresh { wait, first } => match ready!(wait.as_mut().poll(cx)) {
                    Some(ready) => State::RetryReady { ready },
                    None => {
                        let first = first.take();
                        this.state.set(State::Done);
                        return Poll::Ready(match first {
                            Some(first) => Ok((*first).into_response()),
                            None => Err(Error::Protocol("first answer missing".into())),
                        });
                    }
                },
                StateProj::RetryReady { ready } => {
                    let Some(inner) = this.inner.as_mut() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("inner service missing".into())));
                    };
                    if let Err(e) = ready!(inner.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::service(e)));
                    }
                    let Some(replay) = this.replay.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Protocol("replay missing".into())));
                    };
                    let mut req = match replay.into_request::<ReqBody>() {
                        Ok(req) => req,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                    };
                    // A user's request gets its `OpenId` back (the copy left it out).
                    if let Some(id) = this.cache.as_ref().and_then(|c| c.open_id()) {
                        req.extensions_mut().insert(OpenId::new(id));
                    }
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
                    crate::metrics::retry_sent();
                    State::Retry {
                        fut: inner.call(req),
                    }
                }
                StateProj::Retry { fut } => {
                    let res = ready!(fut.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(match res {
                        Ok(res) => Ok(res.map(ResponseBody::passthrough)),
                        Err(e) => Err(Error::service(e)),
                    });
                }
            };
            this.state.set(next);
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
            Plan::Replay => *self.replay = Replay::capture(&req),
            Plan::Buffer => {
                let (parts, body) = req.into_parts();
                *self.replay = Some(Replay::from_parts(parts));
                return State::Buffer {
                    body,
                    buf: BufferedBytes::default(),
                    trailers: None,
                };
            }
        }
        send_first(self.inner, self.shared, self.generation, req, ready)
    }
}

/// What a JSON answer read for the classifier leads to.
enum Settled<F, ReqBody, ResBody: Body> {
    /// Wait for another token, or retry.
    Next(State<F, ReqBody, ResBody>),
    /// The caller gets this: the answer (not a rejection, or no retry), or an error.
    Answer(Result<Response<ResponseBody<ResBody>>, Error>),
}

/// Reads a JSON answer's body for the classifier (bounded by the peek limit and timeout) and
/// settles what it leads to.
fn read_answer<F, ReqBody, ResBody, C>(
    peek: &mut Peek<ResBody>,
    cx: &mut Context<'_>,
    shared: &Shared<C>,
    cache: &Option<Arc<TokenCache>>,
    generation: Option<u64>,
    replay: &Option<Replay>,
) -> Poll<Settled<F, ReqBody, ResBody>>
where
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    let filled = ready!(peek.poll_fill(cx, shared.peek_limit, shared.peek_timeout));
    Poll::Ready(settle(peek, filled, shared, cache, generation, replay))
}

/// The answer a JSON body was read for, classified: handed back, or the next state.
fn settle<F, ReqBody, ResBody, C>(
    peek: &mut Peek<ResBody>,
    filled: Filled<ResBody::Error>,
    shared: &Shared<C>,
    cache: &Option<Arc<TokenCache>>,
    generation: Option<u64>,
    replay: &Option<Replay>,
) -> Settled<F, ReqBody, ResBody>
where
    ResBody: Body<Data = Bytes> + Unpin,
    C: ClassifyExpiry,
{
    let Peek {
        head, body, frames, ..
    } = peek;
    let Filled { ended, error } = filled;
    let Some(head) = head.take() else {
        return Settled::Answer(Err(Error::Protocol("response head missing".into())));
    };
    let rest = if ended { None } else { body.take() };
    let rejection = if ended && error.is_none() {
        shared
            .classifier
            .classify_rejection(head.status, &head.headers, &contiguous(frames))
    } else {
        None
    };
    let Some(rejection) = rejection else {
        let body = ResponseBody::replay(std::mem::take(frames), error, rest);
        return Settled::Answer(Ok(Response::from_parts(head, body)));
    };
    let first = First::Read(head, std::mem::take(frames));
    match on_rejected(
        cache.as_ref().unwrap_or(&shared.cache),
        generation,
        rejection,
        replay,
        first,
    ) {
        Ok(next) => Settled::Next(next),
        Err(first) => Settled::Answer(Ok((*first).into_response())),
    }
}

/// The first answer, kept while the request waits for another token, to hand back as it came
/// if none comes.
enum First<B> {
    /// An answer whose head said "expired"; its body not read.
    Head(Response<B>),
    /// A JSON answer read whole for the classifier.
    Read(http::response::Parts, ReadAhead<Bytes>),
}

impl<B: Body<Data = Bytes>> First<B> {
    fn into_response(self) -> Response<ResponseBody<B>> {
        match self {
            First::Head(res) => res.map(ResponseBody::passthrough),
            First::Read(head, frames) => {
                Response::from_parts(head, ResponseBody::replay(frames, None, None))
            }
        }
    }
}

/// The token was rejected: ask the cache what next. With a replay copy, wait for another token
/// (or retry at once with the one in place); without one, or when no other token can be had,
/// the caller gets the first answer (`Err`) as the server sent it.
fn on_rejected<F, ReqBody, ResBody>(
    cache: &Arc<TokenCache>,
    generation: Option<u64>,
    rejection: Rejection,
    replay: &Option<Replay>,
    first: First<ResBody>,
) -> Result<State<F, ReqBody, ResBody>, Box<First<ResBody>>> {
    crate::metrics::expiry_answer();
    let Some(generation) = generation else {
        return Err(Box::new(first));
    };
    let path = replay.as_ref().map(Replay::path);
    let next = cache.rejected(generation, rejection, path.as_deref());
    tracing::debug!(
        target: "douyin_auth",
        generation,
        verdict = ?rejection,
        retry = replay.is_some() && !matches!(next, AfterRejection::GiveUp),
        "token expiry detected"
    );
    if replay.is_none() {
        // Not replayable: any refresh started runs on its own for the next requests.
        return Err(Box::new(first));
    }
    match next {
        AfterRejection::Retry(ready) => Ok(State::RetryReady { ready }),
        AfterRejection::Wait(wait) => Ok(State::Refresh {
            wait: Box::pin(wait.new_token()),
            first: Some(Box::new(first)),
        }),
        AfterRejection::GiveUp => Err(Box::new(first)),
    }
}

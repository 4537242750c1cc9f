//! Cancellation, tried on purpose: a request is dropped after its first poll, then after its
//! second, and so on until it completes, so every await point of `ResponseFuture` (waiting for
//! a token, buffering the body, sending, peeking at the answer, waiting for the refresh, the
//! retry) is a drop point. After each drop the cache must not be stuck, no request may have
//! gone out with an empty or duplicated body or a third time, and a user token refreshed (and
//! its refresh token renewed) meanwhile must not be lost: it was persisted, it is the one the
//! source holds, and it still refreshes at the mock.
#![cfg(feature = "mock")]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::UserTokens;
use douyin_auth::mock::MockDouyin;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, Token};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tower::{Layer, ServiceExt};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const MAX_POLLS: usize = 2_000;

/// Drives `make()`'s future for 0, 1, 2, … polls (letting every other task run once between
/// two polls), drops it, and calls `after(polls)`; stops when the future completes within its
/// polls. Returns how many drop points were tried.
async fn drop_after_each_poll<F, Fut, A, AFut>(mut make: F, mut after: A) -> usize
where
    F: FnMut(usize) -> Fut,
    Fut: Future,
    A: FnMut(usize) -> AFut,
    AFut: Future<Output = ()>,
{
    for polls in 0..MAX_POLLS {
        let mut fut = Box::pin(make(polls));
        let mut done = false;
        for _ in 0..polls {
            if futures_util::poll!(&mut fut).is_ready() {
                done = true;
                break;
            }
            // One turn for every other task (and the I/O driver): the request moves on by as
            // little as it can between two polls, so each await point gets its own drop.
            tokio::task::yield_now().await;
        }
        drop(fut);
        if done {
            return polls;
        }
        settle().await;
        after(polls).await;
    }
    panic!("the request did not complete within {MAX_POLLS} polls");
}

// ----- the layer's own await points, with a scripted source -----

/// An exact-size request body that returns `Pending` once before each frame.
struct Slow {
    frames: VecDeque<Bytes>,
    ready: bool,
    len: u64,
}

impl Slow {
    fn new() -> Self {
        let frames: VecDeque<Bytes> = [&b"ab"[..], b"cd", b"ef"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        Self {
            frames,
            ready: false,
            len: 6,
        }
    }
}

impl Body for Slow {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !std::mem::replace(&mut self.ready, false) && !self.frames.is_empty() {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let f = self.frames.pop_front();
        if let Some(f) = &f {
            self.len -= f.len() as u64;
        }
        Poll::Ready(f.map(|f| Ok(Frame::data(f))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

type B = BoxBody<Bytes, Infallible>;

#[tokio::test(start_paused = true)]
async fn dropping_a_request_at_any_await_point_never_sticks_the_cache() {
    struct World {
        source: Scripted,
        svc: douyin_auth::DouyinAuth<
            tower::util::BoxCloneSyncService<Request<B>, Response<B>, Infallible>,
        >,
        bodies: Arc<Mutex<Vec<Bytes>>>,
    }
    let world: Arc<Mutex<Option<World>>> = Arc::default();

    let new_world = || {
        let (source, gate) = Scripted::new(HOUR).gated();
        // The gate lets each fetch through only after a few polls elsewhere: a refresh spans
        // several await points of the request.
        let g2 = gate.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                g2.add_permits(1);
            }
        });
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let b2 = bodies.clone();
        let inner = tower::service_fn(move |r: Request<B>| {
            let b2 = b2.clone();
            async move {
                let token = token_of(&r);
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                let body = r.into_body().collect().await.unwrap().to_bytes();
                b2.lock().unwrap().push(body);
                // The answer comes in three frames, with a yield between them.
                let text = if token == "clt.1" {
                    EXPIRED_SHAPES[0]
                } else {
                    r#"{"data":{"error_code":0}}"#
                };
                let (a, rest) = text.split_at(5);
                let (b, c) = rest.split_at(rest.len() / 2);
                let parts = [a, b, c].map(|p| Bytes::copy_from_slice(p.as_bytes()));
                let stream = futures_util::stream::unfold(0usize, move |i| {
                    let parts = parts.clone();
                    async move {
                        if i == parts.len() {
                            return None;
                        }
                        tokio::task::yield_now().await;
                        Some((Ok::<_, Infallible>(Frame::data(parts[i].clone())), i + 1))
                    }
                });
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(StreamBody::new(stream).boxed())
                        .unwrap(),
                )
            }
        });
        let svc = DouyinAuthLayer::builder(source.clone())
            .jitter(Duration::ZERO)
            .build()
            .layer(tower::util::BoxCloneSyncService::new(inner));
        World {
            source,
            svc,
            bodies,
        }
    };
    let request = || {
        Request::post("https://open.douyin.com/api/x/")
            .body(Slow::new().boxed())
            .unwrap()
    };

    let tried = drop_after_each_poll(
        |_| {
            let w = new_world();
            let svc = w.svc.clone();
            *world.lock().unwrap() = Some(w);
            svc.oneshot(request())
        },
        |polls| {
            let world = world.clone();
            async move {
                let w = world.lock().unwrap().take().unwrap();
                // Not stuck: a new request completes, whatever state the dropped one left.
                let res = tokio::time::timeout(HOUR, w.svc.clone().oneshot(request()))
                    .await
                    .unwrap_or_else(|_| panic!("stuck after a drop at poll {polls}"))
                    .unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], br#"{"data":{"error_code":0}}"#, "poll {polls}");
                assert!(
                    w.source.fetches() <= 2,
                    "poll {polls}: {} fetches",
                    w.source.fetches()
                );
                let bodies = w.bodies.lock().unwrap();
                assert!(
                    bodies.len() <= 4,
                    "poll {polls}: at most two sends per request"
                );
                for b in bodies.iter() {
                    assert_eq!(
                        &b[..],
                        b"abcdef",
                        "poll {polls}: never empty, never doubled"
                    );
                }
            }
        },
    )
    .await;
    assert!(tried >= 15, "only {tried} drop points");
    println!("layer: {tried} drop points tried");
}

// ----- a user's refresh over loopback: the refreshed pair is never lost -----

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

struct UserWorld {
    source: UserTokens<Http>,
    svc: douyin_auth::DouyinAuth<Http>,
    persisted: Arc<Mutex<Vec<Token>>>,
    hook_calls: Arc<AtomicUsize>,
    url: String,
}

fn user_world(mock: &MockDouyin, n: usize) -> UserWorld {
    let open_id = format!("open-{n}");
    let grant = mock.issue_user_tokens(open_id.as_str(), ["user_info"]);
    let stored = Token::new(grant.access_token.clone(), 15 * DAY)
        .with_open_id(open_id.as_str())
        .with_refresh_token(grant.refresh_token.clone(), 30 * DAY)
        .with_scopes(["user_info"]);
    // The mock says the stored access token expired: the first call refreshes.
    assert!(mock.expire_token(&grant.access_token));
    let persisted: Arc<Mutex<Vec<Token>>> = Arc::default();
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let (p, h) = (persisted.clone(), hook_calls.clone());
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let source = UserTokens::with_client(
        mock.client_key(),
        mock.client_secret(),
        stored,
        http.clone(),
    )
    .base_url(mock.base_url())
    // Renew on every refresh: a lost renewal is a lost user.
    .renew_window(31 * DAY)
    .on_refresh(move |t: Token| {
        let (p, h) = (p.clone(), h.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            p.lock().unwrap().push(t);
            Ok::<_, BoxError>(())
        }
    });
    let svc = DouyinAuthLayer::new(source.clone()).layer(http);
    UserWorld {
        source,
        svc,
        persisted,
        hook_calls,
        url: format!(
            "{}/data/external/user/fans/?open_id={open_id}",
            mock.base_url()
        ),
    }
}

async fn call(w: &UserWorld) -> Result<i64, Error> {
    let req = Request::get(w.url.as_str()).body(Full::default()).unwrap();
    let res = tokio::time::timeout(HOUR, w.svc.clone().oneshot(req))
        .await
        .expect("stuck")?;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Ok(v["data"]["error_code"].as_i64().unwrap_or(-1))
}

#[tokio::test(start_paused = true)]
async fn dropping_a_request_mid_refresh_never_loses_the_refreshed_user_token() {
    let mock = MockDouyin::start().await.unwrap();
    let current: Arc<Mutex<Option<UserWorld>>> = Arc::default();
    let counter = AtomicUsize::new(0);
    let tried = drop_after_each_poll(
        |_| {
            let w = user_world(&mock, counter.fetch_add(1, Ordering::SeqCst));
            let req = Request::get(w.url.as_str()).body(Full::default()).unwrap();
            let fut = w.svc.clone().oneshot(req);
            *current.lock().unwrap() = Some(w);
            fut
        },
        |polls| {
            let w = current.lock().unwrap().take().unwrap();
            let mock = &mock;
            async move {
                // The cache is not stuck: the next request succeeds.
                assert_eq!(call(&w).await.unwrap(), 0, "poll {polls}");
                // Whatever was refreshed was persisted, and is what the source holds now.
                let persisted = w.persisted.lock().unwrap().clone();
                let held = w.source.current();
                assert_eq!(
                    persisted.len(),
                    w.hook_calls.load(Ordering::SeqCst),
                    "poll {polls}"
                );
                if let Some(last) = persisted.last() {
                    assert_eq!(last.secret(), held.secret(), "poll {polls}");
                    assert_eq!(last.refresh_token(), held.refresh_token(), "poll {polls}");
                }
                // The refresh token held is alive at the mock: expire the access token and
                // refresh (and renew) once more. (Later than the minimum refresh interval: a
                // token rejected moments after it was fetched drives no refresh.)
                tokio::time::advance(Duration::from_secs(11)).await;
                mock.expire_all_tokens();
                assert_eq!(
                    call(&w).await.unwrap(),
                    0,
                    "poll {polls}: the user is not lost"
                );
            }
        },
    )
    .await;
    let c = mock.counters();
    assert!(tried >= 5, "only {tried} drop points");
    assert!(
        c.renew_calls >= tried as u64 && c.refresh_calls >= tried as u64,
        "{c:?}"
    );
    println!("user tokens: {tried} drop points tried, {c:?}");
}

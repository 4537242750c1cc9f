//! The hot path allocates nothing beyond what a static header (tower-http's `SetRequestHeader`)
//! allocates: counted with a counting global allocator, on this thread only, never timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Ready};

use bytes::Bytes;
use douyin_auth::{DouyinAuthLayer, StaticToken};
use futures_util::FutureExt;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
            let _ = BYTES.try_with(|n| n.set(n.get() + size));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; counting touches only const-initialised
// thread-locals of `Copy` types, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) made on this thread by `f`.
fn count<T>(f: impl FnOnce() -> T) -> (usize, usize) {
    ALLOCS.with(|n| n.set(0));
    BYTES.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    drop(out);
    (ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

/// The inner service: answers at once, not JSON, allocating nothing itself.
fn inner(_req: Req) -> Ready<Result<Res, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

/// A Douyin success answer, in one frame as hyper hands a small body over.
const JSON_ANSWER: &[u8] = br#"{"data":{"error_code":0,"description":"","list":[{"item_id":"@9VxS1","title":"t","statistics":{"digg_count":3}}],"cursor":1,"has_more":false},"extra":{"error_code":0,"description":"","sub_error_code":0,"sub_description":"","logid":"202405311234560102030405060708","now":1717140000000}}"#;

/// The inner service: answers at once with a JSON answer (its header map allocates, the same
/// for every service in front of it).
fn json_inner(_req: Req) -> Ready<Result<Res, Infallible>> {
    let mut res = Response::new(Full::new(Bytes::from_static(JSON_ANSWER)));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    ready(Ok(res))
}

const TOKEN: &str = "clt.0123456789abcdef0123456789abcdef0123456789abcdef";

type Shape = (&'static str, fn() -> Req);

/// Request shapes: built before counting, the same for every service.
fn shapes() -> Vec<Shape> {
    vec![
        ("bare, static uri", || {
            Request::get(http::Uri::from_static("https://open.douyin.com/api/x/"))
                .body(Full::default())
                .unwrap()
        }),
        ("parsed uri, three headers", || {
            let uri =
                String::from("https://open.douyin.com/api/douyin/v1/user/fans_data/?open_id=o1");
            Request::post(uri)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ACCEPT, HeaderValue::from_static("application/json"))
                .header(USER_AGENT, HeaderValue::from_str("my-app/1.0").unwrap())
                .body(Full::default())
                .unwrap()
        }),
        ("small json body", || {
            Request::post(http::Uri::from_static("https://open.douyin.com/api/x/"))
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::from_static(
                    br#"{"open_id":"o1","count":10}"#,
                )))
                .unwrap()
        }),
    ]
}

/// One request through `svc`, driven without a runtime (everything is ready at once).
fn one<S>(svc: &mut S, req: Req) -> (usize, usize)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    count(|| {
        let fut = svc.call(req);
        fut.now_or_never()
            .expect("ready at once")
            .expect("answered")
    })
}

/// What copying a request's head for a replay allocates (the layer keeps such a copy of each
/// replayable request when retry-on-expiry is on, so the request can be sent again).
fn head_copy(req: &Req) -> usize {
    count(|| {
        (
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
            req.extensions().clone(),
        )
    })
    .0
}

fn warm<S>(svc: &mut S)
where
    S: Service<Req> + Send,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    // The first request fetches the token, which needs a runtime; every later one is the hot
    // path and needs none.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        svc.ready()
            .await
            .unwrap()
            .call(shapes()[0].1())
            .await
            .unwrap();
    });
}

#[test]
fn hot_path_allocates_no_more_than_a_static_header() {
    let mut ours = DouyinAuthLayer::new(StaticToken::new(TOKEN)).layer(tower::service_fn(inner));
    let mut ours_no_retry = DouyinAuthLayer::builder(StaticToken::new(TOKEN))
        .retry_on_expiry(false)
        .build()
        .layer(tower::service_fn(inner));
    warm(&mut ours);
    warm(&mut ours_no_retry);

    let value = {
        let mut v = HeaderValue::from_static(TOKEN);
        v.set_sensitive(true);
        v
    };
    let mut baseline = SetRequestHeaderLayer::overriding(douyin_auth::ACCESS_TOKEN_HEADER, value)
        .layer(tower::service_fn(inner));

    for (i, (name, make)) in shapes().into_iter().enumerate() {
        // Twice each first, so one-off lazy initialisation is not counted against anyone.
        for _ in 0..2 {
            let _ = one(&mut ours, make());
            let _ = one(&mut ours_no_retry, make());
            let _ = one(&mut baseline, make());
        }
        let (base, base_b) = one(&mut baseline, make());
        let (no_retry, no_retry_b) = one(&mut ours_no_retry, make());
        let (retry, retry_b) = one(&mut ours, make());
        let copy = head_copy(&make());
        eprintln!(
            "{name}: static header {base} allocations ({base_b} B); DouyinAuth without retry \
             {no_retry} ({no_retry_b} B), with retry {retry} ({retry_b} B); copying the head \
             for a replay {copy}"
        );
        // Attaching the token allocates nothing of its own.
        assert!(
            no_retry <= base,
            "{name}: DouyinAuth without retry allocated {no_retry} times, a static header {base}"
        );
        // With retry on, the only extra is the copy of the request head that a replay needs:
        // one buffer, however many headers (a clone of the head would cost `copy`). A body
        // in memory is read at once, into no buffer of its own.
        assert!(
            retry <= base + 1,
            "{name}: DouyinAuth allocated {retry} times, a static header {base} (a clone of \
             the head: {copy})"
        );
        if i == 0 {
            assert_eq!(copy, 0);
            assert!(retry <= base, "{name}: {retry} > {base}");
        }
    }
}

/// Reading a JSON answer for the classifier (the answer is in memory, as most are once their
/// head is) costs no allocation: no boxed reader, no frame queue, no boxed replay.
#[test]
fn a_json_answer_read_for_the_classifier_allocates_nothing_more() {
    let mut ours =
        DouyinAuthLayer::new(StaticToken::new(TOKEN)).layer(tower::service_fn(json_inner));
    warm(&mut ours);
    let mut value = HeaderValue::from_static(TOKEN);
    value.set_sensitive(true);
    let mut baseline = SetRequestHeaderLayer::overriding(douyin_auth::ACCESS_TOKEN_HEADER, value)
        .layer(tower::service_fn(json_inner));
    let bare = shapes()[0].1;
    for _ in 0..2 {
        let _ = one_read(&mut ours, bare());
        let _ = one_read(&mut baseline, bare());
    }
    let (base, base_b) = one_read(&mut baseline, bare());
    let (auth, auth_b) = one_read(&mut ours, bare());
    eprintln!("JSON answer: static header {base} allocations ({base_b} B); DouyinAuth {auth} ({auth_b} B)");
    assert_eq!(
        auth, base,
        "DouyinAuth allocated {auth} times for a JSON answer, a static header {base}"
    );
}

/// One request through `svc`, its answer's body read to the end (the layer hands back what
/// it read ahead through the body).
fn one_read<S, B>(svc: &mut S, req: Req) -> (usize, usize)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    count(|| {
        let res = svc
            .call(req)
            .now_or_never()
            .expect("ready at once")
            .expect("answered");
        let mut body = res.into_body();
        let mut n = 0;
        while let Some(frame) = body.frame().now_or_never().expect("ready at once") {
            n += frame.expect("frame").into_data().map_or(0, |d| d.len());
        }
        assert_eq!(n, JSON_ANSWER.len());
        n
    })
}

/// A request of a user whose token is cached, through the per-user layer: no more
/// allocations than the static header makes (the user's `OpenId` is not copied for the
/// replay, and the user is looked up in place).
#[test]
fn a_users_request_allocates_no_more_than_a_static_header() {
    use douyin_auth::users::{OpenId, UserTokenLayer};
    let layer = UserTokenLayer::new(|id: &str| StaticToken::new(format!("act.{id}")));
    let mut ours = layer.layer(tower::service_fn(inner));
    let mut value = HeaderValue::from_static(TOKEN);
    value.set_sensitive(true);
    let mut baseline = SetRequestHeaderLayer::overriding(douyin_auth::ACCESS_TOKEN_HEADER, value)
        .layer(tower::service_fn(inner));
    let user_req = || {
        let mut req = shapes()[0].1();
        req.extensions_mut()
            .insert(OpenId::new("_000aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"));
        req
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        ours.ready().await.unwrap().call(user_req()).await.unwrap();
    });
    for _ in 0..2 {
        let _ = one(&mut ours, user_req());
        let _ = one(&mut baseline, user_req());
    }
    let (base, base_b) = one(&mut baseline, user_req());
    let (auth, auth_b) = one(&mut ours, user_req());
    eprintln!("a user's request: static header {base} allocations ({base_b} B); UserTokenLayer {auth} ({auth_b} B)");
    assert!(
        auth <= base,
        "UserTokenLayer allocated {auth} times for a cached user's request, a static header {base}"
    );
}

//! The request driver shared by `benches/hot_path.rs` and `examples/hot_loop.rs` (the
//! callgrind driver), so both measure exactly the same request.
#![allow(dead_code)]

use std::hint::black_box;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::noop_waker_ref;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

pub type Req = Request<Full<Bytes>>;
pub type Res = Response<Full<Bytes>>;

pub const TOKEN: &str = "clt.0123456789abcdef0123456789abcdef0123456789abcdef";

/// A bare request: no headers, an empty body.
pub fn bare() -> Req {
    Request::get(http::Uri::from_static("https://open.douyin.com/api/x/"))
        .body(Full::default())
        .expect("request")
}

/// Reads a body to its end without a runtime.
pub fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) -> usize {
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut n = 0;
    loop {
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    n += black_box(d).len();
                }
            }
            Poll::Ready(None) => return n,
            Poll::Ready(Some(Err(_))) | Poll::Pending => panic!("body not ready"),
        }
    }
}

/// One request: ready, call, answer, body read to the end.
#[inline(always)]
pub fn one<S, B>(svc: &mut S, req: Req) -> Response<()>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes> + Unpin,
{
    let mut cx = Context::from_waker(noop_waker_ref());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    let res = svc
        .call(req)
        .now_or_never()
        .expect("answered at once")
        .expect("answered");
    let (head, body) = res.into_parts();
    black_box(drain(body));
    Response::from_parts(head, ())
}

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

/// A Douyin success answer of about 1 KiB (`data.error_code: 0`, `extra` after `data`).
pub fn douyin_json_1k() -> Bytes {
    let mut items = Vec::new();
    let mut day = 1;
    loop {
        items.push(format!(
            r#"{{"date":"2024-05-{day:02}","new_fans":{},"total_fans":{},"new_issue":{}}}"#,
            day * 7,
            10_000 + day * 13,
            day % 3
        ));
        let body = format!(
            r#"{{"data":{{"error_code":0,"description":"","result_list":[{}]}},"extra":{{"error_code":0,"description":"","sub_error_code":0,"sub_description":"","logid":"202405311234560102030405060708","now":1717140000000}}}}"#,
            items.join(",")
        );
        if body.len() >= 1000 {
            assert!(body.len() <= 1100, "{}", body.len());
            serde_json::from_str::<serde_json::Value>(&body).expect("valid JSON");
            return Bytes::from(body);
        }
        day += 1;
    }
}

/// A Douyin list answer of about 32 KiB (a video or comment list: `data.list` of objects,
/// `data.error_code: 0`, `extra` after `data`).
pub fn douyin_json_32k() -> Bytes {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        items.push(format!(
            r#"{{"item_id":"@9VxS1{i:05}XnEkHb1q2Z","title":"第{i}个视频 a video title","create_time":{},"statistics":{{"digg_count":{},"comment_count":{},"share_count":{},"play_count":{}}},"cover":"https://p3-sign.douyinpic.com/obj/tos-cn-p-0015/{i:08}"}}"#,
            1_717_000_000 + i,
            i * 31,
            i * 7,
            i * 3,
            i * 1009
        ));
        let body = format!(
            r#"{{"data":{{"cursor":{i},"has_more":true,"list":[{}],"error_code":0,"description":""}},"extra":{{"error_code":0,"description":"","sub_error_code":0,"sub_description":"","logid":"202405311234560102030405060708","now":1717140000000}}}}"#,
            items.join(",")
        );
        if body.len() >= 32 * 1024 {
            serde_json::from_str::<serde_json::Value>(&body).expect("valid JSON");
            return Bytes::from(body);
        }
        i += 1;
    }
}

static BODY_1K: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
static BODY_32K: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();

/// The 1 KiB answer's body, built once.
pub fn body_1k() -> Bytes {
    BODY_1K.get_or_init(douyin_json_1k).clone()
}

/// The 32 KiB answer's body, built once.
pub fn body_32k() -> Bytes {
    BODY_32K.get_or_init(douyin_json_32k).clone()
}

/// A non-JSON answer.
pub fn text_answer() -> Res {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// A JSON answer with `body`, as Douyin sends it (`application/json; charset=utf-8`).
pub fn json_answer(body: Bytes) -> Res {
    let mut res = Response::new(Full::new(body));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// The 1 KiB Douyin JSON answer.
pub fn json_answer_1k() -> Res {
    json_answer(body_1k())
}

/// The 32 KiB Douyin JSON answer.
pub fn json_answer_32k() -> Res {
    json_answer(body_32k())
}

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

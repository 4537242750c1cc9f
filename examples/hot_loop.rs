//! A driver for instruction counts of the hot path (not a usage example): N requests with a
//! fresh cached token through `DouyinAuth`, or through tower-http's `SetRequestHeader`, over a
//! `service_fn` that answers at once, as in `benches/hot_path.rs`: a non-JSON answer (`text`,
//! the default), or a Douyin JSON answer of 1 KiB (`json1k`) or 32 KiB (`json32k`).
//!
//! ```sh
//! cargo build --release --example hot_loop
//! for answer in text json1k json32k; do
//!   for which in base auth auth_no_retry; do
//!     for n in 10000 20000; do
//!       valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$which.$answer.$n \
//!         target/release/examples/hot_loop $which $n $answer 2>&1 | grep 'refs'
//!     done
//!   done
//! done
//! ```
//!
//! Instructions per request = (refs at 20,000 − refs at 10,000) / 10,000: the set-up cancels.
//! `hot_loop size` prints the size of the response futures.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;

use bytes::Bytes;
use douyin_auth::{DouyinAuthLayer, StaticToken, ACCESS_TOKEN_HEADER};
use http::header::HeaderValue;
use http::Response;
use http_body::Body;
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;

#[path = "../benches/support/driver.rs"]
mod driver;
use driver::{bare, json_answer_1k, json_answer_32k, text_answer, Req, Res, TOKEN};

fn inner(
    answer: fn() -> Res,
) -> impl Service<Req, Response = Res, Error = Infallible, Future = Ready<Result<Res, Infallible>>> + Clone
{
    tower::service_fn(move |_req: Req| ready(Ok(answer())))
}

/// One request, kept out of line so the loop stays the same whatever the service.
#[inline(never)]
fn one<S, B>(svc: &mut S, req: Req) -> Response<()>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes> + Unpin,
{
    driver::one(svc, req)
}

fn run<S, B>(svc: &mut S, n: usize)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes> + Unpin,
{
    for _ in 0..n {
        let req = bare();
        black_box(one(svc, req));
    }
}

fn ours(
    retry: bool,
    answer: fn() -> Res,
) -> douyin_auth::DouyinAuth<
    impl Service<Req, Response = Res, Error = Infallible, Future = Ready<Result<Res, Infallible>>>
        + Clone,
> {
    let layer = DouyinAuthLayer::builder(StaticToken::new(TOKEN))
        .retry_on_expiry(retry)
        .build();
    let mut svc = layer.layer(inner(answer));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let res = svc.ready().await.expect("ready").call(bare()).await;
        assert!(res.is_ok(), "warm-up request failed");
    });
    svc
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "auth".into());
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("a count"))
        .unwrap_or(10_000);
    let answer: fn() -> Res = match args.next().as_deref() {
        None | Some("text") => text_answer,
        Some("json1k") => json_answer_1k,
        Some("json32k") => json_answer_32k,
        Some(other) => panic!("unknown answer: {other} (text, json1k, json32k)"),
    };
    match which.as_str() {
        "base" => {
            let mut value = HeaderValue::from_static(TOKEN);
            value.set_sensitive(true);
            let mut svc =
                SetRequestHeaderLayer::overriding(ACCESS_TOKEN_HEADER, value).layer(inner(answer));
            run(&mut svc, n);
        }
        "plain" => run(&mut inner(answer), n),
        "size" => {
            let mut svc = ours(true, answer);
            let fut = svc.call(bare());
            let base = SetRequestHeaderLayer::overriding(
                ACCESS_TOKEN_HEADER,
                HeaderValue::from_static(TOKEN),
            )
            .layer(inner(answer))
            .call(bare());
            println!(
                "response future: DouyinAuth {} bytes, SetRequestHeader {} bytes",
                std::mem::size_of_val(&fut),
                std::mem::size_of_val(&base)
            );
        }
        "auth" => run(&mut ours(true, answer), n),
        "auth_no_retry" => run(&mut ours(false, answer), n),
        other => panic!("unknown: {other} (base, plain, auth, auth_no_retry, size)"),
    }
}

//! What the per-user layer's slots cost in memory (not a usage example): N users, each with a
//! cached token, through [`UserTokenLayer`], counted by a counting global allocator (bytes
//! still allocated once every user has a slot, less what the layer held before).
//!
//! ```sh
//! cargo run --release --example user_slots -- 100000
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use douyin_auth::users::{OpenId, UserTokenLayer};
use douyin_auth::StaticToken;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// An open_id as long as Douyin's (36 characters).
fn open_id(i: usize) -> String {
    format!("_000{i:032}")
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("a number of users"))
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let layer = UserTokenLayer::builder(|id: &str| StaticToken::new(format!("act.{id}")))
            .max_users(n)
            .build();
        let inner = tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut svc = layer.layer(inner);
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..n {
            let mut req = Request::new(Full::default());
            *req.uri_mut() = http::Uri::from_static("https://open.douyin.com/x/");
            req.extensions_mut().insert(OpenId::new(open_id(i)));
            let res = svc.ready().await.expect("ready").call(req).await;
            assert!(res.is_ok(), "request {i} failed");
        }
        let after = LIVE.load(Ordering::Relaxed);
        assert_eq!(layer.users(), n);
        let per = (after - before) as f64 / n as f64;
        println!(
            "{n} users: {} bytes held by their slots, {per:.0} bytes a user (token {} bytes, \
             open_id {} bytes)",
            after - before,
            format!("act.{}", open_id(0)).len(),
            open_id(0).len()
        );
    });
}

//! The token never follows a redirect off the allowed hosts (tower). A client below the layer
//! that follows redirects would copy the `access-token` header to wherever `Location` points
//! (tower-http's `FollowRedirect` drops only `Authorization`, `Cookie` and
//! `Proxy-Authorization`); stacked above the layer, as the crate documents, every hop goes
//! through the layer again and its target check. Over loopback, with a redirecting server and
//! host names routed to loopback ports.

#[path = "support/redirects.rs"]
mod redirects;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, StaticToken};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use redirects::RedirectPair;
use tower::{Layer, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;

/// An HTTP client that sends requests for named hosts to loopback ports, keeping the name in
/// `Host` (a resolver, for the test).
fn routed(
    hosts: HashMap<&'static str, SocketAddr>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Incoming>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send,
> + Clone {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let hosts = Arc::new(hosts);
    tower::service_fn(move |mut req: Request<Full<Bytes>>| {
        let (client, hosts) = (client.clone(), hosts.clone());
        async move {
            let host = req.uri().host().unwrap_or_default().to_owned();
            let addr = hosts.get(host.as_str()).ok_or("unknown host")?;
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            req.headers_mut()
                .insert(http::header::HOST, host.parse().map_err(|_| "bad host")?);
            *req.uri_mut() = format!("http://{addr}{pq}").parse()?;
            Ok::<_, BoxError>(client.request(req).await?)
        }
    })
}

fn layer() -> DouyinAuthLayer {
    DouyinAuthLayer::builder(StaticToken::new("clt.secret-token"))
        .allow_host("api.test")
        .allow_insecure_http(true)
        .build()
}

fn get(api: SocketAddr) -> Request<Full<Bytes>> {
    Request::get(format!("http://api.test:{}/x", api.port()))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn with_follow_redirect_above_the_layer_the_token_never_reaches_another_host() {
    let pair = RedirectPair::start("evil.test").await;
    let hosts = HashMap::from([("api.test", pair.api), ("evil.test", pair.evil)]);
    let client = FollowRedirectLayer::new().layer(layer().layer(routed(hosts)));
    let err = client.oneshot(get(pair.api)).await.unwrap_err();
    assert!(matches!(err, Error::DisallowedTarget { .. }), "{err:?}");
    assert!(
        pair.reached_evil.lock().unwrap().is_empty(),
        "the hop off the allowed hosts was never sent"
    );
}

/// The order matters: with the redirects followed BELOW the layer, the header goes along.
/// This is why the crate's docs put `FollowRedirect` above the layer.
#[tokio::test]
async fn with_follow_redirect_below_the_layer_the_header_would_go_along() {
    let pair = RedirectPair::start("evil.test").await;
    let hosts = HashMap::from([("api.test", pair.api), ("evil.test", pair.evil)]);
    let client = layer().layer(FollowRedirectLayer::new().layer(routed(hosts)));
    let res = client.oneshot(get(pair.api)).await.unwrap();
    assert_eq!(res.status(), 200);
    let reached = pair.reached_evil.lock().unwrap();
    assert_eq!(reached.len(), 1);
    assert_eq!(reached[0]["access-token"], "clt.secret-token");
}

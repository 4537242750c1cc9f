//! The layer in front of a tonic `Channel`, against a tiny tonic server on loopback (no protoc:
//! a hand-written UTF-8 codec and a unary service).
#![cfg(feature = "tonic")]

mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut};
use douyin_auth::expiry::GrpcExpiry;
use douyin_auth::DouyinAuthLayer;
use http::uri::PathAndQuery;
use support::Scripted;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tower::ServiceBuilder;

// ----- a codec for UTF-8 string messages -----

#[derive(Clone, Copy, Debug, Default)]
struct Utf8;

impl Codec for Utf8 {
    type Encode = String;
    type Decode = String;
    type Encoder = Utf8;
    type Decoder = Utf8;
    fn encoder(&mut self) -> Utf8 {
        Utf8
    }
    fn decoder(&mut self) -> Utf8 {
        Utf8
    }
}

impl Encoder for Utf8 {
    type Item = String;
    type Error = Status;
    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for Utf8 {
    type Item = String;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Status::internal("not UTF-8"))
    }
}

// ----- the server: `/demo.Greeter/Hello`, accepting only the tokens in `valid` -----

#[derive(Clone, Default)]
struct Greeter {
    valid: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl NamedService for Greeter {
    const NAME: &'static str = "demo.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let handler = tower::service_fn(move |req: tonic::Request<String>| {
                let this = this.clone();
                async move {
                    let token = req
                        .metadata()
                        .get("access-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    this.seen.lock().unwrap().push(token.clone());
                    if !this.valid.lock().unwrap().contains(&token) {
                        return Err(Status::unauthenticated("access token expired"));
                    }
                    Ok(tonic::Response::new(format!("hello, {}", req.into_inner())))
                }
            });
            Ok(tonic::server::Grpc::new(Utf8).unary(handler, req).await)
        })
    }
}

async fn serve(greeter: Greeter) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(greeter)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn hello<T>(client: T, name: &str) -> Result<String, Status>
where
    T: GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError>,
{
    let mut grpc = tonic::client::Grpc::new(client);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.into().to_string()))?;
    let path = PathAndQuery::from_static("/demo.Greeter/Hello");
    let res = grpc
        .unary(tonic::Request::new(name.to_owned()), path, Utf8)
        .await?;
    Ok(res.into_inner())
}

fn assert_grpc_service<T: GrpcService<Body>>(_: &T) {}

#[tokio::test]
async fn the_layer_stacks_on_a_channel_and_a_grpc_unauthenticated_answer_refreshes_the_token() {
    let greeter = Greeter::default();
    greeter.valid.lock().unwrap().insert("clt.1".into());
    let channel = serve(greeter.clone()).await;
    let source = Scripted::new(Duration::from_secs(3600));
    let layer = DouyinAuthLayer::builder(source.clone())
        .classifier(GrpcExpiry)
        .build();

    // The user's stack, unchanged.
    let client = ServiceBuilder::new().layer(layer.clone()).service(channel);
    assert_grpc_service(&client);

    // The token reaches the server as `access-token` metadata.
    assert_eq!(hello(client.clone(), "a").await.unwrap(), "hello, a");
    assert_eq!(*greeter.seen.lock().unwrap(), ["clt.1"]);

    // The server stops accepting the first token and answers UNAUTHENTICATED (grpc-status 16).
    {
        let mut valid = greeter.valid.lock().unwrap();
        valid.clear();
        valid.insert("clt.2".into());
    }
    // A tonic request body is a stream of unknown size, so the layer cannot replay it: the
    // UNAUTHENTICATED answer reaches the caller intact, and the rejected token is dropped.
    let err = hello(client.clone(), "b").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "access token expired");
    assert!(layer.cached_token().is_none(), "the rejected token is gone");

    // The next call waits for the one refresh and carries the new token.
    assert_eq!(hello(client.clone(), "c").await.unwrap(), "hello, c");
    assert_eq!(*greeter.seen.lock().unwrap(), ["clt.1", "clt.1", "clt.2"]);
    assert_eq!(source.fetches(), 2);

    // And the ones after it reuse it.
    assert_eq!(hello(client, "d").await.unwrap(), "hello, d");
    assert_eq!(source.fetches(), 2);
}

#[tokio::test]
async fn the_default_classifier_leaves_grpc_answers_alone() {
    // Without `GrpcExpiry`, grpc-status 16 in the headers is not an expiry (Douyin's rules
    // look at HTTP 401 and JSON bodies): the token stays cached.
    let greeter = Greeter::default();
    let channel = serve(greeter.clone()).await;
    let source = Scripted::new(Duration::from_secs(3600));
    let layer = DouyinAuthLayer::builder(source.clone()).build();
    let client = ServiceBuilder::new().layer(layer.clone()).service(channel);
    let err = hello(client, "x").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(layer.cached_token().is_some());
    assert_eq!(source.fetches(), 1);
}

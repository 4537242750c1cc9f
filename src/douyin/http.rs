//! HTTP over any tower service: the [`HttpClient`] bound, the bounded body read, and the
//! default HTTPS client behind the `https` feature.

use std::future::Future;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower::{Service, ServiceExt};

use super::wire::{check_answer, parse_token_response, TokenResponse};
use crate::error::{BoxError, Error};

/// The largest token answer the crate reads, in bytes. Token answers are well under 1 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The default base URL of Douyin's OpenAPI.
pub const DEFAULT_BASE_URL: &str = "https://open.douyin.com";

/// An HTTP client the token sources can send their requests through.
///
/// It is implemented for every [`tower::Service`] that takes an
/// `http::Request<http_body_util::Full<bytes::Bytes>>` and answers with an
/// `http::Response<B>`, where `B` is an [`http_body::Body`] of [`Bytes`]: a hyper-util client,
/// a [`tower::service_fn`] in tests, a service wrapped in tower layers, and so on. There is no
/// need to implement it by hand.
pub trait HttpClient: Clone + Send + Sync + 'static {
    /// The body type of the responses.
    type ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Send;

    /// Sends one request through a clone of the client (`tower::ServiceExt::oneshot`).
    fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<Self::ResponseBody>, BoxError>> + Send;
}

impl<C, B> HttpClient for C
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    B: Body<Data = Bytes> + Send,
    B::Error: Into<BoxError>,
{
    type ResponseBody = B;

    fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<Response<B>, BoxError>> + Send {
        let client = self.clone();
        async move { client.oneshot(request).await.map_err(Into::into) }
    }
}

/// A request body and its content type.
pub(crate) enum Payload {
    /// `application/json`.
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded`.
    Form(String),
}

impl Payload {
    /// A form from name-value pairs, percent-encoded.
    pub(crate) fn form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(pairs);
        Payload::Form(ser.finish())
    }
}

/// Joins a base URL (a trailing slash tolerated) and an absolute path.
pub(crate) fn endpoint(base_url: &str, path: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), path)
}

/// Normalises a configured base URL: trims whitespace and trailing slashes.
pub(crate) fn normalise_base_url(url: impl Into<String>) -> String {
    let url = url.into();
    url.trim().trim_end_matches('/').to_owned()
}

/// Credentials (the client secret, refresh tokens, codes) go over HTTPS only; plain HTTP only
/// to a loopback host (a local mock or proxy).
fn check_secure(uri: &http::Uri) -> Result<(), Error> {
    let host = uri.host().unwrap_or("");
    let ok = match uri.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => crate::net::is_loopback(host),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::DisallowedTarget {
            target: format!("{}://{}", uri.scheme_str().unwrap_or(""), host),
        })
    }
}

/// POSTs `payload` to `base_url` + `path` and parses the token answer.
///
/// HTTP errors and failures of the client become typed errors; the answer body is read up to
/// [`MAX_RESPONSE_BYTES`] and never quoted in an error.
pub(crate) async fn post_token<C: HttpClient>(
    client: &C,
    base_url: &str,
    path: &'static str,
    payload: Payload,
) -> Result<TokenResponse, Error> {
    let bytes = post_answer(client, base_url, path, payload).await?;
    parse_token_response(&bytes)
}

/// POSTs `payload` to `base_url` + `path` and returns the answer's body, checked for HTTP
/// errors (a Douyin error code in a non-2xx answer becomes [`Error::Douyin`]).
pub(crate) async fn post_answer<C: HttpClient>(
    client: &C,
    base_url: &str,
    path: &'static str,
    payload: Payload,
) -> Result<Bytes, Error> {
    let url = endpoint(base_url, path);
    let (content_type, body) = match payload {
        Payload::Json(b) => ("application/json", Bytes::from(b)),
        Payload::Form(s) => ("application/x-www-form-urlencoded", Bytes::from(s)),
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.as_str())
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(body))
        .map_err(|_| Error::Protocol(format!("the base URL {base_url:?} is not a valid URL")))?;
    send_answer(client, request, path).await
}

/// GETs `base_url` + `path` with the percent-encoded `query` and returns the answer's body,
/// checked as [`post_answer`] does. The URL may carry secrets: it is never put in an error.
pub(crate) async fn get_answer<'a, C: HttpClient>(
    client: &C,
    base_url: &str,
    path: &'static str,
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Bytes, Error> {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    ser.extend_pairs(query);
    let url = format!("{}?{}", endpoint(base_url, path), ser.finish());
    let request = Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::new()))
        .map_err(|_| Error::Protocol(format!("the base URL {base_url:?} is not a valid URL")))?;
    send_answer(client, request, path).await
}

async fn send_answer<C: HttpClient>(
    client: &C,
    request: Request<Full<Bytes>>,
    path: &'static str,
) -> Result<Bytes, Error> {
    check_secure(request.uri())?;
    let response = client
        .send(request)
        .await
        .map_err(|e| Error::token_endpoint(path, e))?;
    let status = response.status();
    let bytes = read_limited(response.into_body(), MAX_RESPONSE_BYTES).await?;
    if !status.is_success() {
        // A JSON error answer on a non-2xx status still says what went wrong.
        return Err(match check_answer(&bytes) {
            Err(e @ Error::Douyin(_)) => e,
            _ => Error::Protocol(format!("{path} answered with HTTP status {status}")),
        });
    }
    Ok(bytes)
}

/// Reads a body into memory, failing with [`Error::BodyTooLarge`] as soon as it exceeds
/// `limit`, without reading further.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Error::BodyTooLarge { limit }),
        Err(e) => Err(Error::Body(e)),
    }
}

#[cfg(feature = "https")]
pub use self::https::HttpsClient;

#[cfg(feature = "https")]
mod https {
    use std::fmt;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_rustls::HttpsConnector;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tower::Service;

    use crate::error::BoxError;

    type Inner<B> = Client<HttpsConnector<HttpConnector>, B>;

    /// The default HTTPS client of the token sources (feature `https`, on by default):
    /// hyper-util's pooled client over rustls with the `ring` provider and the webpki roots,
    /// HTTP/1.1 and HTTP/2.
    ///
    /// Clones share one connection pool. It also speaks plain HTTP, for a base URL that asks
    /// for it (a local mock server).
    ///
    /// The token sources send [`Full<Bytes>`] bodies, the default `B`. The same client, for any
    /// other request body type (axum's or tonic's, a boxed body), is the inner client of the
    /// layer for calls to Douyin's `https://` API:
    ///
    /// ```
    /// use douyin_auth::{douyin::{ClientCredentials, HttpsClient}, DouyinAuth, DouyinAuthLayer};
    /// use http_body_util::combinators::BoxBody;
    /// use tower::Layer;
    ///
    /// type Body = BoxBody<bytes::Bytes, std::convert::Infallible>;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let source = ClientCredentials::new("your_client_key", "your_client_secret");
    /// let douyin: DouyinAuth<HttpsClient<Body>> =
    ///     DouyinAuthLayer::new(source).layer(HttpsClient::with_body());
    /// # drop(douyin); }
    /// ```
    pub struct HttpsClient<B = Full<Bytes>> {
        inner: Result<Inner<B>, Arc<str>>,
    }

    impl HttpsClient {
        /// A new client of [`Full<Bytes>`] requests with its own connection pool.
        pub fn new() -> Self {
            Self::with_body()
        }
    }

    impl<B> HttpsClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        /// A new client of `B` requests with its own connection pool.
        pub fn with_body() -> Self {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let inner = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .map(|b| {
                    let connector = b.https_or_http().enable_http1().enable_http2().build();
                    Client::builder(TokioExecutor::new()).build(connector)
                })
                .map_err(|e| Arc::from(format!("TLS setup failed: {e}")));
            Self { inner }
        }
    }

    impl<B> Clone for HttpsClient<B> {
        fn clone(&self) -> Self {
            Self {
                inner: self.inner.clone(),
            }
        }
    }

    impl Default for HttpsClient {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<B> fmt::Debug for HttpsClient<B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HttpsClient")
                .field("ready", &self.inner.is_ok())
                .finish()
        }
    }

    impl<B> Service<Request<B>> for HttpsClient<B>
    where
        B: http_body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        type Response = Response<Incoming>;
        type Error = BoxError;
        type Future =
            Pin<Box<dyn std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            match &mut self.inner {
                Ok(client) => client.poll_ready(cx).map_err(Into::into),
                Err(_) => Poll::Ready(Ok(())),
            }
        }

        fn call(&mut self, request: Request<B>) -> Self::Future {
            match &mut self.inner {
                Ok(client) => {
                    let fut = client.call(request);
                    Box::pin(async move { fut.await.map_err(Into::into) })
                }
                Err(msg) => {
                    let msg = msg.to_string();
                    Box::pin(async move { Err(msg.into()) })
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A mock HTTP client that records the requests and plays recorded answers.

    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::{Method, Request, Response, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full};

    /// One request as the mock saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        pub(crate) method: Method,
        pub(crate) uri: String,
        pub(crate) content_type: String,
        pub(crate) body: String,
    }

    impl Seen {
        /// The form pairs of the body.
        pub(crate) fn form(&self) -> Vec<(String, String)> {
            form_urlencoded::parse(self.body.as_bytes())
                .into_owned()
                .collect()
        }

        /// The JSON body.
        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    /// A mock client: answers with `answers` in turn and records every request.
    #[allow(clippy::type_complexity)]
    pub(crate) fn mock(
        answers: Vec<(u16, &'static str)>,
    ) -> (
        impl tower::Service<
                Request<Full<Bytes>>,
                Response = Response<Full<Bytes>>,
                Error = Infallible,
                Future = impl Send,
            > + Clone
            + Send
            + Sync
            + 'static,
        Arc<Mutex<Vec<Seen>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let log = seen.clone();
        let svc = tower::service_fn(move |req: Request<Full<Bytes>>| {
            let log = log.clone();
            let answers = answers.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                log.lock().unwrap().push(Seen {
                    method: parts.method,
                    uri: parts.uri.to_string(),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default(),
                    body: String::from_utf8(body.to_vec()).unwrap(),
                });
                let (status, body) = answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("the mock ran out of answers");
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(StatusCode::from_u16(status).unwrap())
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap(),
                )
            }
        });
        (svc, seen)
    }

    /// A body that never ends, counting the chunks it handed out.
    pub(crate) struct Endless(pub(crate) Arc<Mutex<usize>>);

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            *self.0.lock().unwrap() += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; 1024])))))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use super::test_support::*;
    use super::*;

    #[tokio::test]
    async fn credentials_never_go_over_plain_http_to_a_remote_host() {
        let (client, seen) = mock(vec![(200, "{}")]);
        for base in [
            "http://open.douyin.com",
            "ftp://open.douyin.com",
            "open.douyin.com",
        ] {
            let err = post_token(
                &client,
                base,
                "/oauth/client_token/",
                Payload::Json(Vec::new()),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, Error::DisallowedTarget { .. } | Error::Protocol(_)),
                "{base}: {err:?}"
            );
        }
        assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
        post_token(
            &client,
            "http://127.0.0.1:9",
            "/oauth/client_token/",
            Payload::Json(Vec::new()),
        )
        .await
        .ok();
        assert_eq!(seen.lock().unwrap().len(), 1, "loopback may use plain HTTP");
    }

    #[test]
    fn endpoints_tolerate_trailing_slashes() {
        assert_eq!(
            endpoint(
                &normalise_base_url("https://open.douyin.com/ "),
                "/oauth/x/"
            ),
            "https://open.douyin.com/oauth/x/"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9", "/a/"),
            "http://127.0.0.1:9/a/"
        );
    }

    #[tokio::test]
    async fn non_2xx_is_a_protocol_error_without_the_body() {
        let (client, _) = mock(vec![(502, "<html>act.LEAK</html>")]);
        let err = post_token(&client, "https://h", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        let Error::Protocol(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("502") && !msg.contains("LEAK"), "{msg}");
    }

    #[tokio::test]
    async fn non_2xx_with_a_douyin_error_body_is_a_douyin_error() {
        let (client, _) = mock(vec![(
            500,
            r#"{"data": {"error_code": 2100004, "description": "busy"}}"#,
        )]);
        let err = post_token(&client, "https://h", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        assert_eq!(err.douyin().map(|d| d.code()), Some(2_100_004));
    }

    #[tokio::test]
    async fn oversized_bodies_stop_early() {
        static BIG: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("{{\"x\": \"{}\"}}", "a".repeat(70 * 1024)));
        let big: &'static str = BIG.as_str();
        let (client, _) = mock(vec![(200, big)]);
        let err = post_token(&client, "https://h", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BodyTooLarge {
                    limit: MAX_RESPONSE_BYTES
                }
            ),
            "{err:?}"
        );

        let chunks = Arc::new(Mutex::new(0));
        let counter = chunks.clone();
        let endless = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let counter = counter.clone();
            async move { Ok::<_, Infallible>(Response::new(Endless(counter))) }
        });
        let err = post_token(&endless, "https://h", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}");
        assert!(*chunks.lock().unwrap() <= MAX_RESPONSE_BYTES / 1024 + 2);
    }

    #[tokio::test]
    async fn client_failures_are_service_errors_and_bad_urls_protocol_errors() {
        let failing = tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("connection refused"))
        });
        let err = post_token(&failing, "https://h", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Service(_)), "{err:?}");

        let (client, seen) = mock(vec![]);
        let err = post_token(&client, "not a url", "/oauth/x/", Payload::form([]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
        assert!(seen.lock().unwrap().is_empty());
    }

    #[cfg(feature = "https")]
    #[tokio::test]
    async fn https_client_builds() {
        let client = HttpsClient::new();
        assert!(format!("{client:?}").contains("ready: true"));
    }
}

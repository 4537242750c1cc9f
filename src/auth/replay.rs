//! The replay copy of a request: its head, and its body buffered up to the replay limit.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use http_body::Body;

use super::options::Shared;
use super::service::NoRetry;
use crate::body::ReplayBody;
use crate::error::Error;

/// What is kept of a request to send it a second time: everything but the token.
pub(crate) struct Replay {
    head: Head,
    version: Version,
    extensions: Extensions,
    pub(crate) body: Bytes,
}

/// The head of the request to send again.
enum Head {
    /// A request without headers: its method and URI, cloned (a static or shared URI clones
    /// without allocating).
    Bare { method: Method, uri: Uri },
    /// A copy packed into one buffer (see [`Packed`]): one allocation, however many headers
    /// (a header map's clone costs two, and one more for each header value built at run time).
    Packed(Packed),
    /// The request's own head, kept while its body is buffered (no copy yet).
    Parts(Box<http::request::Parts>),
}

impl Replay {
    /// A copy of the head of a request whose body is empty; `None` when a part of it is too
    /// large to pack (over 4 GiB), and the request is sent once. Inlined, so the copy is
    /// built in place in the response future rather than moved into it.
    #[inline(always)]
    pub(crate) fn capture<B>(req: &Request<B>) -> Option<Self> {
        let head = if req.headers().is_empty() {
            Head::Bare {
                method: req.method().clone(),
                uri: req.uri().clone(),
            }
        } else {
            Head::Packed(Packed::new(req.method(), req.uri(), req.headers())?)
        };
        // An emptied extension map still holds its table: cloning it would allocate.
        let extensions = if req.extensions().is_empty() {
            Extensions::new()
        } else {
            req.extensions().clone()
        };
        Some(Self {
            head,
            version: req.version(),
            extensions,
            body: Bytes::new(),
        })
    }

    /// The head itself, kept while the body is buffered (no copy yet).
    pub(crate) fn from_parts(parts: http::request::Parts) -> Self {
        Self {
            version: parts.version,
            extensions: Extensions::new(),
            head: Head::Parts(Box::new(parts)),
            body: Bytes::new(),
        }
    }

    /// A copy to keep for the replay, so that the original (whose header map has room for the
    /// token, where a copy's has none) is sent; `None` as for [`capture`](Self::capture).
    pub(crate) fn duplicate(&self) -> Option<Self> {
        let head = match &self.head {
            Head::Bare { method, uri } => Head::Bare {
                method: method.clone(),
                uri: uri.clone(),
            },
            Head::Packed(p) => Head::Packed(p.clone()),
            Head::Parts(parts) if parts.headers.is_empty() => Head::Bare {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
            },
            Head::Parts(parts) => {
                Head::Packed(Packed::new(&parts.method, &parts.uri, &parts.headers)?)
            }
        };
        let extensions = match &self.head {
            Head::Parts(parts) => parts.extensions.clone(),
            _ => self.extensions.clone(),
        };
        Some(Self {
            head,
            version: self.version,
            extensions,
            body: self.body.clone(),
        })
    }

    /// The request's path, as [`Uri::path`] reads it (a packed copy's URI is read again: this
    /// is for an answer that rejected the token, not for every request).
    pub(crate) fn path(&self) -> Cow<'_, str> {
        match &self.head {
            Head::Bare { uri, .. } => Cow::Borrowed(uri.path()),
            Head::Packed(p) => p
                .uri()
                .map_or(Cow::Borrowed("/"), |uri| Cow::Owned(uri.path().to_owned())),
            Head::Parts(parts) => Cow::Borrowed(parts.uri.path()),
        }
    }

    /// The request again, its body rebuilt from the bytes.
    pub(crate) fn into_request<B: ReplayBody>(mut self) -> Result<Request<B>, Error> {
        let body = B::from_bytes(std::mem::take(&mut self.body));
        self.with_body(body)
    }

    /// The request as it came, trailers and all, if the body type can carry trailers.
    pub(crate) fn into_request_with_trailers<B: ReplayBody>(
        mut self,
        trailers: HeaderMap,
    ) -> Option<Result<Request<B>, Error>> {
        let body = B::from_bytes_with_trailers(std::mem::take(&mut self.body), trailers)?;
        Some(self.with_body(body))
    }

    fn with_body<B>(self, body: B) -> Result<Request<B>, Error> {
        let (method, uri, headers, extensions) = match self.head {
            Head::Parts(parts) => {
                let parts = *parts;
                (
                    parts.method,
                    parts.uri,
                    Some(parts.headers),
                    parts.extensions,
                )
            }
            Head::Bare { method, uri } => (method, uri, None, self.extensions),
            Head::Packed(p) => {
                let (method, uri, headers) = p.unpack().ok_or_else(|| {
                    Error::Protocol("the copy of the request for its retry did not unpack".into())
                })?;
                (method, uri, Some(headers), self.extensions)
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        if let Some(headers) = headers {
            *req.headers_mut() = headers;
        }
        *req.extensions_mut() = extensions;
        Ok(req)
    }
}

/// A request's method, URI and headers packed into one buffer, in this order, each part
/// behind its length (`u32`, little-endian):
///
/// - the method; the scheme, the authority, and the path and query, each with a presence
///   byte before it;
/// - the number of headers, then for each: its name, a sensitivity byte and its value.
///
/// Unpacking (only for a retry) parses each part again, so a packed copy never yields what
/// `http` would not accept.
#[derive(Clone)]
pub(crate) struct Packed {
    buf: Box<[u8]>,
}

impl Packed {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        const LEN: usize = 4;
        let parts = [
            uri.scheme_str(),
            uri.authority().map(http::uri::Authority::as_str),
            uri.path_and_query().map(http::uri::PathAndQuery::as_str),
        ];
        let mut size = LEN + method.as_str().len() + LEN;
        size += parts
            .iter()
            .map(|p| 1 + LEN + p.map_or(0, str::len))
            .sum::<usize>();
        size += headers
            .iter()
            .map(|(n, v)| LEN + n.as_str().len() + 1 + LEN + v.len())
            .sum::<usize>();
        let mut buf = Vec::with_capacity(size);
        put(&mut buf, method.as_str().as_bytes())?;
        for part in parts {
            buf.push(u8::from(part.is_some()));
            put(&mut buf, part.unwrap_or_default().as_bytes())?;
        }
        buf.extend_from_slice(&u32::try_from(headers.len()).ok()?.to_le_bytes());
        for (name, value) in headers {
            put(&mut buf, name.as_str().as_bytes())?;
            buf.push(u8::from(value.is_sensitive()));
            put(&mut buf, value.as_bytes())?;
        }
        debug_assert_eq!(buf.len(), size);
        Some(Self {
            buf: buf.into_boxed_slice(),
        })
    }

    /// The URI alone.
    fn uri(&self) -> Option<Uri> {
        let mut r = Reader(&self.buf);
        r.take()?;
        r.uri()
    }

    fn unpack(&self) -> Option<(Method, Uri, HeaderMap)> {
        let mut r = Reader(&self.buf);
        let method = Method::from_bytes(r.take()?).ok()?;
        let uri = r.uri()?;
        let n = usize::try_from(r.u32()?).ok()?;
        // One more for the token.
        let mut headers = HeaderMap::with_capacity(n.saturating_add(1));
        for _ in 0..n {
            let name = http::HeaderName::from_bytes(r.take()?).ok()?;
            let sensitive = r.flag()?;
            let mut value = http::HeaderValue::from_bytes(r.take()?).ok()?;
            value.set_sensitive(sensitive);
            headers.append(name, value);
        }
        Some((method, uri, headers))
    }
}

/// Appends `bytes` behind their length; `None` when they are over 4 GiB.
fn put(buf: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    buf.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    buf.extend_from_slice(bytes);
    Some(())
}

/// Reads a [`Packed`] buffer back, part by part.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (n, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*n))
    }

    fn flag(&mut self) -> Option<bool> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b != 0)
    }

    fn take(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        let bytes = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(bytes)
    }

    /// The URI's three parts, put together.
    fn uri(&mut self) -> Option<Uri> {
        let scheme = self.part()?;
        let authority = self.part()?;
        let path_and_query = self.part()?;
        let parts = {
            let mut parts = http::uri::Parts::default();
            parts.scheme = scheme.map(http::uri::Scheme::try_from).transpose().ok()?;
            parts.authority = authority
                .map(http::uri::Authority::try_from)
                .transpose()
                .ok()?;
            parts.path_and_query = path_and_query
                .map(http::uri::PathAndQuery::try_from)
                .transpose()
                .ok()?;
            parts
        };
        Uri::from_parts(parts).ok()
    }

    /// An optional part: `Some(None)` when it was absent.
    fn part(&mut self) -> Option<Option<&'a [u8]>> {
        let present = self.flag()?;
        let bytes = self.take()?;
        Some(present.then_some(bytes))
    }
}

/// Request body bytes collected for replay; one frame is kept as it is, never copied.
#[derive(Default)]
pub(crate) enum BufferedBytes {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl BufferedBytes {
    pub(crate) fn push(&mut self, mut data: impl Buf) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(data.copy_to_bytes(data.remaining())),
            Self::One(first) => {
                let mut m = BytesMut::with_capacity(first.len() + data.remaining());
                m.extend_from_slice(&first);
                m.put(data);
                Self::Many(m)
            }
            Self::Many(mut m) => {
                m.put(data);
                Self::Many(m)
            }
        };
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(b) => b.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub(crate) fn finish(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(b) => b,
            Self::Many(m) => m.freeze(),
        }
    }
}

/// How reading a request body for the replay stopped.
pub(crate) enum Read<E> {
    /// The body ended; `buf` (and `trailers`) hold all of it.
    Ended,
    /// The body keeps the reader waiting; what came is in `buf`.
    Waiting,
    /// The body failed.
    Failed(E),
    /// The body yielded more than the limit (more than it declared).
    TooLarge,
}

/// Reads a request body for the replay, frame by frame, while frames are ready, never past
/// `limit` (a body that yields more than it declared is not buffered without bound).
pub(crate) fn read_body<B: Body + Unpin>(
    body: &mut B,
    cx: &mut Context<'_>,
    buf: &mut BufferedBytes,
    trailers: &mut Option<Box<HeaderMap>>,
    limit: usize,
) -> Read<B::Error> {
    loop {
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => return Read::Waiting,
            Poll::Ready(None) => return Read::Ended,
            Poll::Ready(Some(Err(e))) => return Read::Failed(e),
            Poll::Ready(Some(Ok(frame))) => {
                match frame.into_data() {
                    Ok(data) => buf.push(data),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            *trailers = Some(Box::new(t));
                        }
                    }
                }
                if buf.len() > limit {
                    return Read::TooLarge;
                }
            }
        }
    }
}

/// All of `body` if it yields it without waiting (a body rebuilt from bytes, or a complete
/// one), at most `limit` bytes; `None` otherwise. Trailers are not kept.
pub(crate) fn read_now<B: Body + Unpin>(mut body: B, limit: usize) -> Option<Bytes> {
    let (mut buf, mut trailers) = (BufferedBytes::default(), None);
    let mut at_once = Context::from_waker(std::task::Waker::noop());
    match read_body(&mut body, &mut at_once, &mut buf, &mut trailers, limit) {
        Read::Ended => Some(buf.finish()),
        Read::Waiting | Read::Failed(_) | Read::TooLarge => None,
    }
}

/// Whether a body can be buffered for replay within `limit`.
pub(crate) fn replayable<B: Body>(body: &B, limit: usize) -> bool {
    body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| usize::try_from(n).is_ok_and(|n| n <= limit))
}

/// How a request with a token is sent.
pub(crate) enum Plan {
    /// Once: no retry (turned off, or the body cannot be replayed).
    Once,
    /// With a copy of its head kept for a replay (its body is empty).
    Replay,
    /// After its body is buffered for a replay.
    Buffer,
}

impl Plan {
    #[inline]
    pub(crate) fn of<B: Body>(req: &Request<B>, shared: &Shared<impl Sized>) -> Self {
        let retry = shared.retry && req.extensions().get::<NoRetry>().is_none();
        if !retry || !replayable(req.body(), shared.replay_limit) {
            Plan::Once
        } else if req.body().is_end_stream() {
            Plan::Replay
        } else {
            Plan::Buffer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use http_body_util::Full;
    use proptest::prelude::*;

    fn request(method: Method, uri: Uri, headers: &[(&str, &[u8], bool)]) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::default());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        for (name, value, sensitive) in headers {
            let mut v = HeaderValue::from_bytes(value).unwrap();
            v.set_sensitive(*sensitive);
            req.headers_mut()
                .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
        }
        req
    }

    /// What a replay must give back: the same method, URI, version, headers (order, repeats
    /// and sensitivity) and extensions.
    fn assert_same(a: &Request<Full<Bytes>>, b: &Request<Full<Bytes>>) {
        assert_eq!(a.method(), b.method());
        assert_eq!(a.uri(), b.uri());
        assert_eq!(a.uri().to_string(), b.uri().to_string());
        assert_eq!(a.version(), b.version());
        let pairs = |r: &Request<Full<Bytes>>| {
            r.headers()
                .iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.is_sensitive()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(a), pairs(b));
        assert_eq!(a.extensions().get::<u32>(), b.extensions().get::<u32>());
    }

    #[test]
    fn a_packed_head_unpacks_to_the_request_it_was_taken_from() {
        let uris = [
            "https://open.douyin.com/api/douyin/v1/user/fans_data/?open_id=o1&x=%20",
            "http://127.0.0.1:8080",
            "/oauth/access_token/?a=1",
            "/",
            "*",
            "open.douyin.com:443",
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::OPTIONS,
            Method::CONNECT,
            Method::from_bytes(b"PURGE").unwrap(),
        ];
        let headers: &[(&str, &[u8], bool)] = &[
            ("content-type", b"application/json", false),
            ("x-multi", b"one", false),
            ("x-multi", b"two", true),
            ("user-agent", b"my-app/1.0 \xe4\xb8\xad", false),
            ("x-empty", b"", false),
        ];
        for uri in uris {
            for method in methods.clone() {
                let mut req = request(method, Uri::from_static(uri), headers);
                req.extensions_mut().insert(7u32);
                let copy = Replay::capture(&req).unwrap();
                assert_eq!(copy.path(), req.uri().path(), "{uri}");
                let again: Request<Full<Bytes>> = copy.into_request().unwrap();
                assert_same(&req, &again);
                assert!(again.headers().capacity() > req.headers().len());
            }
        }
    }

    #[test]
    fn a_buffered_head_is_kept_and_its_duplicate_matches_it() {
        for headers in [&[][..], &[("x-a", &b"1"[..], true)][..]] {
            let mut req = request(
                Method::POST,
                Uri::from_static("https://open.douyin.com/x/?q=1"),
                headers,
            );
            req.extensions_mut().insert(9u32);
            let (parts, _) = req.into_parts();
            let original = Request::from_parts(parts.clone(), Full::default());
            let mut kept = Replay::from_parts(parts);
            kept.body = Bytes::from_static(b"{}");
            let copy = kept.duplicate().unwrap();
            assert_eq!(copy.path(), "/x/");
            let sent: Request<Full<Bytes>> = kept.into_request().unwrap();
            let again: Request<Full<Bytes>> = copy.into_request().unwrap();
            assert_same(&original, &sent);
            assert_same(&original, &again);
        }
    }

    #[test]
    fn a_damaged_copy_unpacks_to_an_error_not_a_panic() {
        let req = request(
            Method::GET,
            Uri::from_static("https://open.douyin.com/x/"),
            &[("x-a", b"1", false)],
        );
        let Some(Replay {
            head: Head::Packed(p),
            ..
        }) = Replay::capture(&req)
        else {
            panic!("a request with headers is packed");
        };
        for cut in 0..p.buf.len() {
            let short = Packed {
                buf: p.buf[..cut].into(),
            };
            assert!(short.unpack().is_none(), "{cut}");
            let _ = short.uri();
        }
    }

    fn header_name() -> impl Strategy<Value = HeaderName> {
        "[a-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
    }

    fn header_value() -> impl Strategy<Value = HeaderValue> {
        (
            prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40),
            any::<bool>(),
        )
            .prop_map(|(b, s)| {
                let mut v = HeaderValue::from_bytes(&b).unwrap();
                v.set_sensitive(s);
                v
            })
    }

    proptest! {
        #[test]
        fn any_head_round_trips(
            headers in prop::collection::vec((header_name(), header_value()), 0..12),
            path in "/[a-zA-Z0-9/._~-]{0,30}",
            query in proptest::option::of("[a-zA-Z0-9=&%._~-]{0,30}"),
        ) {
            let uri = match &query {
                Some(q) => format!("https://open.douyin.com{path}?{q}"),
                None => format!("https://open.douyin.com{path}"),
            };
            let mut req = Request::new(Full::<Bytes>::default());
            *req.uri_mut() = uri.parse().unwrap();
            for (n, v) in headers {
                req.headers_mut().append(n, v);
            }
            let copy = Replay::capture(&req).unwrap();
            prop_assert_eq!(copy.path(), req.uri().path());
            let again: Request<Full<Bytes>> = copy.into_request().unwrap();
            assert_same(&req, &again);
        }
    }
}

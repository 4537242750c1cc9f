//! Where the token goes on a request ([`TokenPlacement`]), and putting it there.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Uri};

use super::options::Shared;
use super::replay::read_now;
use crate::body::ReplayBody;
use crate::cache::{HeaderFormat, Ready};
use crate::error::Error;

/// The header Douyin reads the token from.
pub const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("access-token");

/// The `access_token` header (with an underscore), which some APIs read instead: the official
/// SDK sends `/oauth/userinfo/`, `/auth/entity/…`, `developer-product.zijieapi.com` and the
/// mini-game storage APIs that way.
pub const ACCESS_TOKEN_UNDERSCORE_HEADER: HeaderName = HeaderName::from_static("access_token");

/// The `X-Token` header of the live-interactive card and tag APIs on `webcast.bytedance.com`
/// (`/api/card/…`, `/api/v2/tags/…`).
pub const X_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-token");

/// Where the token goes on each request.
///
/// | placement | who reads it there |
/// | --- | --- |
/// | [`Header`](Self::Header)`(`[`ACCESS_TOKEN_HEADER`]`)`, the default | most of Douyin's APIs (the official SDK sends 428 of its methods so) |
/// | [`access_token_underscore`](Self::access_token_underscore) | `/oauth/userinfo/`, `/auth/entity/…`, mini-game storage, `developer-product.zijieapi.com` |
/// | [`x_token`](Self::x_token) | live-interactive card and tag APIs |
/// | [`query`](Self::query) | older APIs documented with an `access_token` query parameter |
/// | [`form`](Self::form) | older APIs documented with an `access_token` form-body field |
/// | [`Bearer`](Self::Bearer) | not Douyin: your own services |
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// In a header, as it is. The default is `access-token`, which Douyin's OpenAPI reads.
    Header(HeaderName),
    /// In `Authorization: Bearer <token>`.
    Bearer,
    /// In a query parameter (older Douyin APIs take `access_token`), percent-encoded.
    Query(Cow<'static, str>),
    /// In a field of an `application/x-www-form-urlencoded` request body (older Douyin APIs
    /// take `access_token` there). The body is rewritten with the field set (replacing any
    /// field of that name) and its `Content-Length` updated; an empty body becomes a form of
    /// that one field. The body must be a form of at most the replay limit that the layer can
    /// read at once (`Full<Bytes>` and the other [`ReplayBody`] types); any other body fails
    /// the request with [`Error::Body`](crate::Error::Body) and nothing is sent.
    Form(Cow<'static, str>),
}

impl Default for TokenPlacement {
    fn default() -> Self {
        TokenPlacement::Header(ACCESS_TOKEN_HEADER)
    }
}

impl TokenPlacement {
    /// The `access_token` header, with an underscore ([`ACCESS_TOKEN_UNDERSCORE_HEADER`]).
    pub fn access_token_underscore() -> Self {
        Self::Header(ACCESS_TOKEN_UNDERSCORE_HEADER)
    }

    /// The `X-Token` header ([`X_TOKEN_HEADER`]).
    pub fn x_token() -> Self {
        Self::Header(X_TOKEN_HEADER)
    }

    /// The `access_token` query parameter of older APIs.
    pub fn query() -> Self {
        Self::Query(Cow::Borrowed("access_token"))
    }

    /// The `access_token` field of a form-urlencoded body, of older APIs.
    pub fn form() -> Self {
        Self::Form(Cow::Borrowed("access_token"))
    }

    pub(crate) fn header_format(&self) -> HeaderFormat {
        match self {
            TokenPlacement::Bearer => HeaderFormat::Bearer,
            TokenPlacement::Header(_) | TokenPlacement::Query(_) | TokenPlacement::Form(_) => {
                HeaderFormat::Raw
            }
        }
    }

    pub(crate) fn header_name(&self) -> Option<HeaderName> {
        match self {
            TokenPlacement::Header(name) => Some(name.clone()),
            TokenPlacement::Bearer => Some(AUTHORIZATION),
            TokenPlacement::Query(_) | TokenPlacement::Form(_) => None,
        }
    }
}

/// Puts the token where the layer is configured to put it.
///
/// The header value is moved out of `ready` (leaving an empty static one, which costs
/// nothing), so a request costs one reference-count increment on the token's bytes, not two:
/// on two threads every such shared increment moves a cache line. Only `ready.generation` is
/// read after this.
pub(crate) fn attach<B: ReplayBody>(
    req: &mut Request<B>,
    ready: &mut Ready,
    shared: &Shared<impl Sized>,
) -> Result<(), Error> {
    let header = std::mem::replace(&mut ready.header, http::HeaderValue::from_static(""));
    if let Some(name) = &shared.header_name {
        req.headers_mut().insert(name.clone(), header);
        return Ok(());
    }
    if let TokenPlacement::Query(param) = &shared.placement {
        let token = header.to_str().map_err(|_| Error::InvalidHeaderValue)?;
        let uri = req.uri();
        let mut pq = String::with_capacity(uri.path().len() + param.len() + token.len() + 16);
        pq.push_str(uri.path());
        pq.push('?');
        if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
            pq.push_str(q);
            pq.push('&');
        }
        pq.push_str(param);
        pq.push('=');
        percent_encode_into(token, &mut pq);
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(pq.parse().map_err(|_| Error::InvalidHeaderValue)?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Error::InvalidHeaderValue)?;
    }
    if let TokenPlacement::Form(param) = &shared.placement {
        put_in_form(req, param, &header, shared.replay_limit)?;
    }
    Ok(())
}

/// The form placement: the body read at once (it is a rebuilt or a complete body), rewritten
/// with the token field, and put back with its length.
fn put_in_form<B: ReplayBody>(
    req: &mut Request<B>,
    param: &str,
    token: &HeaderValue,
    limit: usize,
) -> Result<(), Error> {
    let token = token.to_str().map_err(|_| Error::InvalidHeaderValue)?;
    let (is_form, no_type) = form_type(req.headers());
    let body = std::mem::replace(req.body_mut(), B::from_bytes(Bytes::new()));
    let bytes = read_now(body, limit).ok_or_else(|| {
        Error::Body(
            "the form placement needs a request body the layer can read at once, within the \
             replay limit"
                .into(),
        )
    })?;
    if !(is_form || (no_type && bytes.is_empty())) {
        return Err(Error::Body(
            "the form placement needs an application/x-www-form-urlencoded body".into(),
        ));
    }
    let form = form_with_field(&bytes, param, token);
    let headers = req.headers_mut();
    if no_type {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    if headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(form.len()));
    }
    *req.body_mut() = B::from_bytes(form);
    Ok(())
}

/// The form placement for the reqwest middleware: the same rules, over a `reqwest::Request`
/// whose body is bytes (a streaming body fails the request).
#[cfg(feature = "reqwest-middleware")]
pub(crate) fn put_in_reqwest_form(
    req: &mut reqwest::Request,
    param: &str,
    token: &HeaderValue,
) -> Result<(), Error> {
    let token = token.to_str().map_err(|_| Error::InvalidHeaderValue)?;
    let (is_form, no_type) = form_type(req.headers());
    let bytes = match req.body() {
        None => &[][..],
        Some(b) => b.as_bytes().ok_or_else(|| {
            Error::Body("the form placement needs a request body of bytes, not a stream".into())
        })?,
    };
    if !(is_form || (no_type && bytes.is_empty())) {
        return Err(Error::Body(
            "the form placement needs an application/x-www-form-urlencoded body".into(),
        ));
    }
    let form = form_with_field(bytes, param, token);
    let headers = req.headers_mut();
    if no_type {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    if headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(form.len()));
    }
    *req.body_mut() = Some(reqwest::Body::from(form));
    Ok(())
}

/// Whether the content type is a form, and whether there is none.
fn form_type(headers: &http::HeaderMap) -> (bool, bool) {
    let content_type = headers.get(CONTENT_TYPE);
    let is_form = content_type.is_some_and(|v| {
        v.to_str().is_ok_and(|v| {
            v.trim_start()
                .get(..33)
                .is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        })
    });
    (is_form, content_type.is_none())
}

/// `body`, a form, with the field `name` set to `value`: every `name` field it had is removed
/// and `name=value` (form-encoded) is appended.
pub(crate) fn form_with_field(body: &[u8], name: &str, value: &str) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + name.len() + value.len() + 2);
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
        let same = form_urlencoded::parse(key)
            .next()
            .is_some_and(|(k, _)| k == name);
        if !same {
            out.extend_from_slice(pair);
            out.push(b'&');
        }
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    ser.append_pair(name, value);
    out.extend_from_slice(ser.finish().as_bytes());
    Bytes::from(out)
}

/// `uri` with the query parameter `name` set to `value` (percent-encoded): every `name` the
/// query had is removed first, so the request carries exactly one. The per-user layer puts the
/// user's `open_id` there this way.
pub(crate) fn set_query_param(uri: &Uri, name: &str, value: &str) -> Result<Uri, Error> {
    let mut pq = String::with_capacity(uri.path().len() + name.len() + value.len() + 16);
    pq.push_str(uri.path());
    pq.push('?');
    if let Some(q) = uri.query() {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap_or_default();
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            if decoded != name {
                pq.push_str(pair);
                pq.push('&');
            }
        }
    }
    percent_encode_into(name, &mut pq);
    pq.push('=');
    percent_encode_into(value, &mut pq);
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| Error::Protocol("the request's URI cannot take the open_id".into()))?,
    );
    Uri::from_parts(parts)
        .map_err(|_| Error::Protocol("the request's URI cannot take the open_id".into()))
}

fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_field_replaces_every_one_the_body_had() {
        let set = |b: &str| form_with_field(b.as_bytes(), "access_token", "clt.a+b/c=");
        assert_eq!(set(""), "access_token=clt.a%2Bb%2Fc%3D");
        assert_eq!(
            set("open_id=o&access_token=old&access%5Ftoken=old2&x=1"),
            "open_id=o&x=1&access_token=clt.a%2Bb%2Fc%3D"
        );
        assert_eq!(set("&&a=1&"), "a=1&access_token=clt.a%2Bb%2Fc%3D");
    }

    #[test]
    fn only_a_body_ready_at_once_is_read() {
        use http_body_util::{BodyExt, Full, StreamBody};
        assert_eq!(
            read_now(Full::new(Bytes::from_static(b"a=1")), 10).as_deref(),
            Some(&b"a=1"[..])
        );
        assert_eq!(read_now(Full::new(Bytes::from_static(b"a=1")), 2), None);
        let pending = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >());
        assert_eq!(read_now(pending.boxed(), 10), None);
    }

    #[test]
    fn the_open_id_replaces_every_one_the_query_had() {
        let set = |u: &str, v: &str| {
            set_query_param(&u.parse().unwrap(), "open_id", v)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            set("https://open.douyin.com/data/x/", "o 1"),
            "https://open.douyin.com/data/x/?open_id=o%201"
        );
        assert_eq!(
            set(
                "https://h/x/?open_id=evil&cursor=0&open%5Fid=evil2&open_ids=k",
                "me"
            ),
            "https://h/x/?cursor=0&open_ids=k&open_id=me"
        );
        assert_eq!(set("/x?&", "me"), "/x?open_id=me");
    }
}

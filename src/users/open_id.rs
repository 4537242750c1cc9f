//! [`OpenId`]: the request extension naming the user a request acts for.

/// The request extension that names the Douyin user a request acts for, by `open_id`.
///
/// ```
/// let mut req = http::Request::new(http_body_util::Full::<bytes::Bytes>::default());
/// req.extensions_mut().insert(douyin_auth::users::OpenId::new("open-id-1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpenId(pub String);

impl OpenId {
    /// The user with `open_id`.
    pub fn new(open_id: impl Into<String>) -> Self {
        Self(open_id.into())
    }

    /// The `open_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

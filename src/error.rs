//! [`Error`]: what can go wrong, as kinds a caller can match on. No message carries a secret.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::douyin::codes::CodeKind;

/// A boxed error, as token sources and inner services return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error shared by every request that waited for the same failed refresh.
///
/// It displays and chains to the error the [`TokenSource`](crate::TokenSource) returned.
#[derive(Clone)]
pub struct SharedError(Arc<dyn std::error::Error + Send + Sync>);

impl SharedError {
    pub(crate) fn new(error: BoxError) -> Self {
        Self(Arc::from(error))
    }

    /// The error the token source returned.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// An error answer from a Douyin endpoint: its code, what it means, the description Douyin gave
/// and the log id to quote to Douyin's support. It never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DouyinError {
    code: i64,
    description: String,
    log_id: Option<String>,
}

impl DouyinError {
    /// An error answer with `code`, Douyin's `description` and the `log_id` if it sent one.
    pub fn new(code: i64, description: impl Into<String>, log_id: Option<String>) -> Self {
        Self {
            code,
            description: description.into(),
            log_id,
        }
    }

    /// Douyin's error code.
    pub fn code(&self) -> i64 {
        self.code
    }

    /// What the code means, from the crate's table of Douyin error codes.
    pub fn kind(&self) -> CodeKind {
        CodeKind::of(self.code)
    }

    /// The description Douyin sent with the code.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Douyin's log id for the call, if it sent one.
    pub fn log_id(&self) -> Option<&str> {
        self.log_id.as_deref()
    }
}

impl fmt::Display for DouyinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Douyin error {} ({}): {}",
            self.code,
            self.kind(),
            self.description
        )?;
        if let Some(log_id) = &self.log_id {
            write!(f, " [log id {log_id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for DouyinError {}

/// Errors of this crate. Every kind is documented; none carries a secret in its message.
///
/// The layer's service returns it as its error type; a [`TokenSource`](crate::TokenSource) may
/// return it boxed. Use [`Error::douyin`] to find the Douyin error code behind a failure,
/// wherever it sits in the chain of sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token source failed; the cause is the source's own error. Requests that waited for
    /// the same refresh all get this error.
    ///
    /// It displays as "could not get a token: " and the source's error, e.g. "could not get a
    /// token: the token endpoint request (/oauth/client_token/) failed: Connection refused".
    #[error("could not get a token: {0}")]
    TokenSource(#[source] SharedError),

    /// The last refresh failed and the cache is backing off before it tries again; no valid
    /// token is cached. The cause is the last failure.
    #[error(
        "could not get a token (the last refresh failed, next attempt in {retry_in:?}): {last}"
    )]
    Backoff {
        /// How long until the next refresh attempt is allowed.
        retry_in: Duration,
        /// The error of the last refresh.
        #[source]
        last: SharedError,
    },

    /// The token source did not answer within the refresh timeout.
    #[error("the token refresh did not finish within {0:?}")]
    RefreshTimeout(Duration),

    /// The token source returned a token that had already expired.
    #[error("the token source returned a token that has already expired")]
    ExpiredToken,

    /// The refresh task was stopped before it finished (the runtime is shutting down).
    #[error("the token refresh was cancelled before it finished")]
    RefreshCancelled,

    /// The token is not a valid HTTP header value (it holds a control character or similar).
    #[error("the token is not a valid HTTP header value")]
    InvalidHeaderValue,

    /// A body was larger than the limit that applies to it.
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },

    /// Reading a body failed.
    #[error("reading the body failed: {}", RootCause(&**.0))]
    Body(#[source] BoxError),

    /// An HTTP client failed: the layer's inner service on the API request, or a token
    /// source's client on its request to a token endpoint.
    ///
    /// It displays what failed and the root cause of the client's error ("the API request
    /// failed: Connection refused (os error 111)"); the whole chain stays in
    /// [`source`](std::error::Error::source). A layer over another layer passes the inner
    /// layer's error on as it is instead of wrapping it again.
    #[error("{}", ServiceFailure(&**.0))]
    Service(#[source] BoxError),

    /// A Douyin endpoint answered with an error code.
    #[error(transparent)]
    Douyin(#[from] DouyinError),

    /// The user's refresh token is dead (expired, revoked or renewed too often): the user must
    /// authorise the app again.
    #[error("user {open_id} must authorise the app again")]
    ReauthorizationRequired {
        /// The user's `open_id`.
        open_id: String,
        /// The Douyin answer that said so, if one did.
        #[source]
        cause: Option<DouyinError>,
    },

    /// A refreshed token could not be written to its store or persistence hook. The new token is
    /// kept in memory and the write is tried again before it is used; nothing is dropped.
    #[error("persisting a refreshed token failed")]
    Persist(#[source] BoxError),

    /// The token store failed or did not answer (for a user's tokens, which are not refreshed
    /// without it; the client token falls back to fetching on its own instead).
    #[error("the token store failed")]
    Store(#[source] BoxError),

    /// The request carries no [`OpenId`](crate::users::OpenId) extension, so the per-user
    /// layer does not know whose token to attach.
    #[error("the request names no user: add an `OpenId` request extension")]
    MissingOpenId,

    /// The request goes to a host or scheme the layer is not configured to send tokens to.
    #[error("refusing to attach a token to a request for {target}")]
    DisallowedTarget {
        /// The scheme and host of the request (never its path or query).
        target: String,
    },

    /// A response from a Douyin endpoint could not be understood.
    #[error("unexpected response from Douyin: {0}")]
    Protocol(String),

    /// Background work needs a Tokio runtime and none is running.
    #[error("no Tokio runtime is running; douyin-auth needs one to refresh tokens")]
    NoRuntime,

    /// The operating system's random number generator failed (making an OAuth `state`).
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

impl Error {
    /// Whether the token source (or its refresh, timeout or back-off) is behind this error.
    pub fn is_token_source(&self) -> bool {
        matches!(
            self,
            Error::TokenSource(_)
                | Error::Backoff { .. }
                | Error::RefreshTimeout(_)
                | Error::ExpiredToken
                | Error::RefreshCancelled
                | Error::InvalidHeaderValue
        )
    }

    /// The Douyin error answer behind this error, wherever it sits in the chain of sources.
    pub fn douyin(&self) -> Option<&DouyinError> {
        find_douyin(self)
    }

    /// Whether the user behind this error must authorise the app again, wherever that sits in
    /// the chain of sources.
    pub fn is_reauthorization_required(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if let Some(Error::ReauthorizationRequired { .. }) = e.downcast_ref::<Error>() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

impl Error {
    /// `Error::Service` for an inner service's error, or that error itself when it is already
    /// one of this crate's (a layer over another layer), so the layers do not repeat themselves.
    pub(crate) fn service(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<Error>() {
            Ok(error) => *error,
            Err(other) => Error::Service(other),
        }
    }

    /// `Error::Service` for a token source's HTTP client failing on its request to `path`.
    pub(crate) fn token_endpoint(path: &'static str, error: BoxError) -> Self {
        Error::Service(Box::new(TokenEndpoint {
            path,
            source: error,
        }))
    }
}

/// The payload of an [`Error::Service`] from a token source: which token endpoint the failed
/// request went to, and the client's error.
#[derive(Debug)]
struct TokenEndpoint {
    path: &'static str,
    source: BoxError,
}

impl fmt::Display for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request to the token endpoint {}", self.path)
    }
}

impl std::error::Error for TokenEndpoint {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// How deep [`RootCause`] follows a chain of sources.
const MAX_CHAIN: usize = 32;

/// Displays the last error of a chain of sources (the error itself if it has none).
struct RootCause<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for RootCause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cur = self.0;
        for _ in 0..MAX_CHAIN {
            match cur.source() {
                Some(next) => cur = next,
                None => break,
            }
        }
        fmt::Display::fmt(cur, f)
    }
}

/// Displays an [`Error::Service`]: which request failed, and the root cause.
struct ServiceFailure<'a>(&'a (dyn std::error::Error + Send + Sync + 'static));

impl fmt::Display for ServiceFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.downcast_ref::<TokenEndpoint>() {
            Some(endpoint) => write!(
                f,
                "the token endpoint request ({}) failed: {}",
                endpoint.path,
                RootCause(&*endpoint.source)
            ),
            None => write!(f, "the API request failed: {}", RootCause(self.0)),
        }
    }
}

/// Walks a chain of sources to the first [`DouyinError`].
pub(crate) fn find_douyin<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a DouyinError> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<DouyinError>() {
            return Some(d);
        }
        if let Some(Error::Douyin(d)) = e.downcast_ref::<Error>() {
            return Some(d);
        }
        cur = e.source();
    }
    None
}

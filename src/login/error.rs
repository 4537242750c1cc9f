//! [`LoginError`], what can go wrong in a login, and [`LoginConfigError`], what can be wrong
//! with a login's settings.

use http::StatusCode;

use crate::error::{BoxError, DouyinError, Error};

/// Why a login did not complete. The [error hook](super::DouyinLoginBuilder::on_error) gets it;
/// by default it becomes a small HTML page ([`into_response`](Self::into_response)).
///
/// Its `Display` and `Debug` never show a secret: no code, no state, no token, no key. The
/// texts that come from the query (Douyin's error parameters) are shown as they came, so
/// escape them where you render them (the default page does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Douyin sent the user back with an error instead of a code: the user pressed "deny", or
    /// Douyin refused the request (a scope the app lacks, a wrong `redirect_uri`).
    #[error("Douyin did not authorise the login: {error}")]
    Denied {
        /// The error parameter (`error`, or `error_code` / `errCode` as Douyin may send it).
        error: String,
        /// The human description, if Douyin sent one (`error_description` or `description`).
        description: Option<String>,
    },

    /// The callback came without a login in progress: no state cookie in the browser (it
    /// expired, was cleared by a completed login, or the login started in another browser), or
    /// no `state` parameter.
    #[error("no login in progress: the state cookie or the state parameter is missing")]
    MissingState,

    /// The state cookie was forged or altered (its signature does not match), or the `state`
    /// parameter is not the one this browser's login started with: a possible CSRF attack, or
    /// an older login from another tab.
    #[error("the login state does not match: possible cross-site request forgery, login refused")]
    InvalidState,

    /// The state cookie is older than the state lifetime: the user took too long.
    #[error("the login took too long: its state expired")]
    ExpiredState,

    /// This state was already used for a callback: a replayed callback.
    #[error("this login was already completed: the callback was replayed")]
    ReplayedState,

    /// The callback carries a valid state but neither a `code` nor an error.
    #[error("the callback carries no authorization code")]
    MissingCode,

    /// Douyin says the code expired or was used already (10007): codes live 10 minutes and work
    /// once.
    #[error("the authorization code expired or was used already")]
    CodeExpired(#[source] DouyinError),

    /// The code exchange failed for another reason (Douyin's error, the network, a malformed
    /// answer).
    #[error("exchanging the authorization code failed")]
    Exchange(#[source] Error),

    /// The user's tokens could not be written to the store; the login is refused, since
    /// nothing could act for the user afterwards.
    #[error("storing the user's tokens failed")]
    Store(#[source] BoxError),

    /// A fresh state could not be made at `GET /login` (the operating system's random source
    /// failed).
    #[error("starting the login failed")]
    Start(#[source] Error),
}

impl LoginError {
    /// A short stable name of the error, for logs, metrics and tests: `denied`,
    /// `missing_state`, `invalid_state`, `expired_state`, `replayed_state`, `missing_code`,
    /// `code_expired`, `exchange_failed`, `store_failed`, `start_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Denied { .. } => "denied",
            Self::MissingState => "missing_state",
            Self::InvalidState => "invalid_state",
            Self::ExpiredState => "expired_state",
            Self::ReplayedState => "replayed_state",
            Self::MissingCode => "missing_code",
            Self::CodeExpired(_) => "code_expired",
            Self::Exchange(_) => "exchange_failed",
            Self::Store(_) => "store_failed",
            Self::Start(_) => "start_failed",
        }
    }

    /// The HTTP status of the default error page: 403 for a denial, 400 for the browser's
    /// side (state and code problems), 502 for a failed exchange, 503 for a failed store, 500
    /// for a failed start.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::MissingState
            | Self::InvalidState
            | Self::ExpiredState
            | Self::ReplayedState
            | Self::MissingCode
            | Self::CodeExpired(_) => StatusCode::BAD_REQUEST,
            Self::Exchange(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Start(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The default error page: the status of [`status`](Self::status) and a small HTML page
    /// that says what happened and links to the login again.
    pub fn into_response(self) -> axum::response::Response {
        super::page::error_page(&self)
    }
}

impl axum::response::IntoResponse for LoginError {
    fn into_response(self) -> axum::response::Response {
        LoginError::into_response(self)
    }
}

/// What is wrong with the settings of a [`DouyinLogin`](super::DouyinLogin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginConfigError {
    /// No redirect URI was given.
    #[error("the login needs a redirect URI")]
    MissingRedirectUri,

    /// The redirect URI is not an absolute `https://` URL (or `http://` on a loopback host).
    #[error("the redirect URI {uri:?} is not usable: {why}")]
    InvalidRedirectUri {
        /// The URI as given (not a secret).
        uri: String,
        /// Why it is refused.
        why: &'static str,
    },

    /// No scope was asked for (Douyin needs at least one, usually `user_info`).
    #[error("the login needs at least one scope")]
    NoScopes,

    /// No [`on_login`](super::DouyinLoginBuilder::on_login) hook was given: the app must set
    /// its own session.
    #[error("the login needs an on_login hook that starts the app's session")]
    MissingLoginHook,

    /// A route path does not start with `/`.
    #[error("the route path {0:?} must start with '/'")]
    InvalidPath(String),

    /// A given [`LoginKey`](super::LoginKey) is shorter than 32 bytes.
    #[error("the login key has {len} bytes; it needs at least 32")]
    KeyTooShort {
        /// The number of bytes given.
        len: usize,
    },

    /// The key could not be generated (the operating system's random source failed).
    #[error("generating the login key failed: {0}")]
    Random(String),
}

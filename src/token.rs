//! [`Token`]: an access token, its expiry and, for user tokens, the user and the refresh token.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead "never expires" reaches: about thirty years.
const FOREVER: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Box<str>);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_boxed_str())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Adds `d` to `from`, saturating at a far-future instant instead of overflowing.
pub(crate) fn deadline(from: Instant, d: Duration) -> Instant {
    from.checked_add(d.min(FOREVER))
        .unwrap_or_else(|| from + Duration::from_secs(60 * 60 * 24))
}

/// An access token as a [`TokenSource`](crate::TokenSource) hands it to the cache.
///
/// A token carries its secret value and its expiry as a monotonic deadline (so no wall clock
/// matters), and, for a user token, the user's `open_id`, the refresh token with its own expiry,
/// and the granted scopes.
///
/// Its `Debug` output never shows the access token or the refresh token, and it has no `Display`.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::Token;
///
/// let token = Token::new("clt.secret", Duration::from_secs(7200));
/// assert_eq!(token.secret(), "clt.secret");
/// assert!(!format!("{token:?}").contains("clt.secret"));
///
/// let user = Token::new("act.secret", Duration::from_secs(1_296_000))
///     .with_open_id("open-id-1")
///     .with_refresh_token("rft.secret", Duration::from_secs(2_592_000))
///     .with_scopes(["user_info", "video.list.bind"]);
/// assert_eq!(user.open_id(), Some("open-id-1"));
/// assert_eq!(user.refresh_token(), Some("rft.secret"));
/// ```
#[derive(Clone)]
pub struct Token {
    access_token: Secret,
    expires_in: Duration,
    obtained_at: Instant,
    open_id: Option<String>,
    refresh_token: Option<Secret>,
    refresh_expires_in: Option<Duration>,
    scopes: Vec<String>,
}

impl Token {
    /// A token that was obtained now and lives for `expires_in`.
    pub fn new(access_token: impl Into<String>, expires_in: Duration) -> Self {
        Self {
            access_token: Secret::new(access_token),
            expires_in: expires_in.min(FOREVER),
            obtained_at: Instant::now(),
            open_id: None,
            refresh_token: None,
            refresh_expires_in: None,
            scopes: Vec::new(),
        }
    }

    /// A token that never expires (for static tokens and tests).
    pub fn never_expiring(access_token: impl Into<String>) -> Self {
        Self::new(access_token, FOREVER)
    }

    /// Sets the `open_id` of the user this token acts for.
    #[must_use]
    pub fn with_open_id(mut self, open_id: impl Into<String>) -> Self {
        self.open_id = Some(open_id.into());
        self
    }

    /// Sets the refresh token and how long it lives from when this token was obtained.
    #[must_use]
    pub fn with_refresh_token(
        mut self,
        refresh_token: impl Into<String>,
        refresh_expires_in: Duration,
    ) -> Self {
        self.refresh_token = Some(Secret::new(refresh_token));
        self.refresh_expires_in = Some(refresh_expires_in.min(FOREVER));
        self
    }

    /// Sets the scopes the user granted.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets when the token was obtained (by default: when it was built). Lifetimes count from it.
    #[must_use]
    pub fn with_obtained_at(mut self, obtained_at: Instant) -> Self {
        self.obtained_at = obtained_at;
        self
    }

    /// The secret access token. Handle with care: never log it.
    pub fn secret(&self) -> &str {
        self.access_token.expose()
    }

    /// The lifetime the token was issued with.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When the token was obtained.
    pub fn obtained_at(&self) -> Instant {
        self.obtained_at
    }

    /// The monotonic instant at which the token expires.
    pub fn expires_at(&self) -> Instant {
        deadline(self.obtained_at, self.expires_in)
    }

    /// How long the token stays valid from now (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at().saturating_duration_since(Instant::now())
    }

    /// Whether the token has expired.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires_at()
    }

    /// The `open_id` of the user this token acts for, if it is a user token.
    pub fn open_id(&self) -> Option<&str> {
        self.open_id.as_deref()
    }

    /// The secret refresh token, if any. Handle with care: never log it.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(Secret::expose)
    }

    /// The lifetime the refresh token was issued with, if any.
    pub fn refresh_expires_in(&self) -> Option<Duration> {
        self.refresh_expires_in
    }

    /// The monotonic instant at which the refresh token expires, if any.
    pub fn refresh_expires_at(&self) -> Option<Instant> {
        self.refresh_expires_in
            .map(|d| deadline(self.obtained_at, d))
    }

    /// The scopes the user granted (empty for client tokens).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .field("remaining", &self.remaining())
            .field("open_id", &self.open_id)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Two tokens are equal when their secrets are equal: that is what the server sees.
impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.access_token == other.access_token
    }
}

impl Eq for Token {}

//! [`Token`]: an access token, its expiry and, for user tokens, the user and the refresh token.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
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
    provenance: Provenance,
}

/// Where a token a [`TokenSource`](crate::TokenSource) hands out came from: the `outcome` of
/// the `token refresh finished` log says it (`fetched`, `adopted`, or `unchanged` when the
/// source handed back the token the cache already had), so a log tells a call to Douyin from
/// a token another instance fetched.
///
/// A source that reads tokens someone else fetched marks them
/// [`Adopted`](Provenance::Adopted) with [`Token::with_provenance`];
/// [`SharedSource`](crate::store::SharedSource), [`StoredUser`](crate::users::StoredUser) and
/// [`UserTokens`](crate::douyin::UserTokens) (its stored token on the first fetch) do. Any
/// other token is [`Fetched`](Provenance::Fetched). It is not kept by stores, and two tokens
/// with the same secret are equal whatever their provenance.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::{Provenance, Token};
///
/// let fetched = Token::new("clt.secret", Duration::from_secs(7200));
/// assert_eq!(fetched.provenance(), Provenance::Fetched);
/// let adopted = fetched.with_provenance(Provenance::Adopted);
/// assert_eq!(adopted.provenance(), Provenance::Adopted);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provenance {
    /// Fetched by this source (from Douyin, or wherever it gets new tokens): the default.
    #[default]
    Fetched,
    /// Read from a store or handed in: another instance, or an earlier run, fetched it.
    Adopted,
}

impl Provenance {
    /// The word the refresh log's `outcome` uses: `fetched`, `adopted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Fetched => "fetched",
            Provenance::Adopted => "adopted",
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
            provenance: Provenance::Fetched,
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

    /// Marks where the token came from (by default [`Provenance::Fetched`]): a source that
    /// hands out a token read from a store marks it [`Provenance::Adopted`], and the refresh
    /// log says so.
    #[must_use]
    pub fn with_provenance(mut self, provenance: Provenance) -> Self {
        self.provenance = provenance;
        self
    }

    /// Where the token came from; see [`Provenance`].
    pub fn provenance(&self) -> Provenance {
        self.provenance
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

    /// How long the refresh token stays valid from now (zero once expired), if there is one.
    pub fn refresh_remaining(&self) -> Option<Duration> {
        self.refresh_expires_at()
            .map(|at| at.saturating_duration_since(Instant::now()))
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
            .field("provenance", &self.provenance)
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

/// A [`Token`] in a form a database, a file or a cache can keep: serde, with the expiries of the
/// access and refresh tokens as absolute UTC times instead of monotonic instants.
///
/// It is the glue of a [`TokenStore`](crate::store::TokenStore) over your own database: store
/// the record (as JSON, or its fields in columns) and turn it back into a [`Token`] when read.
/// In JSON the times are milliseconds since the Unix epoch (UTC):
///
/// ```json
/// {"access_token":"act.…","expires_at":1767225600000,"open_id":"…",
///  "refresh_token":"rft.…","refresh_expires_at":1768521600000,"scopes":["user_info"]}
/// ```
///
/// Absolute times are read against this host's wall clock when the record becomes a [`Token`]
/// again, so hosts that share records need synchronised clocks (NTP); the crate's own stores
/// avoid that by asking the store's clock instead (Redis TTLs, PostgreSQL `now()`).
///
/// Its `Debug` output never shows the access token or the refresh token.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::store::TokenRecord;
/// use douyin_auth::Token;
///
/// let token = Token::new("act.secret", Duration::from_secs(1_296_000))
///     .with_open_id("open-id-1")
///     .with_refresh_token("rft.secret", Duration::from_secs(2_592_000));
/// let json = serde_json::to_string(&TokenRecord::from(&token))?;
///
/// let back = Token::from(serde_json::from_str::<TokenRecord>(&json)?);
/// assert_eq!(back.secret(), "act.secret");
/// assert_eq!(back.refresh_token(), Some("rft.secret"));
/// assert!(back.remaining() > Duration::from_secs(1_295_990));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenRecord {
    /// The secret access token. Handle with care: never log it.
    pub access_token: String,
    /// When the access token expires (UTC; in JSON, milliseconds since the Unix epoch).
    #[serde(with = "unix_ms")]
    pub expires_at: SystemTime,
    /// The `open_id` of the user the token acts for, if it is a user token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_id: Option<String>,
    /// The secret refresh token, if any. Handle with care: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the refresh token expires, if there is one (UTC; in JSON, milliseconds since the
    /// Unix epoch).
    #[serde(default, with = "opt_unix_ms", skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<SystemTime>,
    /// The scopes the user granted (empty for client tokens).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `now + d`, saturating at a far-future time.
fn wall_deadline(now: SystemTime, d: Duration) -> SystemTime {
    now.checked_add(d.min(FOREVER)).unwrap_or(now)
}

impl TokenRecord {
    /// The record of `token`, its lifetimes turned into UTC times by this host's clock.
    pub fn from_token(token: &Token) -> Self {
        let now = SystemTime::now();
        Self {
            access_token: token.secret().to_owned(),
            expires_at: wall_deadline(now, token.remaining()),
            open_id: token.open_id.clone(),
            refresh_token: token.refresh_token().map(str::to_owned),
            refresh_expires_at: token.refresh_remaining().map(|d| wall_deadline(now, d)),
            scopes: token.scopes.clone(),
        }
    }

    /// The token of this record, its lifetimes counted from now by this host's clock (zero for
    /// an expiry in the past).
    pub fn into_token(self) -> Token {
        let now = SystemTime::now();
        let left = |at: SystemTime| at.duration_since(now).unwrap_or(Duration::ZERO);
        let mut token =
            Token::new(self.access_token, left(self.expires_at)).with_scopes(self.scopes);
        token.open_id = self.open_id;
        if let Some(rt) = self.refresh_token {
            let refresh_left = self.refresh_expires_at.map(left).unwrap_or(Duration::ZERO);
            token = token.with_refresh_token(rt, refresh_left);
        }
        token
    }
}

impl From<&Token> for TokenRecord {
    fn from(token: &Token) -> Self {
        Self::from_token(token)
    }
}

impl From<TokenRecord> for Token {
    fn from(record: TokenRecord) -> Self {
        record.into_token()
    }
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("open_id", &self.open_id)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Milliseconds since the Unix epoch; times before it are the epoch.
fn to_unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The time `ms` after the epoch; past what this platform's clock holds, thirty years from now.
fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(|| wall_deadline(SystemTime::now(), FOREVER))
}

mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::to_unix_ms(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        u64::deserialize(d).map(super::from_unix_ms)
    }
}

mod opt_unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(super) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::to_unix_ms(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(super::from_unix_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_the_lifetimes_as_utc_times_and_hides_its_secrets() {
        let token = Token::new("act.s3cret", Duration::from_secs(100))
            .with_open_id("o1")
            .with_refresh_token("rft.s3cret", Duration::from_secs(1000))
            .with_scopes(["user_info"]);
        let before = SystemTime::now();
        let record = TokenRecord::from(&token);
        let after = SystemTime::now();
        assert!(record.expires_at >= before + Duration::from_secs(99));
        assert!(record.expires_at <= after + Duration::from_secs(100));
        let refresh_at = record.refresh_expires_at.unwrap();
        assert!(refresh_at >= before + Duration::from_secs(999));
        assert!(refresh_at <= after + Duration::from_secs(1000));
        let debug = format!("{record:?}");
        assert!(!debug.contains("s3cret"), "{debug}");

        let json = serde_json::to_string(&record).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value["expires_at"].as_u64(),
            Some(to_unix_ms(record.expires_at))
        );
        let back = Token::from(serde_json::from_str::<TokenRecord>(&json).unwrap());
        assert_eq!(back.secret(), "act.s3cret");
        assert_eq!(back.open_id(), Some("o1"));
        assert_eq!(back.refresh_token(), Some("rft.s3cret"));
        assert_eq!(back.scopes(), ["user_info"]);
        let left = back.remaining();
        assert!(
            left > Duration::from_secs(98) && left <= Duration::from_secs(100),
            "{left:?}"
        );
        let refresh_left = back.refresh_remaining().unwrap();
        assert!(
            refresh_left > Duration::from_secs(998) && refresh_left <= Duration::from_secs(1000),
            "{refresh_left:?}"
        );
    }

    #[test]
    fn a_record_from_the_past_is_an_expired_token_and_huge_lifetimes_saturate() {
        let json = r#"{"access_token":"act.old","expires_at":1000,"refresh_token":"rft.old","refresh_expires_at":2000}"#;
        let token = Token::from(serde_json::from_str::<TokenRecord>(json).unwrap());
        assert!(token.is_expired());
        assert_eq!(token.refresh_remaining(), Some(Duration::ZERO));
        assert_eq!(token.open_id(), None);
        let far: TokenRecord =
            serde_json::from_str(r#"{"access_token":"a","expires_at":18446744073709551615}"#)
                .unwrap();
        assert!(!far.into_token().is_expired());
        let forever = TokenRecord::from(&Token::new("a", Duration::MAX));
        assert!(forever.expires_at > SystemTime::now());
        assert_eq!(
            Token::new("a", Duration::from_secs(5)).refresh_remaining(),
            None
        );
    }
}

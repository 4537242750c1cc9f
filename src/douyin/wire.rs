//! The JSON answers of Douyin's token endpoints, parsed leniently: numbers may come as numeric
//! strings, `"message"` may be `"<nil>"`, unknown fields are ignored and optional fields may be
//! missing. Parsing never panics and no error message repeats the body.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{DouyinError, Error};
use crate::token::Secret;

/// A successful answer of a Douyin token endpoint (`/oauth/client_token/`,
/// `/oauth/stable_client_token/`, `/oauth/access_token/`, `/oauth/refresh_token/`,
/// `/oauth/renew_refresh_token/`, the mini-app and mini-game `…/apps/v2/token` and
/// `…/apps/stable_token`, `/oauth/business_token/` and `/oauth/refresh_biz_token/`).
///
/// Build it with [`parse_token_response`]. Which fields are present depends on the endpoint.
/// A business-token answer's `biz_token`, `biz_expires_in`, `biz_refresh_token` and
/// `biz_refresh_expires_in` are read as the access token, its lifetime, the refresh token
/// and its lifetime.
/// Its `Debug` output never shows the access token or the refresh token.
#[derive(Clone, Default)]
pub struct TokenResponse {
    access_token: Option<Secret>,
    expires_in: Option<u64>,
    open_id: Option<String>,
    refresh_token: Option<Secret>,
    refresh_expires_in: Option<u64>,
    scope: Option<String>,
    message: Option<String>,
    log_id: Option<String>,
    server_time_ms: Option<i64>,
    expires_at: Option<i64>,
}

impl TokenResponse {
    /// The access token (`data.access_token`), if the answer holds one. Never log it.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_ref().map(Secret::expose)
    }

    /// The lifetime of the access token (`data.expires_in`); on `/oauth/renew_refresh_token/`
    /// Douyin uses this field for the lifetime of the new refresh token.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    /// The user's `open_id` (`data.open_id`), for user tokens.
    pub fn open_id(&self) -> Option<&str> {
        self.open_id.as_deref()
    }

    /// The refresh token (`data.refresh_token`), if the answer holds one. Never log it.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(Secret::expose)
    }

    /// The lifetime of the refresh token (`data.refresh_expires_in`).
    pub fn refresh_expires_in(&self) -> Option<Duration> {
        self.refresh_expires_in.map(Duration::from_secs)
    }

    /// The granted scopes, from the comma-separated `data.scope` (empty if absent).
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether the answer named any scope (so the caller can keep the old ones otherwise).
    pub(crate) fn has_scope(&self) -> bool {
        self.scope.as_deref().is_some_and(|s| !s.trim().is_empty())
    }

    /// The top-level `message` (often `"success"`, sometimes `"<nil>"`).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Douyin's log id (`data.log_id`, `extra.logid` or a top-level `log_id`).
    pub fn log_id(&self) -> Option<&str> {
        self.log_id.as_deref()
    }

    /// The server time in milliseconds since the Unix epoch (`extra.now`), if sent.
    pub fn server_time_ms(&self) -> Option<i64> {
        self.server_time_ms
    }

    /// The wall-clock expiry in seconds since the Unix epoch (`data.expires_at`, sent by the
    /// mini-game token endpoint), if sent.
    pub fn expires_at_unix(&self) -> Option<i64> {
        self.expires_at
    }

    /// The access token and its lifetime, or a protocol error naming the missing field.
    pub(crate) fn require_access(&self, endpoint: &str) -> Result<(&str, Duration), Error> {
        let token = self
            .access_token()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing(endpoint, "access_token"))?;
        let expires_in = self
            .expires_in()
            .ok_or_else(|| missing(endpoint, "expires_in"))?;
        Ok((token, expires_in))
    }
}

pub(crate) fn missing(endpoint: &str, field: &str) -> Error {
    Error::Protocol(format!("the answer of {endpoint} has no {field}"))
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .field("open_id", &self.open_id)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("scope", &self.scope)
            .field("message", &self.message)
            .field("log_id", &self.log_id)
            .field("server_time_ms", &self.server_time_ms)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Parses the body of a Douyin token endpoint's answer.
///
/// An error answer (a non-zero code in `data.error_code`, `extra.error_code`, `err_no`,
/// `errcode`, a top-level `error_code`, `errno`, `error` or `err.err_code`, as a number or a
/// numeric string) becomes [`Error::Douyin`] with the code, Douyin's description (`description`,
/// `err_msg`, `err_tips`, `errmsg`, `message` or `err.err_msg`) and the log id. A body that is not
/// the JSON of a token answer becomes [`Error::Protocol`] with a short message that never
/// repeats the body. This function never panics, whatever the input.
///
/// ```
/// use douyin_auth::douyin::parse_token_response;
///
/// let body = br#"{"data": {"access_token": "clt.abc", "description": "", "error_code": "0",
///                 "expires_in": "7200"}, "message": "<nil>"}"#;
/// let answer = parse_token_response(body).unwrap();
/// assert_eq!(answer.access_token(), Some("clt.abc"));
/// assert_eq!(answer.expires_in(), Some(std::time::Duration::from_secs(7200)));
///
/// let body = br#"{"data": {"description": "Parameter error", "error_code": 2100005},
///                 "extra": {"logid": "2020070614111601022506808001045D59", "now": 1594015876138}}"#;
/// let err = parse_token_response(body).unwrap_err();
/// assert_eq!(err.douyin().unwrap().code(), 2100005);
///
/// // The mini-app token endpoint's shape
/// let body = br#"{"err_no":0,"err_tips":"success","data":{"access_token":"0801121","expires_in":7200}}"#;
/// assert_eq!(parse_token_response(body).unwrap().access_token(), Some("0801121"));
/// let body = br#"{"err_no":40017,"err_tips":"bad secret","data":null}"#;
/// assert_eq!(parse_token_response(body).unwrap_err().douyin().unwrap().code(), 40017);
/// ```
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, Error> {
    read_wire(body)?.into_response()
}

fn read_wire(body: &[u8]) -> Result<WireResponse, Error> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::Protocol(
            "token answer is not valid: not a JSON object".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| Error::Protocol(describe_json_error(&e)))
}

/// Checks a Douyin answer (of any endpoint) for an error code in every shape
/// [`parse_token_response`] reads, without reading token fields: [`Error::Douyin`] for a
/// non-zero code, [`Error::Protocol`] for a body that is not a JSON object, `Ok` otherwise.
/// Never panics, whatever the input.
///
/// ```
/// use douyin_auth::douyin::check_answer;
///
/// let list = br#"{"data":{"list":[],"error_code":0},"extra":{"error_code":0}}"#;
/// assert!(check_answer(list).is_ok());
/// let refused = r#"{"errcode":40004,"errmsg":"access token 不合法"}"#.as_bytes();
/// assert_eq!(check_answer(refused).unwrap_err().douyin().map(|d| d.code()), Some(40004));
/// ```
pub fn check_answer(body: &[u8]) -> Result<(), Error> {
    let wire = read_wire(body)?;
    match wire.error() {
        Some(e) => Err(Error::Douyin(e)),
        None => Ok(()),
    }
}

/// A short description of a JSON error that never quotes the input.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "malformed JSON",
        Category::Data => "unexpected shape",
        Category::Eof => "truncated JSON",
    };
    format!(
        "token answer is not valid: {kind} at line {}, column {}",
        e.line(),
        e.column()
    )
}

#[derive(Deserialize, Default)]
struct WireResponse {
    #[serde(default)]
    data: Option<WireData>,
    #[serde(default)]
    extra: Option<WireExtra>,
    #[serde(default, deserialize_with = "lenient_string")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    err_no: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    err_msg: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    err_tips: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    log_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    errcode: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    errmsg: Option<String>,
    #[serde(default, deserialize_with = "lenient_code")]
    error_code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_code")]
    errno: Option<i64>,
    #[serde(default, deserialize_with = "lenient_code")]
    error: Option<i64>,
    #[serde(default, deserialize_with = "lenient_err")]
    err: Option<WireErr>,
}

#[derive(Deserialize, Default)]
struct WireErr {
    #[serde(default, deserialize_with = "lenient_code")]
    err_code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    err_msg: Option<String>,
}

/// `err` as an object; any other value reads as absent.
fn lenient_err<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WireErr>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

#[derive(Deserialize, Default)]
struct WireData {
    #[serde(default, deserialize_with = "lenient_string")]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    open_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    refresh_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    error_code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    description: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    log_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    biz_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    biz_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    biz_refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    biz_refresh_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    expires_at: Option<i64>,
}

#[derive(Deserialize, Default)]
struct WireExtra {
    #[serde(default, deserialize_with = "lenient_int")]
    error_code: Option<i64>,
    #[serde(default, deserialize_with = "lenient_string")]
    description: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    logid: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    now: Option<i64>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn seconds(v: Option<i64>, field: &str) -> Result<Option<u64>, Error> {
    match v {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| Error::Protocol(format!("token answer has a negative {field}"))),
    }
}

impl WireResponse {
    fn log_id(&self) -> Option<String> {
        let data = self.data.as_ref();
        let extra = self.extra.as_ref();
        non_empty(data.and_then(|d| d.log_id.clone()))
            .or(non_empty(extra.and_then(|e| e.logid.clone())))
            .or(non_empty(self.log_id.clone()))
    }

    /// The first non-zero code, in the order the classifier reads them, with its description.
    fn error(&self) -> Option<DouyinError> {
        let nonzero = |c: Option<i64>| c.filter(|&c| c != 0);
        let text = |s: &Option<String>| non_empty(s.clone());
        let data = self.data.as_ref();
        let extra = self.extra.as_ref();
        let data_desc = data.and_then(|d| text(&d.description));
        let extra_desc = extra.and_then(|e| text(&e.description));
        let err = self.err.as_ref();
        let generic = || {
            text(&self.err_msg)
                .or(text(&self.err_tips))
                .or(text(&self.errmsg))
                .or(text(&self.message))
                .or(data_desc.clone())
                .or(extra_desc.clone())
        };
        let found = if let Some(code) = nonzero(data.and_then(|d| d.error_code)) {
            Some((code, data_desc.clone().or(extra_desc.clone())))
        } else if let Some(code) = nonzero(extra.and_then(|e| e.error_code)) {
            Some((code, extra_desc.clone()))
        } else if let Some(code) = nonzero(self.err_no)
            .or(nonzero(self.errcode))
            .or(nonzero(self.error_code))
            .or(nonzero(self.errno))
            .or(nonzero(self.error))
        {
            Some((code, generic()))
        } else {
            nonzero(err.and_then(|e| e.err_code))
                .map(|code| (code, err.and_then(|e| text(&e.err_msg)).or_else(generic)))
        };
        found.map(|(code, description)| {
            DouyinError::new(code, description.unwrap_or_default(), self.log_id())
        })
    }

    fn into_response(self) -> Result<TokenResponse, Error> {
        if let Some(e) = self.error() {
            return Err(Error::Douyin(e));
        }
        let log_id = self.log_id();
        let data = self.data.unwrap_or_default();
        let extra = self.extra.unwrap_or_default();
        Ok(TokenResponse {
            access_token: non_empty(data.access_token)
                .or(non_empty(data.biz_token))
                .map(Secret::new),
            expires_in: seconds(data.expires_in.or(data.biz_expires_in), "expires_in")?,
            open_id: non_empty(data.open_id),
            refresh_token: non_empty(data.refresh_token)
                .or(non_empty(data.biz_refresh_token))
                .map(Secret::new),
            refresh_expires_in: seconds(
                data.refresh_expires_in.or(data.biz_refresh_expires_in),
                "refresh_expires_in",
            )?,
            scope: non_empty(data.scope),
            message: self.message,
            log_id,
            server_time_ms: extra.now,
            expires_at: data.expires_at,
        })
    }
}

/// A code as a number or a numeric string; anything else (a word, an object) reads as absent,
/// so that a field named like a code but holding something else never fails the parse.
fn lenient_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// An integer given as a JSON number, a numeric string, `""`, `"<nil>"` or `null`.
fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(IntVisitor)
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // Only integral values well inside i64's range (and f64's exact range).
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Some(v as i64))
        } else {
            Err(E::custom("number is not an integer"))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() || t == "<nil>" || t == "null" {
            return Ok(None);
        }
        t.parse::<i64>()
            .map(Some)
            .map_err(|_| E::custom("string does not hold an integer"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A string given as a JSON string, number or bool; `null`, objects and arrays give `None`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(StringVisitor)
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::douyin::codes::CodeKind;

    const CLIENT_OK: &str = r#"{"data": {"access_token": "clt.SECRET1", "description": "", "error_code": 0, "expires_in": 7200}, "message": "success"}"#;
    const USER_OK: &str = r#"{"data": {"access_token": "act.SECRET2", "description": "", "error_code": 0, "expires_in": 1296000,
          "open_id": "open-1", "refresh_expires_in": 2592000, "refresh_token": "rft.SECRET3", "scope": "user_info,video.list",
          "log_id": "L1", "captcha": "", "desc_url": ""}, "message": "success"}"#;

    #[test]
    fn client_token_success() {
        let r = parse_token_response(CLIENT_OK.as_bytes()).unwrap();
        assert_eq!(r.access_token(), Some("clt.SECRET1"));
        assert_eq!(r.expires_in(), Some(Duration::from_secs(7200)));
        assert_eq!(r.message(), Some("success"));
        assert_eq!(r.refresh_token(), None);
        assert!(r.scopes().is_empty());
    }

    #[test]
    fn user_token_success_and_redacted_debug() {
        let r = parse_token_response(USER_OK.as_bytes()).unwrap();
        assert_eq!(r.open_id(), Some("open-1"));
        assert_eq!(r.refresh_token(), Some("rft.SECRET3"));
        assert_eq!(r.refresh_expires_in(), Some(Duration::from_secs(2_592_000)));
        assert_eq!(r.scopes(), vec!["user_info", "video.list"]);
        assert_eq!(r.log_id(), Some("L1"));
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }

    #[test]
    fn numeric_strings_and_nil_message() {
        let body = r#"{"data": {"access_token": "clt.x", "description": "", "error_code": "0", "expires_in": "86400",
                       "refresh_expires_in": " 100 "}, "message": "<nil>", "extra": {"now": "1594015876138", "logid": ""}}"#;
        let r = parse_token_response(body.as_bytes()).unwrap();
        assert_eq!(r.expires_in(), Some(Duration::from_secs(86400)));
        assert_eq!(r.refresh_expires_in(), Some(Duration::from_secs(100)));
        assert_eq!(r.message(), Some("<nil>"));
        assert_eq!(r.server_time_ms(), Some(1_594_015_876_138));
        assert_eq!(r.log_id(), None);
    }

    #[test]
    fn floats_nulls_unknown_and_missing_fields() {
        let body = r#"{"data": {"access_token": "clt.x", "expires_in": 7200.0, "error_code": null,
                       "new_field": {"nested": [1, 2]}, "description": null},
                       "extra": {"sub_error_code": 0, "whatever": true}, "unknown": [1]}"#;
        let r = parse_token_response(body.as_bytes()).unwrap();
        assert_eq!(r.expires_in(), Some(Duration::from_secs(7200)));
        assert_eq!(r.message(), None);
        let r = parse_token_response(b"{}").unwrap();
        assert_eq!(r.access_token(), None);
        assert!(matches!(r.require_access("/x/"), Err(Error::Protocol(_))));
    }

    #[test]
    fn error_answer_with_extra_logid() {
        let body = r#"{"data": {"description": "Parameter error", "error_code": 2100005},
                       "extra": {"logid": "2020070614111601022506808001045D59", "now": 1594015876138}}"#;
        let Err(Error::Douyin(e)) = parse_token_response(body.as_bytes()) else {
            panic!("expected a Douyin error")
        };
        assert_eq!(e.code(), 2_100_005);
        assert_eq!(e.description(), "Parameter error");
        assert_eq!(e.log_id(), Some("2020070614111601022506808001045D59"));
        assert_eq!(e.kind(), CodeKind::ParameterError);
    }

    #[test]
    fn error_answer_string_code_and_data_log_id() {
        let body = r#"{"data": {"description": "refresh token expired", "error_code": "10010", "log_id": "D1"},
                       "extra": {"logid": "E1"}, "message": "error"}"#;
        let Err(Error::Douyin(e)) = parse_token_response(body.as_bytes()) else {
            panic!("expected a Douyin error")
        };
        assert_eq!(e.code(), 10_010);
        assert_eq!(e.log_id(), Some("D1"));
        assert_eq!(e.kind(), CodeKind::RefreshTokenExpired);
    }

    #[test]
    fn error_code_only_in_extra_or_err_no() {
        let body = r#"{"data": {}, "extra": {"error_code": 10013, "description": "bad key", "logid": "E"}}"#;
        let e = parse_token_response(body.as_bytes()).unwrap_err();
        assert_eq!(e.douyin().map(|d| d.code()), Some(10_013));
        let body = r#"{"err_no": "28001005", "err_msg": "busy", "log_id": "T", "data": null}"#;
        let e = parse_token_response(body.as_bytes()).unwrap_err();
        let d = e.douyin().unwrap();
        assert_eq!(
            (d.code(), d.description(), d.log_id()),
            (28_001_005, "busy", Some("T"))
        );
    }

    // Recorded answers of the families' token endpoints. Sources: Douyin's mini-app
    // "get access token" doc (mini-app sample), the official Node SDK's response models
    // (`@open-dy/open_api_sdk` 1.1.0: `AppsV2TokenResponse{err_no, err_tips, data{access_token,
    // expires_in, expires_at}}` and `OauthBusinessTokenResponse{data{biz_token, biz_expires_in,
    // biz_refresh_token, biz_refresh_expires_in}, error_code, message}`, all strings there).
    const MINI_APP_OK: &str = r#"{"err_no":0,"err_tips":"success","data":{"access_token":"0801121SECRET","expires_in":7200}}"#;
    const MINI_GAME_OK: &str = r#"{"err_no":"0","err_tips":"success","data":{"access_token":"0801121SECRET","expires_in":"7200","expires_at":"1700007200"}}"#;
    const BIZ_OK: &str = r#"{"data":{"biz_token":"bzt.SECRET","biz_expires_in":"2592000","biz_refresh_token":"bzr.SECRET","biz_refresh_expires_in":"5184000"},"error_code":"0","message":"success"}"#;

    #[test]
    fn mini_app_and_mini_game_token_answers() {
        let r = parse_token_response(MINI_APP_OK.as_bytes()).unwrap();
        assert_eq!(
            r.require_access("/x").unwrap(),
            ("0801121SECRET", Duration::from_secs(7200))
        );
        let r = parse_token_response(MINI_GAME_OK.as_bytes()).unwrap();
        assert_eq!(r.expires_in(), Some(Duration::from_secs(7200)));
        assert_eq!(r.expires_at_unix(), Some(1_700_007_200));
        assert!(!format!("{r:?}").contains("SECRET"));
        let e = parse_token_response(br#"{"err_no":40017,"err_tips":"bad secret"}"#).unwrap_err();
        let d = e.douyin().unwrap();
        assert_eq!((d.code(), d.description()), (40_017, "bad secret"));
        assert_eq!(d.kind(), CodeKind::BadCredentials);
    }

    #[test]
    fn business_token_answers() {
        let r = parse_token_response(BIZ_OK.as_bytes()).unwrap();
        assert_eq!(r.access_token(), Some("bzt.SECRET"));
        assert_eq!(r.expires_in(), Some(Duration::from_secs(2_592_000)));
        assert_eq!(r.refresh_token(), Some("bzr.SECRET"));
        assert_eq!(r.refresh_expires_in(), Some(Duration::from_secs(5_184_000)));
        assert!(!format!("{r:?}").contains("SECRET"));
        let e = parse_token_response(
            br#"{"data":{},"error_code":"2190002","message":"access_token invalid"}"#,
        )
        .unwrap_err();
        let d = e.douyin().unwrap();
        assert_eq!(
            (d.code(), d.description()),
            (2_190_002, "access_token invalid")
        );
    }

    #[test]
    fn every_sdk_error_place_is_read() {
        for (body, code, text) in [
            (
                r#"{"errcode":40004,"errmsg":"access token 不合法"}"#,
                40_004,
                "access token 不合法",
            ),
            (
                r#"{"errno":"10013","message":"bad key"}"#,
                10_013,
                "bad key",
            ),
            (
                r#"{"error":2100004,"errmsg":"busy","message":"x"}"#,
                2_100_004,
                "busy",
            ),
            (
                r#"{"err":{"err_code":"28001005","err_msg":"busy"},"log_id":"L"}"#,
                28_001_005,
                "busy",
            ),
            (
                r#"{"error_code":"10020","message":"limit"}"#,
                10_020,
                "limit",
            ),
        ] {
            let e = parse_token_response(body.as_bytes()).unwrap_err();
            let d = e.douyin().unwrap_or_else(|| panic!("{body}: {e:?}"));
            assert_eq!((d.code(), d.description()), (code, text), "{body}");
            assert!(check_answer(body.as_bytes()).is_err());
        }
        // Zeros everywhere, and words where a code could be, are not errors.
        for body in [
            r#"{"errcode":0,"error":0,"errno":"0","error_code":"0","err":{"err_code":0},"data":{"access_token":"x","expires_in":1}}"#,
            r#"{"error":"none","err":"none","data":{"access_token":"x","expires_in":1}}"#,
        ] {
            parse_token_response(body.as_bytes()).unwrap();
            check_answer(body.as_bytes()).unwrap();
        }
    }

    #[test]
    fn malformed_bodies_are_protocol_errors_without_the_body() {
        let cases: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"<html>502 Bad Gateway</html>",
            br#"{"data": {"access_token": "act.LEAK", "expires_in": 7200"#,
            br#"{"data": {"access_token": "act.LEAK", "expires_in": "act.LEAK"}}"#,
            br#"{"data": {"access_token": "act.LEAK", "expires_in": -5}}"#,
            br#"{"data": {"access_token": "act.LEAK", "expires_in": 1.5}}"#,
            br#"{"data": {"access_token": "act.LEAK", "error_code": 18446744073709551615}}"#,
            br#"{"data": "act.LEAK"}"#,
            b"\xff\xfe{",
        ];
        for body in cases {
            match parse_token_response(body) {
                Err(Error::Protocol(msg)) => {
                    assert!(!msg.contains("LEAK"), "{msg}");
                    assert!(msg.len() < 120, "{msg}");
                }
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn random_mutations_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = br#"{}[]":,0123456789-.eE \nultrsa<>"#;
        for body in [CLIENT_OK, USER_OK] {
            for _ in 0..2000 {
                let mut bytes = body.as_bytes().to_vec();
                for _ in 0..rng.usize(1..6) {
                    let i = rng.usize(..bytes.len());
                    match rng.u8(..3) {
                        0 => bytes[i] = alphabet[rng.usize(..alphabet.len())],
                        1 => bytes.insert(i, rng.u8(..)),
                        _ => {
                            bytes.remove(i);
                        }
                    }
                }
                let _ = parse_token_response(&bytes);
            }
        }
        let deep = "[".repeat(100_000);
        assert!(parse_token_response(format!("{{\"data\": {deep}").as_bytes()).is_err());
    }

    #[test]
    fn arbitrary_prefixes_never_panic() {
        for body in [CLIENT_OK, USER_OK] {
            for end in 0..body.len() {
                let _ = parse_token_response(&body.as_bytes()[..end]);
            }
        }
    }
}

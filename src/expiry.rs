//! Deciding whether a response means "the token has expired or is invalid".
//!
//! Douyin answers most errors with HTTP 200 and an error code in a JSON body, so a status-only
//! rule never fires. [`DouyinExpiry`], the default, says "expired" for HTTP 401 and for JSON
//! bodies (up to the layer's peek limit) whose code is an expiry code in any of the shapes
//! Douyin uses: `data.error_code`, `extra.error_code`, `extra.sub_error_code`, `err_no`, and
//! the top-level `errcode`, `error_code`, `errno`, `error` and `err.err_code` (the places the
//! official SDK's error reader looks; see `docs/douyin-protocol.md`). Codes may be numbers or
//! numeric strings in every place. A code that means different things in different API
//! families (40002) counts only with [`DouyinExpiry::for_family`].
//! Implement [`ClassifyExpiry`] for other rules; [`GrpcExpiry`] reads gRPC's
//! `grpc-status: 16` (UNAUTHENTICATED).

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, StatusCode};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::douyin::codes::{
    expiry_codes, CodeKind, Family, DEFAULT_EXPIRY_CODES, DEFAULT_EXPIRY_SUB_CODES,
};

/// What a classifier concludes from a response's status and headers alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    /// The response says the token has expired or is invalid.
    Expired,
    /// The response does not say so; its body is passed on untouched.
    NotExpired,
    /// Look at the body (at most the layer's peek limit), then ask
    /// [`ClassifyExpiry::classify_body`].
    PeekBody,
}

/// Why an answer rejects the token it was sent with; see
/// [`ClassifyExpiry::classify_rejection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The token's lifetime ended (or the answer does not say more, as HTTP 401 does): a new
    /// token fixes it.
    Expired,
    /// The token is not accepted here: rotated out or revoked (a new token fixes it), or of
    /// the wrong kind for this API, or missing a scope (no new token fixes it). The layer
    /// bounds the refreshes such answers drive, so an API that rejects every token cannot cost
    /// a token fetch per request.
    Invalid,
}

/// Decides whether a response means the token used for the request has expired or is invalid.
///
/// The layer asks [`classify_head`](Self::classify_head) for every first answer; only when it
/// says [`HeadVerdict::PeekBody`] does the layer read the body, up to its peek limit, and ask
/// [`classify_body`](Self::classify_body). The caller always gets the body byte for byte.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use douyin_auth::expiry::{ClassifyExpiry, HeadVerdict};
///
/// /// Only HTTP 401 and 403 mean "expired".
/// #[derive(Clone, Debug)]
/// struct StatusOnly;
///
/// impl ClassifyExpiry for StatusOnly {
///     fn classify_head(&self, status: StatusCode, _headers: &HeaderMap) -> HeadVerdict {
///         match status {
///             StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HeadVerdict::Expired,
///             _ => HeadVerdict::NotExpired,
///         }
///     }
/// }
/// ```
pub trait ClassifyExpiry: Send + Sync + 'static {
    /// Classifies a response by its status and headers.
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> HeadVerdict;

    /// Classifies a response by its (complete, at most peek-limit sized) body. Called only after
    /// [`classify_head`](Self::classify_head) said [`HeadVerdict::PeekBody`]. The default says
    /// "not expired".
    fn classify_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
        let _ = (status, headers, body);
        false
    }

    /// Why the (complete, at most peek-limit sized) body rejects the token, if it does. The
    /// layer asks this one; the default reads [`classify_body`](Self::classify_body) and calls
    /// every rejection [`Rejection::Expired`]. Override it to tell an invalid token (wrong
    /// kind, revoked, missing scope) from an expired one.
    fn classify_rejection(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Rejection> {
        self.classify_body(status, headers, body)
            .then_some(Rejection::Expired)
    }
}

/// Douyin's rules, the default classifier: HTTP 401, or a JSON body whose error code is one of
/// the expiry codes, in every body shape Douyin uses.
///
/// The default codes are [`DEFAULT_EXPIRY_CODES`] (2190008, 10008, 28001008, 2190002,
/// 28001003, 40004) and the sub-codes [`DEFAULT_EXPIRY_SUB_CODES`] (11002). Codes may be
/// numbers or numeric strings, in any of the places listed in the [module docs](self). For a
/// layer in front of one API family, [`for_family`](Self::for_family) adds the family's own
/// codes (40002 on the old mini-app APIs).
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use douyin_auth::expiry::{ClassifyExpiry, DouyinExpiry};
///
/// let c = DouyinExpiry::default();
/// let h = HeaderMap::new();
/// assert!(c.classify_body(StatusCode::OK, &h, br#"{"data":{"error_code":2190008}}"#));
/// assert!(c.classify_body(StatusCode::OK, &h, br#"{"extra":{"error_code":"2190002"}}"#));
/// assert!(c.classify_body(StatusCode::OK, &h, br#"{"err_no":28001008,"err_msg":"expired"}"#));
/// let invalid = r#"{"errcode":40004,"errmsg":"access token 不合法"}"#;
/// assert!(c.classify_body(StatusCode::OK, &h, invalid.as_bytes()));
/// assert!(!c.classify_body(StatusCode::OK, &h, br#"{"data":{"error_code":2190004}}"#));
///
/// // 40002 is "bad access_token" only on the old mini-app APIs
/// use douyin_auth::douyin::codes::Family;
/// let bad = br#"{"errcode":40002,"errmsg":"bad access_token"}"#;
/// assert!(!c.classify_body(StatusCode::OK, &h, bad));
/// assert!(DouyinExpiry::for_family(Family::MiniApp).classify_body(StatusCode::OK, &h, bad));
///
/// // your own set of codes
/// let c = DouyinExpiry::with_codes([12345], []);
/// assert!(c.classify_body(StatusCode::OK, &h, br#"{"err_no":12345}"#));
/// ```
#[derive(Clone, Debug)]
pub struct DouyinExpiry {
    codes: Cow<'static, [i64]>,
    sub_codes: Cow<'static, [i64]>,
    family: Option<Family>,
}

impl Default for DouyinExpiry {
    fn default() -> Self {
        Self {
            codes: Cow::Borrowed(DEFAULT_EXPIRY_CODES),
            sub_codes: Cow::Borrowed(DEFAULT_EXPIRY_SUB_CODES),
            family: None,
        }
    }
}

impl DouyinExpiry {
    /// Douyin's default codes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Your own expiry codes and sub-codes instead of the defaults.
    pub fn with_codes(
        codes: impl IntoIterator<Item = i64>,
        sub_codes: impl IntoIterator<Item = i64>,
    ) -> Self {
        Self {
            codes: Cow::Owned(codes.into_iter().collect()),
            sub_codes: Cow::Owned(sub_codes.into_iter().collect()),
            family: None,
        }
    }

    /// Douyin's codes as `family` reads them ([`expiry_codes`]): for a layer whose requests
    /// all go to that family's APIs. [`Family::MiniApp`] adds 40002 ("bad access_token" on
    /// the old mini-app APIs), which the default leaves out because the live-interactive tools
    /// use it for "no permission".
    pub fn for_family(family: Family) -> Self {
        Self {
            codes: Cow::Borrowed(expiry_codes(family)),
            sub_codes: Cow::Borrowed(DEFAULT_EXPIRY_SUB_CODES),
            family: Some(family),
        }
    }

    /// The family whose code table this classifier reads, if one was chosen.
    pub fn family(&self) -> Option<Family> {
        self.family
    }

    /// The expiry codes in use.
    pub fn codes(&self) -> &[i64] {
        &self.codes
    }

    /// The expiry sub-codes in use.
    pub fn sub_codes(&self) -> &[i64] {
        &self.sub_codes
    }

    /// Whether a Douyin JSON body says the token has expired or is invalid. Malformed JSON,
    /// non-JSON and bodies without a code say "no". Never panics, whatever the bytes.
    pub fn body_means_expired(&self, body: &[u8]) -> bool {
        self.body_rejection(body).is_some()
    }

    /// Why a Douyin JSON body rejects the token, if it does: [`Rejection::Invalid`] for the
    /// codes Douyin documents as "invalid token" ([`CodeKind::AccessTokenInvalid`]: 2190002,
    /// 28001003, 40004, and 40002 for [`Family::MiniApp`]), [`Rejection::Expired`] for every
    /// other expiry code or sub-code. The places are read in this order: `data.error_code`,
    /// `extra.error_code`, `err_no`, `errcode`, `error_code`, `errno`, `error`,
    /// `err.err_code`, then `extra.sub_error_code`.
    pub fn body_rejection(&self, body: &[u8]) -> Option<Rejection> {
        // Most answers carry only zero codes, or none: a scan for the code keys settles them
        // without a parse. Only a non-zero expiry code at a code key is confirmed by the
        // structured reader, which alone decides (a code inside a string, a nested list or
        // any other place it does not read never fires).
        if !scan::may_reject(body, &self.codes, &self.sub_codes) {
            return None;
        }
        self.parsed_rejection(body)
    }

    /// [`body_rejection`](Self::body_rejection) without the scan: the structured reader alone.
    /// The scan must agree with it on every input (property tests and a fuzz target check).
    #[doc(hidden)]
    pub fn parsed_rejection(&self, body: &[u8]) -> Option<Rejection> {
        let codes = peek_codes(body)?;
        let family = self.family;
        let kind = |c: i64| {
            let k = match family {
                Some(f) => CodeKind::of_in(f, c),
                None => CodeKind::of(c),
            };
            match k {
                CodeKind::AccessTokenInvalid => Rejection::Invalid,
                _ => Rejection::Expired,
            }
        };
        let hit = |c: Option<i64>| c.filter(|&c| c != 0 && self.codes.contains(&c)).map(kind);
        codes.in_order().into_iter().find_map(hit).or_else(|| {
            codes
                .extra_sub_error_code
                .filter(|&c| c != 0 && self.sub_codes.contains(&c))
                .map(|_| Rejection::Expired)
        })
    }
}

/// The scan that settles most answers without a parse.
mod scan {
    use memchr::memmem;

    /// The needle every code key contains: the pair of `r`s in "err". memchr's SIMD pair
    /// search finds it at close to one `memchr` pass (a three-byte "err" falls back to a
    /// slower search: `e` and `r` rank as common bytes in memchr's table), built once.
    static RR: std::sync::LazyLock<memmem::Finder<'static>> = std::sync::LazyLock::new(|| {
        memmem::FinderBuilder::new().build_forward_with_ranker(RareR, b"rr")
    });

    /// Byte ranks for [`RR`]: an `r` is rare enough in Douyin's answers for the pair search.
    struct RareR;

    impl memchr::arch::all::packedpair::HeuristicFrequencyRank for RareR {
        fn rank(&self, byte: u8) -> u8 {
            if byte == b'r' {
                0
            } else {
                255
            }
        }
    }

    /// Whether `body` may carry one of `codes` (or `sub_codes`) at a code key: false only
    /// when every code key in it is followed by no code, zero, or a code outside both lists,
    /// and no escape in it may stand for a letter of a key (`\u0065rror_code`). Never panics.
    pub(super) fn may_reject(body: &[u8], codes: &[i64], sub_codes: &[i64]) -> bool {
        if memchr::memchr_iter(b'\\', body).any(|i| may_hide_key(&body[i..])) {
            return true;
        }
        // Every code key contains "err": one pass finds them all by its "rr".
        for rr in RR.find_iter(body) {
            let Some(at) = rr.checked_sub(1).filter(|&at| body[at] == b'e') else {
                continue;
            };
            let Some(end) = code_key_end(body, at) else {
                continue;
            };
            if let Some(code) = value_after_colon(&body[end..]).and_then(code_of) {
                if code == UNSURE || codes.contains(&code) || sub_codes.contains(&code) {
                    return true;
                }
            }
        }
        false
    }

    /// Where the code key whose "err" starts at `at` ends (past its closing quote), if the
    /// "err" is part of one of the keys the structured reader takes a code from: `"error_code"`,
    /// `"sub_error_code"`, `"err_no"`, `"errcode"`, `"errno"`, `"error"`, `"err_code"`. Each
    /// comparison has a fixed length, so it compiles to a few integer compares.
    fn code_key_end(body: &[u8], at: usize) -> Option<usize> {
        let rest = body.get(at + 3..)?;
        let quoted = at.checked_sub(1).and_then(|i| body.get(i)) == Some(&b'"');
        let len = if quoted {
            if rest.starts_with(b"or_code\"") {
                8
            } else if rest.starts_with(b"_no\"") {
                4
            } else if rest.starts_with(b"no\"") {
                3
            } else if rest.starts_with(b"code\"") {
                5
            } else if rest.starts_with(b"or\"") {
                3
            } else if rest.starts_with(b"_code\"") {
                6
            } else {
                return None;
            }
        } else if at >= 5 && body[at - 5..at] == *b"\"sub_" && rest.starts_with(b"or_code\"") {
            8
        } else {
            return None;
        };
        Some(at + 3 + len)
    }

    /// Whether the escape `esc` starts with (a backslash) may stand for a character of a code
    /// key: `\u` with the code of `a`..=`z` or `_`, or one the scan cannot read. Every other
    /// escape (`\"`, `\n`, Go's `\u0026` for `&`, `\u4e2d`, …) decodes to a character no code
    /// key has, so a key holding it is not a code key; escapes inside code values are left to
    /// [`code_of`].
    fn may_hide_key(esc: &[u8]) -> bool {
        let Some(hex) = esc.strip_prefix(b"\\u") else {
            return false;
        };
        let Some(hex) = hex.get(..4).and_then(|h| std::str::from_utf8(h).ok()) else {
            return true;
        };
        match u32::from_str_radix(hex, 16) {
            Ok(c) => c == u32::from(b'_') || (u32::from(b'a')..=u32::from(b'z')).contains(&c),
            Err(_) => true,
        }
    }

    /// See [`code_of`].
    const UNSURE: i64 = i64::MIN;

    fn skip_ws(b: &[u8]) -> &[u8] {
        match b
            .iter()
            .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            Some(n) => &b[n..],
            None => &[],
        }
    }

    /// The value after `:` when the key is a key (followed by a colon), else `None`.
    fn value_after_colon(rest: &[u8]) -> Option<&[u8]> {
        let rest = skip_ws(rest);
        let rest = rest.strip_prefix(b":")?;
        Some(skip_ws(rest))
    }

    /// The code a value holds, as the structured reader reads it: a number (an integer, or a
    /// float with no fraction), or a string holding an integer; anything else holds none.
    /// A value the scan does not settle itself (a string with an escape, a number it cannot
    /// read) is [`UNSURE`], so that the structured reader settles it.
    fn code_of(value: &[u8]) -> Option<i64> {
        if let Some(rest) = value.strip_prefix(b"\"") {
            let end = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[end] == b'\\' {
                return Some(UNSURE);
            }
            let text = std::str::from_utf8(&rest[..end]).ok()?;
            return super::code_in_str(text);
        }
        let len = value
            .iter()
            .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
        let number = &value[..len];
        if let Some(n) = small_integer(number) {
            return Some(n);
        }
        let text = std::str::from_utf8(number).ok()?;
        if text.is_empty() {
            return None;
        }
        if let Ok(n) = text.parse::<i64>() {
            return Some(n);
        }
        match text.parse::<f64>() {
            // Too large or fractional: no code, as the structured reader reads it.
            Ok(f) => super::code_in_f64(f),
            Err(_) => Some(UNSURE),
        }
    }

    /// The value of an integer of at most 18 digits (no sign, or a minus), read without a
    /// string parse: every code Douyin sends. Anything else is left to `code_of`'s parse.
    fn small_integer(number: &[u8]) -> Option<i64> {
        let (negative, digits) = match number.split_first() {
            Some((b'-', digits)) => (true, digits),
            _ => (false, number),
        };
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        Some(if negative { -n } else { n })
    }
}

/// Whether the headers say the body is JSON (`application/json`, `text/json`, `…+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(http::header::CONTENT_TYPE)
        .map(http::HeaderValue::as_bytes)
    else {
        return false;
    };
    // Douyin's own value, compared whole; then the general rule, on the bytes (a header value
    // that is not visible ASCII is no text at all: `to_str` fails on it).
    if ct == b"application/json; charset=utf-8" || ct == b"application/json" {
        return true;
    }
    if !ct.is_ascii() {
        return false;
    }
    let mime = ct
        .split(|&c| c == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let Some(slash) = mime.iter().position(|&c| c == b'/') else {
        return false;
    };
    let sub = &mime[slash + 1..];
    sub.eq_ignore_ascii_case(b"json")
        || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

impl ClassifyExpiry for DouyinExpiry {
    #[inline]
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> HeadVerdict {
        if status == StatusCode::UNAUTHORIZED {
            HeadVerdict::Expired
        } else if is_json(headers) {
            HeadVerdict::PeekBody
        } else {
            HeadVerdict::NotExpired
        }
    }

    fn classify_body(&self, _status: StatusCode, _headers: &HeaderMap, body: &[u8]) -> bool {
        self.body_means_expired(body)
    }

    fn classify_rejection(
        &self,
        _status: StatusCode,
        _headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Rejection> {
        self.body_rejection(body)
    }
}

/// gRPC's rule: `grpc-status: 16` (UNAUTHENTICATED) in the response headers (a trailers-only
/// answer, as interceptors that reject a token send), or HTTP 401.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcExpiry;

impl ClassifyExpiry for GrpcExpiry {
    fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> HeadVerdict {
        let unauthenticated = headers
            .get("grpc-status")
            .is_some_and(|v| v.as_bytes() == b"16");
        if unauthenticated || status == StatusCode::UNAUTHORIZED {
            HeadVerdict::Expired
        } else {
            HeadVerdict::NotExpired
        }
    }
}

/// The error codes found in a Douyin body, in each place Douyin puts them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PeekedCodes {
    pub(crate) data_error_code: Option<i64>,
    pub(crate) extra_error_code: Option<i64>,
    pub(crate) extra_sub_error_code: Option<i64>,
    pub(crate) err_no: Option<i64>,
    /// Top-level `errcode` (live-interactive tools, mini-game APIs, old mini-app APIs).
    pub(crate) errcode: Option<i64>,
    /// Top-level `error_code` (business-token APIs).
    pub(crate) error_code: Option<i64>,
    /// Top-level `errno` (third-party platform).
    pub(crate) errno: Option<i64>,
    /// Top-level `error` (mini-game login).
    pub(crate) error: Option<i64>,
    /// `err.err_code` (`/auth/entity/…`).
    pub(crate) err_err_code: Option<i64>,
}

impl PeekedCodes {
    /// The codes in the order the classifier reads them (sub-codes apart).
    fn in_order(&self) -> [Option<i64>; 8] {
        [
            self.data_error_code,
            self.extra_error_code,
            self.err_no,
            self.errcode,
            self.error_code,
            self.errno,
            self.error,
            self.err_err_code,
        ]
    }
}

/// Reads only the code fields of a JSON body, skipping everything else without building it.
pub(crate) fn peek_codes(body: &[u8]) -> Option<PeekedCodes> {
    let top: Top = serde_json::from_slice(body).ok()?;
    Some(PeekedCodes {
        data_error_code: top.data.error_code,
        extra_error_code: top.extra.error_code,
        extra_sub_error_code: top.extra.sub_error_code,
        err_no: top.err_no,
        errcode: top.errcode,
        error_code: top.error_code,
        errno: top.errno,
        error: top.error,
        err_err_code: top.err.err_code,
    })
}

#[derive(Default)]
struct Top {
    data: Codes,
    extra: Codes,
    err: Codes,
    err_no: Option<i64>,
    errcode: Option<i64>,
    error_code: Option<i64>,
    errno: Option<i64>,
    error: Option<i64>,
}

#[derive(Default)]
struct Codes {
    error_code: Option<i64>,
    sub_error_code: Option<i64>,
    err_code: Option<i64>,
}

/// The code a JSON float holds: a whole number within what an `f64` holds exactly.
fn code_in_f64(v: f64) -> Option<i64> {
    let ok = v.fract() == 0.0 && v.abs() < 9.0e15;
    #[allow(clippy::cast_possible_truncation)]
    ok.then_some(v as i64)
}

/// The code a JSON string holds: an integer, blanks around it allowed.
fn code_in_str(v: &str) -> Option<i64> {
    v.trim().parse().ok()
}

/// A number, or a string holding one; anything else reads as "no code".
struct Code(Option<i64>);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Code;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a code")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Code, E> {
                Ok(Code(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Code, E> {
                Ok(Code(i64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Code, E> {
                Ok(Code(code_in_f64(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Code, E> {
                Ok(Code(code_in_str(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Code, E> {
                Ok(Code(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Code, E> {
                Ok(Code(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Code, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Code(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Code, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Code(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A key we care about, or one we skip; reads escaped keys too.
enum Key {
    Data,
    Extra,
    Err,
    ErrNo,
    ErrCodeTop,
    ErrorCode,
    Errno,
    Error,
    ErrCode,
    SubErrorCode,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "data" => Key::Data,
                    "extra" => Key::Extra,
                    "err" => Key::Err,
                    "err_no" => Key::ErrNo,
                    "errcode" => Key::ErrCodeTop,
                    "error_code" => Key::ErrorCode,
                    "errno" => Key::Errno,
                    "error" => Key::Error,
                    "err_code" => Key::ErrCode,
                    "sub_error_code" => Key::SubErrorCode,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// An object holding codes; any other JSON value reads as "no codes".
impl<'de> Deserialize<'de> for Codes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Codes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Codes, A::Error> {
                let mut out = Codes::default();
                while let Some(k) = a.next_key::<Key>()? {
                    match k {
                        Key::ErrorCode => out.error_code = a.next_value::<Code>()?.0,
                        Key::SubErrorCode => out.sub_error_code = a.next_value::<Code>()?.0,
                        Key::ErrCode => out.err_code = a.next_value::<Code>()?.0,
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Codes, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Codes::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Codes, E> {
                Ok(Codes::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Codes, E> {
                Ok(Codes::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Codes, E> {
                Ok(Codes::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Codes, E> {
                Ok(Codes::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Codes, E> {
                Ok(Codes::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Codes, E> {
                Ok(Codes::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Top, A::Error> {
                let mut out = Top::default();
                while let Some(k) = a.next_key::<Key>()? {
                    match k {
                        Key::Data => out.data = a.next_value()?,
                        Key::Extra => out.extra = a.next_value()?,
                        Key::Err => out.err = a.next_value()?,
                        Key::ErrNo => out.err_no = a.next_value::<Code>()?.0,
                        Key::ErrCodeTop => out.errcode = a.next_value::<Code>()?.0,
                        Key::ErrorCode => out.error_code = a.next_value::<Code>()?.0,
                        Key::Errno => out.errno = a.next_value::<Code>()?.0,
                        Key::Error => out.error = a.next_value::<Code>()?.0,
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    /// The scan settles answers without a parse: zero codes, no codes and codes that are not
    /// expiry codes are "no"; an expiry code at any code key, an escaped key, or a value it
    /// cannot read goes to the structured reader.
    #[test]
    fn the_scan_settles_ordinary_answers_without_a_parse() {
        let c = DouyinExpiry::default();
        let may = |b: &str| scan::may_reject(b.as_bytes(), &c.codes, &c.sub_codes);
        assert!(!may(
            r#"{"data":{"error_code":0,"description":"","list":[1,2]},"extra":{"error_code":0,"sub_error_code":0,"logid":"x"}}"#
        ));
        assert!(!may(
            r#"{"err_no":0,"err_tips":"success","data":{"access_token":"x"}}"#
        ));
        assert!(!may(r#"{"data":{"items":[]}}"#));
        assert!(!may(
            r#"{"data":{"error_code":2190004,"description":"no scope"}}"#
        ));
        assert!(!may(r#"{"data":{"error_code": "0" , "x":"error_code"}}"#));
        assert!(!may(r#"{"data":{"error":{"code":5}}}"#));
        assert!(may(r#"{"data":{"error_code":2190008}}"#));
        assert!(may(r#"{"data":{"error_code" : "2190002"}}"#));
        assert!(may(r#"{"extra":{"sub_error_code":11002}}"#));
        assert!(may(r#"{"errcode":40004,"errmsg":"x"}"#));
        assert!(may(r#"{"err_no":2.190008e6}"#));
        assert!(may(r#"{"data":{"\u0065rror_code":2190008}}"#));
        assert!(may(r#"{"data":{"error_code":"21900\u00308"}}"#));
        // Escapes that decode to no letter of a code key cannot hide one: Go's encoder writes
        // `&`, `<` and `>` as `\u0026`, `\u003c` and `\u003e`, and some encoders write every
        // non-ASCII character escaped; such answers stay on the scan.
        assert!(!may(
            r#"{"data":{"error_code":0,"list":[{"cover":"https://p3.douyinpic.com/x?a=1\u0026b=2","title":"\u4e2d\u6587 \"q\" \\ \n"}]},"extra":{"error_code":0}}"#
        ));
        // An escape of a letter or `_` may be part of a key: the structured reader decides.
        assert!(may(r#"{"data":{"error\u005fcode":2190008}}"#));
        assert!(may(r#"{"data":{"e\u0072\u0072or_code":2190008}}"#));
        // Keys are case-sensitive: an escaped capital cannot make a code key.
        assert!(!may(r#"{"data":{"e\u0052ror_code":2190008}}"#));
        // A key found by its pair of `r`s next to other `r`s.
        assert!(may(r#"{"rrerr_no":1,"err_no":2190008}"#));
    }

    #[test]
    fn every_shape_and_code() {
        let c = DouyinExpiry::default();
        for code in DEFAULT_EXPIRY_CODES {
            for body in [
                format!(
                    r#"{{"data":{{"error_code":{code},"description":"x"}},"extra":{{"error_code":{code},"logid":"l"}}}}"#
                ),
                format!(r#"{{"data":{{"list":[]}},"extra":{{"error_code":{code},"now":1}}}}"#),
                format!(r#"{{"err_no":{code},"err_msg":"m","log_id":"l","data":{{}}}}"#),
                format!(r#"{{"err_no":"{code}","err_tips":"m","data":null}}"#),
            ] {
                assert!(c.body_means_expired(body.as_bytes()), "{body}");
            }
        }
        assert!(
            c.body_means_expired(br#"{"data":{},"extra":{"error_code":0,"sub_error_code":11002}}"#)
        );
    }

    /// The places the official SDK's error reader (`@open-dy/open_api_util` 1.0.1,
    /// `Client.getErrNo`) looks, with the answers recorded from the SDK's response models and
    /// Douyin's docs (see `docs/douyin-protocol.md`).
    #[test]
    fn the_sdk_shapes_are_read_as_numbers_and_strings() {
        let c = DouyinExpiry::default();
        for code in ["40004", "\"40004\"", "\" 40004 \""] {
            for body in [
                // live-interactive tools, mini-game storage: errcode / errmsg
                format!(r#"{{"errcode":{code},"errmsg":"access token 不合法"}}"#),
                // business-token APIs: top-level error_code (a string in the SDK's model)
                format!(r#"{{"data":{{}},"error_code":{code},"message":"error"}}"#),
                // third-party platform: errno
                format!(r#"{{"errno":{code},"message":"x"}}"#),
                // mini-game login: error
                format!(r#"{{"error":{code},"errmsg":"x"}}"#),
                // /auth/entity/…: err.err_code
                format!(r#"{{"err":{{"err_code":{code},"err_msg":"x"}},"data":null}}"#),
            ] {
                assert_eq!(
                    c.body_rejection(body.as_bytes()),
                    Some(Rejection::Invalid),
                    "{body}"
                );
            }
        }
        for body in [
            r#"{"errcode":28001008}"#,
            r#"{"error_code":"2190008","message":"error"}"#,
            r#"{"err":{"err_code":10008}}"#,
        ] {
            assert_eq!(
                c.body_rejection(body.as_bytes()),
                Some(Rejection::Expired),
                "{body}"
            );
        }
        // Success and other codes in the new places say no.
        for body in [
            r#"{"errcode":0,"errmsg":"ok"}"#,
            r#"{"error":0,"errcode":0,"openid":"o","session_key":"s"}"#,
            r#"{"error_code":"0","data":{"biz_token":"x"}}"#,
            r#"{"errno":2190004}"#,
            r#"{"err":{"err_code":"0"}}"#,
            r#"{"error":"invalid_request"}"#,
            r#"{"err":"2190008"}"#,
            r#"{"data":{"err_code":2190008}}"#,
        ] {
            assert_eq!(c.body_rejection(body.as_bytes()), None, "{body}");
        }
    }

    #[test]
    fn forty_thousand_two_is_an_expiry_only_for_mini_apps() {
        let bad = br#"{"errcode":40002,"errmsg":"bad access_token"}"#;
        assert_eq!(DouyinExpiry::default().body_rejection(bad), None);
        assert_eq!(
            DouyinExpiry::for_family(Family::LiveTools).body_rejection(bad),
            None
        );
        let mini = DouyinExpiry::for_family(Family::MiniApp);
        assert_eq!(mini.family(), Some(Family::MiniApp));
        assert_eq!(mini.body_rejection(bad), Some(Rejection::Invalid));
        assert_eq!(
            mini.body_rejection(br#"{"err_no":28001008,"err_tips":"expired"}"#),
            Some(Rejection::Expired)
        );
    }

    #[test]
    fn the_verdict_tells_an_invalid_token_from_an_expired_one() {
        let c = DouyinExpiry::default();
        let h = json_headers("application/json");
        let verdict = |b: &str| c.classify_rejection(StatusCode::OK, &h, b.as_bytes());
        for code in [2_190_002, 28_001_003, 40_004] {
            let body = format!(r#"{{"data":{{"error_code":{code}}}}}"#);
            assert_eq!(verdict(&body), Some(Rejection::Invalid), "{body}");
        }
        for code in [2_190_008, 10_008, 28_001_008] {
            let body = format!(r#"{{"err_no":{code}}}"#);
            assert_eq!(verdict(&body), Some(Rejection::Expired), "{body}");
        }
        let sub = r#"{"extra":{"error_code":0,"sub_error_code":11002}}"#;
        assert_eq!(verdict(sub), Some(Rejection::Expired));
        assert_eq!(verdict(r#"{"data":{"error_code":0}}"#), None);
        // A classifier that only says yes or no calls every rejection "expired".
        struct YesNo;
        impl ClassifyExpiry for YesNo {
            fn classify_head(&self, _: StatusCode, _: &HeaderMap) -> HeadVerdict {
                HeadVerdict::PeekBody
            }
            fn classify_body(&self, _: StatusCode, _: &HeaderMap, body: &[u8]) -> bool {
                body == b"no"
            }
        }
        assert_eq!(
            YesNo.classify_rejection(StatusCode::OK, &h, b"no"),
            Some(Rejection::Expired)
        );
        assert_eq!(YesNo.classify_rejection(StatusCode::OK, &h, b"{}"), None);
    }

    #[test]
    fn non_expiry_answers() {
        let c = DouyinExpiry::default();
        for body in [
            &br#"{"data":{"error_code":0,"description":""}}"#[..],
            br#"{"data":{"error_code":2190004}}"#,
            br#"{"err_no":28003018}"#,
            br#"{"data":[1,2,{"error_code":2190008}]}"#,
            br#"{"nested":{"data":{"error_code":2190008}}}"#,
            br#"[{"data":{"error_code":2190008}}]"#,
            br#"{"data":{"error_code":2190008"#,
            b"not json",
            b"",
            br#"{"data":{"error_code":1e400}}"#,
        ] {
            assert!(
                !c.body_means_expired(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn escaped_keys_are_read() {
        let c = DouyinExpiry::default();
        assert!(c.body_means_expired(br#"{"d\u0061ta":{"error_\u0063ode":2190008}}"#));
    }

    #[test]
    fn json_detection() {
        assert!(is_json(&json_headers("application/json")));
        assert!(is_json(&json_headers("application/json; charset=utf-8")));
        assert!(is_json(&json_headers("application/problem+json")));
        assert!(is_json(&json_headers("text/JSON")));
        assert!(!is_json(&json_headers("text/plain")));
        assert!(!is_json(&json_headers("json")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn grpc_unauthenticated() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(
            GrpcExpiry.classify_head(StatusCode::OK, &h),
            HeadVerdict::Expired
        );
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(
            GrpcExpiry.classify_head(StatusCode::OK, &h),
            HeadVerdict::NotExpired
        );
    }
}

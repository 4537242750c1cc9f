//! Mini-app and mini-game login (`code2session`): a login code from `tt.login` becomes the
//! user's `openid`, `unionid`, `anonymous_openid` and the `session_key`.
//!
//! This is a typed call, not a cached token: call
//! [`MiniAppCredentials::code2session`](super::MiniAppCredentials::code2session) or
//! [`MiniGameCredentials::code2session`](super::MiniGameCredentials::code2session) with a
//! [`LoginCode`] and get a [`Session`].
//!
//! | family | request | answer |
//! | --- | --- | --- |
//! | mini-app | POST `https://developer.toutiao.com/api/apps/v2/jscode2session`, JSON `appid`, `secret`, `code`, `anonymous_code` | `{"err_no": 0, "err_tips": "success", "data": {"session_key", "openid", "anonymous_openid", "unionid"}}` |
//! | mini-game | GET `https://minigame.zijieapi.com/mgplatform/api/apps/jscode2session?appid&secret&code&anonymous_code` | `{"error": 0, "errcode": 0, "errmsg": "", "message": "", "session_key", "openid", "anonymous_openid", "unionid"}` |
//!
//! The login codes and the `session_key` are secrets: [`LoginCode`] and [`Session`] never show
//! them in `Debug`, and no error repeats them (nor the URL of the mini-game call, which
//! carries the secret in its query, as Douyin asks).

use std::fmt;

use serde::Deserialize;

use super::wire::check_answer;
use crate::error::Error;
use crate::token::Secret;

/// The codes `tt.login` gave the mini-app or mini-game: the login `code` (for a logged-in
/// user), the `anonymous_code` (for an anonymous one), or both. Each works once.
///
/// Its `Debug` never shows the codes.
///
/// ```
/// use douyin_auth::douyin::LoginCode;
///
/// let code = LoginCode::new("code-from-tt-login").with_anonymous_code("anonymous-code");
/// assert!(!format!("{code:?}").contains("code-from"));
/// ```
#[derive(Clone, Default)]
pub struct LoginCode {
    code: Option<Secret>,
    anonymous_code: Option<Secret>,
}

impl LoginCode {
    /// The login `code` of a logged-in user.
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            code: Some(Secret::new(code)),
            anonymous_code: None,
        }
    }

    /// Only an `anonymous_code` (an anonymous user).
    pub fn anonymous(anonymous_code: impl Into<String>) -> Self {
        Self {
            code: None,
            anonymous_code: Some(Secret::new(anonymous_code)),
        }
    }

    /// Adds the `anonymous_code` (sent with the login code, Douyin links the two users).
    #[must_use]
    pub fn with_anonymous_code(mut self, anonymous_code: impl Into<String>) -> Self {
        self.anonymous_code = Some(Secret::new(anonymous_code));
        self
    }

    pub(crate) fn code(&self) -> &str {
        self.code.as_ref().map(Secret::expose).unwrap_or_default()
    }

    pub(crate) fn anonymous_code(&self) -> &str {
        self.anonymous_code
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default()
    }

    /// A typed error when neither code is set (Douyin needs one of them).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.code().is_empty() && self.anonymous_code().is_empty() {
            Err(Error::Protocol(
                "code2session needs a login code or an anonymous code".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for LoginCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginCode")
            .field("code", &self.code)
            .field("anonymous_code", &self.anonymous_code)
            .finish()
    }
}

/// What `code2session` answers: who the user is, and the `session_key`.
///
/// The `session_key` decrypts the user's data sent from the mini-app; it is a secret and
/// never appears in `Debug`.
#[derive(Clone)]
pub struct Session {
    openid: Option<String>,
    unionid: Option<String>,
    anonymous_openid: Option<String>,
    session_key: Option<Secret>,
}

impl Session {
    /// The user's `openid` in this mini-app or mini-game (sent for a login `code`).
    pub fn openid(&self) -> Option<&str> {
        self.openid.as_deref()
    }

    /// The user's `unionid` across the apps of one developer, if Douyin sent one.
    pub fn unionid(&self) -> Option<&str> {
        self.unionid.as_deref()
    }

    /// The anonymous user's id (sent for an `anonymous_code`).
    pub fn anonymous_openid(&self) -> Option<&str> {
        self.anonymous_openid.as_deref()
    }

    /// The session key (sent for a login `code`). A secret: never log it.
    pub fn session_key(&self) -> Option<&str> {
        self.session_key.as_ref().map(Secret::expose)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .field("anonymous_openid", &self.anonymous_openid)
            .field("session_key", &self.session_key)
            .finish()
    }
}

#[derive(Deserialize, Default)]
struct WireSession {
    #[serde(default)]
    openid: Option<serde_json::Value>,
    #[serde(default)]
    unionid: Option<serde_json::Value>,
    #[serde(default)]
    anonymous_openid: Option<serde_json::Value>,
    #[serde(default)]
    session_key: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct WireTop {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(flatten)]
    top: WireSession,
}

fn text(v: Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    }
}

/// Reads a `code2session` answer of either family: the error shapes of
/// [`parse_token_response`](super::parse_token_response), then the fields in `data` (mini-app)
/// or at the top level (mini-game).
pub(crate) fn parse_session(body: &[u8], endpoint: &str) -> Result<Session, Error> {
    check_answer(body)?;
    let wire: WireTop = serde_json::from_slice(body)
        .map_err(|_| Error::Protocol(format!("the answer of {endpoint} is not valid")))?;
    let data = match wire.data {
        Some(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value::<WireSession>(v).unwrap_or_default()
        }
        _ => WireSession::default(),
    };
    let top = wire.top;
    let session = Session {
        openid: text(data.openid).or(text(top.openid)),
        unionid: text(data.unionid).or(text(top.unionid)),
        anonymous_openid: text(data.anonymous_openid).or(text(top.anonymous_openid)),
        session_key: text(data.session_key)
            .or(text(top.session_key))
            .map(Secret::new),
    };
    if session.openid.is_none() && session.anonymous_openid.is_none() {
        return Err(super::wire::missing(endpoint, "openid"));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from the official Node SDK's models (`@open-dy/open_api_sdk` 1.1.0:
    // `V2Jscode2sessionResponse{err_no, err_tips, data{session_key, openid, anonymous_openid,
    // unionid}}`, `AppsJscode2sessionResponse{error, errcode, errmsg, message, session_key,
    // openid, anonymous_openid, unionid}`) and Douyin's code2session docs.
    const MINI_APP: &str = r#"{"err_no":0,"err_tips":"success","data":{"session_key":"SKSECRET==","openid":"o-1","anonymous_openid":"","unionid":"u-1"}}"#;
    const MINI_GAME: &str = r#"{"error":0,"errcode":0,"errmsg":"","message":"","session_key":"SKSECRET==","openid":"o-2","anonymous_openid":"a-2","unionid":"u-2"}"#;

    #[test]
    fn both_shapes() {
        let s = parse_session(MINI_APP.as_bytes(), "/x").unwrap();
        assert_eq!(
            (s.openid(), s.unionid(), s.anonymous_openid()),
            (Some("o-1"), Some("u-1"), None)
        );
        assert_eq!(s.session_key(), Some("SKSECRET=="));
        let s = parse_session(MINI_GAME.as_bytes(), "/x").unwrap();
        assert_eq!(
            (s.openid(), s.unionid(), s.anonymous_openid()),
            (Some("o-2"), Some("u-2"), Some("a-2"))
        );
        assert!(!format!("{s:?}").contains("SKSECRET"), "{s:?}");
    }

    #[test]
    fn errors_in_either_shape() {
        for (body, code) in [
            (
                r#"{"err_no":40018,"err_tips":"bad code","data":null}"#,
                40_018,
            ),
            (
                r#"{"error":1,"errcode":40018,"errmsg":"bad code","message":"bad code"}"#,
                40_018,
            ),
        ] {
            let e = parse_session(body.as_bytes(), "/x").unwrap_err();
            assert_eq!(e.douyin().map(|d| d.code()), Some(code), "{body}");
        }
        let e =
            parse_session(br#"{"err_no":0,"data":{"session_key":"SKSECRET"}}"#, "/x").unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("SKSECRET"));
    }

    #[test]
    fn login_codes_are_redacted_and_one_is_needed() {
        let c = LoginCode::new("CODESECRET").with_anonymous_code("ANONSECRET");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(LoginCode::default().check().is_err());
        assert!(LoginCode::anonymous("a").check().is_ok());
    }
}

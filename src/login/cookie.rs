//! The state cookie: the login's CSRF state bound to the browser, signed with HMAC-SHA256.
//!
//! Value: `<state>.<expires>.<mac>`, where `state` is the 64 hex digits sent to Douyin,
//! `expires` the Unix second after which the cookie is refused, and `mac` the hex
//! HMAC-SHA256, under the [`LoginKey`], of a domain-separated message holding both. The
//! signature makes the cookie unforgeable and its expiry unalterable; the browser's copy ends
//! by `Max-Age` as well.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::LoginError;
use super::key::LoginKey;

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "douyin_login_state";

const DOMAIN: &[u8] = b"douyin-auth/login-state/v1\n";
const MAC_HEX: usize = 64;

/// A state cookie that checked out: its state and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) state: String,
    pub(crate) expires: u64,
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(key: &LoginKey, state: &str, expires: u64) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length: this never fails, but no panic either way.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).ok()?;
    mac.update(DOMAIN);
    mac.update(state.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    Some(mac)
}

/// The cookie value for `state`, valid until the Unix second `expires`.
pub(crate) fn seal(key: &LoginKey, state: &str, expires: u64) -> Option<String> {
    let tag = mac(key, state, expires)?.finalize().into_bytes();
    let mut value = format!("{state}.{expires}.");
    for b in tag {
        value.push(char::from(HEX[usize::from(b >> 4)]));
        value.push(char::from(HEX[usize::from(b & 15)]));
    }
    Some(value)
}

/// Checks one cookie value against the callback's `state` parameter at `now`: the signature
/// first (a forged or altered cookie is [`LoginError::InvalidState`]), then that the parameter
/// is the cookie's state (in constant time), then the expiry.
pub(crate) fn open(
    key: &LoginKey,
    value: &str,
    state_param: &str,
    now: u64,
) -> Result<Opened, LoginError> {
    let mut parts = value.split('.');
    let (Some(state), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LoginError::InvalidState);
    };
    let tag = decode_hex(tag).ok_or(LoginError::InvalidState)?;
    let expires_n = match expires.parse::<u64>() {
        // Only the canonical spelling was signed: "007" or "+7" are not.
        Ok(n) if n.to_string() == expires => n,
        _ => return Err(LoginError::InvalidState),
    };
    let mac = mac(key, state, expires_n).ok_or(LoginError::InvalidState)?;
    mac.verify_slice(&tag)
        .map_err(|_| LoginError::InvalidState)?;
    if !bool::from(state.as_bytes().ct_eq(state_param.as_bytes())) {
        return Err(LoginError::InvalidState);
    }
    if now >= expires_n {
        return Err(LoginError::ExpiredState);
    }
    Ok(Opened {
        state: state.to_owned(),
        expires: expires_n,
    })
}

/// Every value of the state cookie in the request's `Cookie` headers (a browser may send two
/// when two paths match).
pub(crate) fn values(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == COOKIE_NAME).then(|| value.trim().trim_matches('"'))
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// The `Set-Cookie` value that stores `value` for `max_age` seconds on `path`.
pub(crate) fn set(value: &str, max_age: u64, path: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{COOKIE_NAME}={value}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

/// The `Set-Cookie` value that deletes the cookie from `path`.
pub(crate) fn clear(path: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::try_from(format!(
        "{COOKIE_NAME}=; Max-Age=0; Path={path}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != MAC_HEX {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key() -> LoginKey {
        LoginKey::from_bytes(&[42u8; 32]).unwrap()
    }

    #[test]
    fn a_sealed_cookie_opens_with_its_state_before_it_expires() {
        let value = seal(&key(), STATE, 1_000).unwrap();
        assert!(value.starts_with(&format!("{STATE}.1000.")), "{value}");
        let opened = open(&key(), &value, STATE, 999).unwrap();
        assert_eq!(
            opened,
            Opened {
                state: STATE.into(),
                expires: 1_000
            }
        );
    }

    #[test]
    fn an_expired_cookie_is_refused() {
        let value = seal(&key(), STATE, 1_000).unwrap();
        assert!(matches!(
            open(&key(), &value, STATE, 1_000),
            Err(LoginError::ExpiredState)
        ));
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let value = seal(&key(), STATE, 1_000).unwrap();
        // A later expiry, signature kept.
        let later = value.replacen(".1000.", ".9999999999.", 1);
        // Another state, signature kept, and the parameter matching the forged state.
        let other = format!("f{}", &value[1..]);
        // A flipped bit of the signature.
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        // The same cookie signed with another key.
        let other_key = seal(&LoginKey::from_bytes(&[7u8; 32]).unwrap(), STATE, 1_000).unwrap();
        // A non-canonical expiry that parses to the signed one.
        let padded = value.replacen(".1000.", ".01000.", 1);
        for (what, cookie, param) in [
            ("later expiry", later.as_str(), STATE),
            ("other state", other.as_str(), &other[..64]),
            ("flipped signature", flipped.as_str(), STATE),
            ("other key", other_key.as_str(), STATE),
            ("padded expiry", padded.as_str(), STATE),
            ("no signature", &value[..value.len() - 65], STATE),
            ("garbage", "not-a-cookie", STATE),
            ("empty", "", STATE),
            ("extra part", &format!("{value}.x"), STATE),
            (
                "upper-case signature",
                &value.to_uppercase(),
                &STATE.to_uppercase(),
            ),
        ] {
            let got = open(&key(), cookie, param, 10);
            assert!(
                matches!(got, Err(LoginError::InvalidState)),
                "{what}: {got:?}"
            );
        }
    }

    #[test]
    fn a_state_parameter_other_than_the_cookies_is_refused() {
        let value = seal(&key(), STATE, 1_000).unwrap();
        for param in ["", &STATE[..63], "attacker-chosen", &format!("{STATE}0")] {
            assert!(matches!(
                open(&key(), &value, param, 10),
                Err(LoginError::InvalidState)
            ));
        }
    }

    #[test]
    fn values_finds_every_state_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("sid=1; douyin_login_state=a.1.b"),
        );
        headers.append(
            COOKIE,
            HeaderValue::from_static("douyin_login_state=\"c\"; x=2"),
        );
        headers.append(
            COOKIE,
            HeaderValue::from_static("douyin_login_state_other=d"),
        );
        assert_eq!(values(&headers), ["a.1.b", "c"]);
    }

    #[test]
    fn set_cookie_attributes() {
        let v = set("V", 600, "/auth/callback", true).unwrap();
        assert_eq!(
            v,
            "douyin_login_state=V; Max-Age=600; Path=/auth/callback; HttpOnly; SameSite=Lax; Secure"
        );
        let v = clear("/cb", false).unwrap();
        assert_eq!(
            v,
            "douyin_login_state=; Max-Age=0; Path=/cb; HttpOnly; SameSite=Lax"
        );
    }
}

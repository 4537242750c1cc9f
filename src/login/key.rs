//! [`LoginKey`]: the key that signs the login's state cookie.

use std::fmt;
use std::sync::Arc;

use super::error::LoginConfigError;
use crate::error::Error;

/// The fewest bytes a [`LoginKey`] may have (256 bits, the size of an HMAC-SHA256 output).
pub const MIN_KEY_BYTES: usize = 32;

/// The key that signs the state cookie of [`DouyinLogin`](super::DouyinLogin) with
/// HMAC-SHA256, so a browser (or an attacker) cannot forge or alter it.
///
/// [`generate`](Self::generate) makes a random one, which is enough for one process. A fleet of
/// instances behind a load balancer must share one key (the login may start on one instance
/// and come back to another): load it from your secret store with
/// [`from_bytes`](Self::from_bytes). Rotating the key only fails the logins in flight.
///
/// Its `Debug` never shows the key. Clones share the bytes.
#[derive(Clone)]
pub struct LoginKey(Arc<[u8]>);

impl LoginKey {
    /// A new random key of 32 bytes from the operating system's CSPRNG.
    ///
    /// Fails with [`Error::Random`] only if the operating system's random source fails.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self(Arc::from(&bytes[..])))
    }

    /// A key from secret bytes of your own, at least [`MIN_KEY_BYTES`] long.
    ///
    /// ```
    /// use douyin_auth::login::LoginKey;
    ///
    /// assert!(LoginKey::from_bytes(&[7u8; 32]).is_ok());
    /// assert!(LoginKey::from_bytes(b"too short").is_err());
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoginConfigError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(LoginConfigError::KeyTooShort { len: bytes.len() });
        }
        Ok(Self(Arc::from(bytes)))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ_and_debug_hides_them() {
        let a = LoginKey::generate().unwrap();
        let b = LoginKey::generate().unwrap();
        assert_eq!(a.bytes().len(), MIN_KEY_BYTES);
        assert_ne!(a.bytes(), b.bytes());
        let key = LoginKey::from_bytes(b"0123456789abcdef0123456789ABCDEF").unwrap();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("0123456789"), "{dbg}");
    }

    #[test]
    fn short_keys_are_refused() {
        let err = LoginKey::from_bytes(&[1u8; 31]).unwrap_err();
        assert_eq!(err, LoginConfigError::KeyTooShort { len: 31 });
    }
}

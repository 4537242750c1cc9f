//! [`EncryptedStore`]: seals every secret of a token (AES-256-GCM) over any [`TokenStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{Lease, TokenStore};
use crate::{BoxError, Token};

/// The prefix of a sealed secret, before the key id.
const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const MAX_KID_LEN: usize = 32;

/// Why an [`EncryptedStore`] cannot be built, or a stored secret cannot be opened.
///
/// `get` returns these inside its [`BoxError`]; downcast to tell them apart. None of them
/// holds a key or a secret; the key id is not secret and is named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// An AES-256 key is 32 bytes.
    #[error("the key {kid:?} is {len} bytes long; AES-256-GCM keys are 32 bytes")]
    KeyLength {
        /// The key id.
        kid: String,
        /// The length given.
        len: usize,
    },
    /// A key id is 1 to 32 ASCII letters, digits, `-`, `_` or `.` (it is stored beside every
    /// secret).
    #[error("invalid key id {0:?}: use 1 to 32 ASCII letters, digits, '-', '_' or '.'")]
    InvalidKeyId(String),
    /// Two keys with the same id.
    #[error("the key id {0:?} is given twice")]
    DuplicateKeyId(String),
    /// A stored secret was sealed with a key this store does not have.
    #[error("a stored secret is sealed with the key {0:?}, which this store does not have")]
    UnknownKey(String),
    /// A stored secret failed authentication: tampered with, or moved from another key.
    #[error("a stored secret failed authentication (tampered with, or moved from another entry)")]
    Tampered,
    /// A stored secret is not sealed (written without the encryption, or damaged).
    #[error("a stored secret is not sealed by an EncryptedStore")]
    NotSealed,
    /// The system random number generator failed (no nonce).
    #[error("the system random number generator failed")]
    Random,
}

struct Keys {
    current: (String, Aes256Gcm),
    previous: Vec<(String, Aes256Gcm)>,
}

impl Keys {
    fn find(&self, kid: &str) -> Option<&Aes256Gcm> {
        std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|(id, _)| id == kid)
            .map(|(_, cipher)| cipher)
    }
}

fn cipher(kid: &str, key: &[u8]) -> Result<Aes256Gcm, EncryptionError> {
    let valid = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(EncryptionError::InvalidKeyId(kid.to_owned()));
    }
    Aes256Gcm::new_from_slice(key).map_err(|_| EncryptionError::KeyLength {
        kid: kid.to_owned(),
        len: key.len(),
    })
}

/// The associated data of a secret: the format, the key id, which secret, and the store key,
/// so that a sealed secret moved to another entry (or field) does not open.
fn aad(kid: &str, field: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + kid.len() + key.len());
    for part in ["douyin-auth", PREFIX, kid, field, key] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad
}

/// A [`TokenStore`] that seals every secret of a token before the inner store sees it, and
/// opens it when read: AES-256-GCM (RustCrypto's `aes-gcm`), with a key id stored beside the
/// ciphertext so that keys can rotate.
///
/// The access token and the refresh token of every entry are stored as
///
/// ```text
/// enc:v1:<key id>:<base64url, no padding, of the 12-byte random nonce, then the ciphertext and its 16-byte tag>
/// ```
///
/// with the key id, which secret (`access` or `refresh`) and the entry's key as associated data:
/// a sealed secret copied to another entry does not open. The `open_id`, the scopes and the
/// lifetimes are not secret and stay as the inner store keeps them, so the inner store's
/// lifetimes, leases and keys work unchanged; any [`TokenStore`] can be wrapped.
///
/// Reading an entry sealed with a key this store does not have, tampered with, or not sealed at
/// all is an error from [`get`](TokenStore::get) ([`EncryptionError`] inside the
/// [`BoxError`]): such an entry is never handed out as a token, nor read as "no token".
///
/// Keys rotate: build the store with the new key and keep the old one with
/// [`with_previous_key`](Self::with_previous_key). Entries are read with whichever key sealed
/// them, and every write seals with the new key, so old entries move to it as they are
/// refreshed; once none is left (user tokens: after the refresh tokens' 30 days), drop the old
/// key.
///
/// Its `Debug` shows the key ids, never a key.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::store::{EncryptedStore, MemoryStore, TokenStore};
/// use douyin_auth::Token;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), douyin_auth::BoxError> {
/// let raw = MemoryStore::new();
/// let key = [7u8; 32]; // from your secret manager, never from the source code
/// let store = EncryptedStore::new(raw.clone(), "k1", &key)?;
/// store.put("user:o1", &Token::new("act.secret", Duration::from_secs(60))).await?;
///
/// let sealed = raw.get("user:o1").await?.unwrap();
/// assert!(sealed.secret().starts_with("enc:v1:k1:"));
/// assert_eq!(store.get("user:o1").await?.unwrap().secret(), "act.secret");
///
/// // Rotation: the new key writes, the old one still reads.
/// let rotated = EncryptedStore::new(raw.clone(), "k2", &[9u8; 32])?
///     .with_previous_key("k1", &key)?;
/// assert_eq!(rotated.get("user:o1").await?.unwrap().secret(), "act.secret");
/// # Ok(())
/// # }
/// ```
pub struct EncryptedStore<S> {
    inner: S,
    keys: Arc<Keys>,
}

impl<S: Clone> Clone for EncryptedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&str> = self
            .keys
            .previous
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .field("key", &self.keys.current.0)
            .field("previous_keys", &previous)
            .finish()
    }
}

impl<S> EncryptedStore<S> {
    /// Wraps `inner`, sealing with `key` (32 bytes) under the id `kid` (1 to 32 ASCII letters,
    /// digits, `-`, `_` or `.`; it is stored beside every secret, so name keys, e.g. `k2` or
    /// `2026-06`).
    pub fn new(inner: S, kid: &str, key: &[u8]) -> Result<Self, EncryptionError> {
        let current = (kid.to_owned(), cipher(kid, key)?);
        Ok(Self {
            inner,
            keys: Arc::new(Keys {
                current,
                previous: Vec::new(),
            }),
        })
    }

    /// Also opens entries sealed with `key` under the id `kid` (an older key); writes keep
    /// using the current key.
    pub fn with_previous_key(self, kid: &str, key: &[u8]) -> Result<Self, EncryptionError> {
        let cipher = cipher(kid, key)?;
        if self.keys.find(kid).is_some() {
            return Err(EncryptionError::DuplicateKeyId(kid.to_owned()));
        }
        let keys = Arc::try_unwrap(self.keys).unwrap_or_else(|shared| Keys {
            current: shared.current.clone(),
            previous: shared.previous.clone(),
        });
        let mut previous = keys.previous;
        previous.push((kid.to_owned(), cipher));
        Ok(Self {
            inner: self.inner,
            keys: Arc::new(Keys {
                current: keys.current,
                previous,
            }),
        })
    }

    /// The id of the key new entries are sealed with.
    pub fn key_id(&self) -> &str {
        &self.keys.current.0
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn seal_secret(&self, field: &str, key: &str, plain: &str) -> Result<String, EncryptionError> {
        let (kid, cipher) = &self.keys.current;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| EncryptionError::Random)?;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad(kid, field, key),
                },
            )
            // Encryption fails only for messages of gigabytes.
            .map_err(|_| EncryptionError::Tampered)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{kid}:{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    fn open_secret(&self, field: &str, key: &str, stored: &str) -> Result<String, EncryptionError> {
        let rest = stored
            .strip_prefix(PREFIX)
            .ok_or(EncryptionError::NotSealed)?;
        let (kid, body) = rest.split_once(':').ok_or(EncryptionError::NotSealed)?;
        let cipher = self
            .keys
            .find(kid)
            .ok_or_else(|| EncryptionError::UnknownKey(kid.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| EncryptionError::Tampered)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(EncryptionError::Tampered);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(kid, field, key),
                },
            )
            .map_err(|_| EncryptionError::Tampered)?;
        String::from_utf8(plain).map_err(|_| EncryptionError::Tampered)
    }

    /// `token` with its secrets replaced by `f(field, secret)`, everything else kept.
    fn map_secrets(
        token: &Token,
        mut f: impl FnMut(&str, &str) -> Result<String, EncryptionError>,
    ) -> Result<Token, EncryptionError> {
        let mut out = Token::new(f("access", token.secret())?, token.expires_in())
            .with_obtained_at(token.obtained_at())
            .with_scopes(token.scopes().iter().cloned());
        if let Some(open_id) = token.open_id() {
            out = out.with_open_id(open_id);
        }
        if let Some(refresh) = token.refresh_token() {
            out = out.with_refresh_token(
                f("refresh", refresh)?,
                token.refresh_expires_in().unwrap_or(Duration::ZERO),
            );
        }
        Ok(out)
    }

    fn seal(&self, key: &str, token: &Token) -> Result<Token, EncryptionError> {
        Self::map_secrets(token, |field, plain| self.seal_secret(field, key, plain))
    }

    fn open(&self, key: &str, token: &Token) -> Result<Token, EncryptionError> {
        Self::map_secrets(token, |field, stored| self.open_secret(field, key, stored))
    }
}

impl<S: TokenStore> TokenStore for EncryptedStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
        match self.inner.get(key).await? {
            Some(sealed) => Ok(Some(self.open(key, &sealed)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
        let sealed = self.seal(key, token)?;
        self.inner.put(key, &sealed).await
    }

    async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
        self.inner.try_lease(key, ttl).await
    }

    async fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> Result<bool, BoxError> {
        let sealed = self.seal(key, token)?;
        self.inner.put_if_leased(key, lease, &sealed).await
    }

    async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
        self.inner.extend(key, lease, ttl).await
    }

    async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
        self.inner.release(key, lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];

    fn user() -> Token {
        Token::new("act.s3cret", Duration::from_secs(100))
            .with_open_id("o1")
            .with_refresh_token("rft.s3cret", Duration::from_secs(1000))
            .with_scopes(["user_info"])
    }

    fn err_of(e: BoxError) -> EncryptionError {
        e.downcast_ref::<EncryptionError>()
            .cloned()
            .unwrap_or_else(|| panic!("not an EncryptionError: {e}"))
    }

    #[tokio::test]
    async fn secrets_are_sealed_and_open_with_their_lifetimes() {
        let raw = MemoryStore::new();
        let store = EncryptedStore::new(raw.clone(), "k1", &K1).unwrap();
        store.put("user:o1", &user()).await.unwrap();
        let sealed = raw.get("user:o1").await.unwrap().unwrap();
        assert!(
            sealed.secret().starts_with("enc:v1:k1:"),
            "{}",
            sealed.secret()
        );
        assert!(!sealed.secret().contains("s3cret"));
        let sealed_refresh = sealed.refresh_token().unwrap();
        assert!(sealed_refresh.starts_with("enc:v1:k1:"));
        assert!(!sealed_refresh.contains("s3cret"));
        assert_eq!(sealed.open_id(), Some("o1"));
        // Two writes of one secret differ (random nonces).
        store.put("user:o2", &user()).await.unwrap();
        let other = raw.get("user:o2").await.unwrap().unwrap();
        assert_ne!(other.secret(), sealed.secret());

        let back = store.get("user:o1").await.unwrap().unwrap();
        assert_eq!(back.secret(), "act.s3cret");
        assert_eq!(back.refresh_token(), Some("rft.s3cret"));
        assert_eq!(back.open_id(), Some("o1"));
        assert_eq!(back.scopes(), ["user_info"]);
        assert!(back.remaining() > Duration::from_secs(98));
        assert!(back.refresh_remaining().unwrap() > Duration::from_secs(998));
        assert!(store.get("user:none").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_keys_tampering_moved_and_plain_entries_are_errors() {
        let raw = MemoryStore::new();
        let store = EncryptedStore::new(raw.clone(), "k1", &K1).unwrap();
        store.put("user:o1", &user()).await.unwrap();
        let sealed = raw.get("user:o1").await.unwrap().unwrap();

        // Another key only.
        let stranger = EncryptedStore::new(raw.clone(), "k2", &K2).unwrap();
        let e = err_of(stranger.get("user:o1").await.unwrap_err());
        assert_eq!(e, EncryptionError::UnknownKey("k1".into()));
        // The same id with another key: authentication fails.
        let wrong = EncryptedStore::new(raw.clone(), "k1", &K2).unwrap();
        assert_eq!(
            err_of(wrong.get("user:o1").await.unwrap_err()),
            EncryptionError::Tampered
        );

        // A flipped character in the ciphertext.
        let s = sealed.secret();
        let last = s.chars().last().unwrap();
        let flipped = format!(
            "{}{}",
            &s[..s.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        );
        let tampered = Token::new(flipped, Duration::from_secs(100));
        raw.put("user:t", &tampered).await.unwrap();
        assert_eq!(
            err_of(store.get("user:t").await.unwrap_err()),
            EncryptionError::Tampered
        );
        // A sealed secret copied to another entry.
        raw.put("user:moved", &sealed).await.unwrap();
        assert_eq!(
            err_of(store.get("user:moved").await.unwrap_err()),
            EncryptionError::Tampered
        );
        // Truncated, and not sealed at all.
        raw.put(
            "user:short",
            &Token::new("enc:v1:k1:AAAA", Duration::from_secs(9)),
        )
        .await
        .unwrap();
        assert_eq!(
            err_of(store.get("user:short").await.unwrap_err()),
            EncryptionError::Tampered
        );
        raw.put(
            "user:plain",
            &Token::new("act.plain", Duration::from_secs(9)),
        )
        .await
        .unwrap();
        let e = store.get("user:plain").await.unwrap_err();
        assert_eq!(err_of(e), EncryptionError::NotSealed);
        // A sealed access token with a plain refresh token.
        let half = Token::new(sealed.secret(), Duration::from_secs(9))
            .with_refresh_token("rft.plain", Duration::from_secs(99));
        raw.put("user:o1", &half).await.unwrap();
        let e = store.get("user:o1").await.unwrap_err();
        assert!(!e.to_string().contains("rft.plain"));
        assert_eq!(err_of(e), EncryptionError::NotSealed);
    }

    #[tokio::test]
    async fn rotation_reads_old_entries_and_writes_with_the_new_key() {
        let raw = MemoryStore::new();
        let old = EncryptedStore::new(raw.clone(), "k1", &K1).unwrap();
        old.put("user:o1", &user()).await.unwrap();
        let new = EncryptedStore::new(raw.clone(), "k2", &K2)
            .unwrap()
            .with_previous_key("k1", &K1)
            .unwrap();
        assert_eq!(new.key_id(), "k2");
        assert_eq!(
            new.get("user:o1").await.unwrap().unwrap().secret(),
            "act.s3cret"
        );
        new.put("user:o1", &user()).await.unwrap();
        let sealed = raw.get("user:o1").await.unwrap().unwrap();
        assert!(sealed.secret().starts_with("enc:v1:k2:"));
        assert!(sealed.refresh_token().unwrap().starts_with("enc:v1:k2:"));
        assert_eq!(
            err_of(old.get("user:o1").await.unwrap_err()),
            EncryptionError::UnknownKey("k2".into())
        );
    }

    #[test]
    fn keys_and_ids_are_checked_and_never_shown() {
        let raw = MemoryStore::new();
        assert_eq!(
            EncryptedStore::new(raw.clone(), "k1", &[0; 16]).unwrap_err(),
            EncryptionError::KeyLength {
                kid: "k1".into(),
                len: 16
            }
        );
        assert!(matches!(
            EncryptedStore::new(raw.clone(), "k1", &[0; 33]),
            Err(EncryptionError::KeyLength { len: 33, .. })
        ));
        for kid in ["", "a:b", "with space", &"x".repeat(33)] {
            assert_eq!(
                EncryptedStore::new(raw.clone(), kid, &K1).unwrap_err(),
                EncryptionError::InvalidKeyId(kid.into())
            );
        }
        let store = EncryptedStore::new(raw.clone(), "k1", &K1).unwrap();
        assert_eq!(
            store.with_previous_key("k1", &K2).unwrap_err(),
            EncryptionError::DuplicateKeyId("k1".into())
        );
        let store = EncryptedStore::new(raw, "k2", &[0xab; 32])
            .unwrap()
            .with_previous_key("k1", &[0xcd; 32])
            .unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("k2") && debug.contains("k1"), "{debug}");
        assert!(
            !debug.contains("171") && !debug.contains("ab, ab"),
            "{debug}"
        );
    }
}

//! The two signatures Douyin puts on its calls, as plain functions.
//!
//! Both compare in constant time over the raw bytes: the expected digest is computed from the
//! secret and the bytes as received, the header's hex is decoded (either case), and the two
//! digests are compared with [`subtle`]. Nothing here allocates a copy of the body.

use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The webhook signature: the lowercase hex SHA-1 of `secret || body`.
///
/// This is the value Douyin sends in `X-Douyin-Signature` (the doc's Go demo writes the
/// secret, then the body, into one SHA-1). Useful to sign deliveries in your own tests.
///
/// ```
/// # #[cfg(feature = "webhook")] {
/// use douyin_auth::webhook::webhook_signature;
///
/// // python3 -c 'import hashlib; print(hashlib.sha1(b"secret" + b"{}").hexdigest())'
/// assert_eq!(webhook_signature("secret", b"{}"), "313497c3712f3817a8a95eb3763b52f7c09690ba");
/// # }
/// ```
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    to_hex(&webhook_digest(secret, body))
}

/// Whether `signature` (the `X-Douyin-Signature` header's bytes) is the webhook signature of
/// `body` under `secret`, compared in constant time.
///
/// The hex is accepted in either case; anything that is not 40 hex digits is refused.
pub fn verify_webhook_signature(secret: &str, body: &[u8], signature: &[u8]) -> bool {
    let expected = webhook_digest(secret, body);
    match from_hex::<20>(signature) {
        Some(given) => bool::from(given.ct_eq(&expected)),
        None => false,
    }
}

/// The life-service SPI signature (`x-life-sign`): the lowercase hex SHA-256 of
///
/// ```text
/// secret&k1=v1&k2=v2…&http_body=<raw body>
/// ```
///
/// where the `k=v` pairs are the URL query parameters except `sign`, percent-decoded, sorted by
/// key (then by value, for a repeated key), and `&http_body=<raw body>` is added when the body
/// is not empty. `query` is the URL's query string as received (percent-encoded, without the
/// `?`).
///
/// ```
/// # #[cfg(feature = "webhook")] {
/// use douyin_auth::webhook::spi_signature;
///
/// // python3 -c 'import hashlib; print(hashlib.sha256(
/// //     b"yyyyyy&client_key=xxxxxx&timestamp=1624293280123&http_body=zzzzzz").hexdigest())'
/// assert_eq!(
///     spi_signature("yyyyyy", "timestamp=1624293280123&client_key=xxxxxx&sign=old", b"zzzzzz"),
///     "1cb07147475e76d0a8b9f6c7e201c7d8cde1617fb9f5d7e576bec5268fa887ae",
/// );
/// # }
/// ```
pub fn spi_signature(secret: &str, query: &str, body: &[u8]) -> String {
    to_hex(&spi_digest(secret, query, body, !body.is_empty()))
}

/// Whether `signature` (the `x-life-sign` header's bytes) is the SPI signature of this call,
/// compared in constant time.
///
/// `is_post` matters only for an empty body: Douyin's rule adds `&http_body=` on POST, the
/// reference verifiers add it only for a non-empty body, so an empty POST accepts both forms.
pub fn verify_spi_signature(
    secret: &str,
    query: &str,
    is_post: bool,
    body: &[u8],
    signature: &[u8],
) -> bool {
    let Some(given) = from_hex::<32>(signature) else {
        return false;
    };
    let mut ok = given.ct_eq(&spi_digest(secret, query, body, !body.is_empty()));
    if is_post && body.is_empty() {
        ok |= given.ct_eq(&spi_digest(secret, query, body, true));
    }
    bool::from(ok)
}

fn webhook_digest(secret: &str, body: &[u8]) -> [u8; 20] {
    let mut hash = Sha1::new();
    hash.update(secret.as_bytes());
    hash.update(body);
    hash.finalize().into()
}

fn spi_digest(secret: &str, query: &str, body: &[u8], with_body: bool) -> [u8; 32] {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query_pairs(query)
        .filter(|(k, _)| k.as_slice() != b"sign")
        .collect();
    pairs.sort();
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    for (k, v) in &pairs {
        hash.update(b"&");
        hash.update(k);
        hash.update(b"=");
        hash.update(v);
    }
    if with_body {
        hash.update(b"&http_body=");
        hash.update(body);
    }
    hash.finalize().into()
}

/// The decoded `(key, value)` pairs of a query string, as Go's `url.ParseQuery` reads them:
/// pairs split on `&`, empty pairs skipped, key and value split on the first `=`, `+` is a
/// space, `%XX` is a byte (a malformed escape is kept as written).
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k.as_bytes()), percent_decode(v.as_bytes()))
    })
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_value);
                let lo = input.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn from_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below was computed independently with python3's hashlib, with the
    // command in the comment above it.

    #[test]
    fn webhook_signature_matches_hashlib() {
        // python3 -c 'import hashlib; print(hashlib.sha1(b"abc" +
        //   b"{\"event\":\"verify_webhook\",\"client_key\":\"abc\",\"content\":{\"challenge\":12345}}").hexdigest())'
        let body =
            br#"{"event":"verify_webhook","client_key":"abc","content":{"challenge":12345}}"#;
        assert_eq!(
            webhook_signature("abc", body),
            "5cff3408bd481e00a02913b7f72de8d8283d0fb1"
        );
        // python3 -c 'import hashlib; print(hashlib.sha1(b"s3cr3t" + b"line1\nline2\n").hexdigest())'
        assert_eq!(
            webhook_signature("s3cr3t", b"line1\nline2\n"),
            "5856bfdf66b434a342b5632590cf1930097a6236"
        );
    }

    #[test]
    fn webhook_verification_takes_either_case_and_refuses_other_lengths() {
        let sig = webhook_signature("k", b"body");
        assert!(verify_webhook_signature("k", b"body", sig.as_bytes()));
        assert!(verify_webhook_signature(
            "k",
            b"body",
            sig.to_ascii_uppercase().as_bytes()
        ));
        assert!(!verify_webhook_signature("k", b"body!", sig.as_bytes()));
        assert!(!verify_webhook_signature("K", b"body", sig.as_bytes()));
        assert!(!verify_webhook_signature(
            "k",
            b"body",
            &sig.as_bytes()[..39]
        ));
        assert!(!verify_webhook_signature(
            "k",
            b"body",
            format!("{sig}0").as_bytes()
        ));
        assert!(!verify_webhook_signature("k", b"body", b""));
    }

    #[test]
    fn spi_signature_matches_the_docs_example_layout() {
        // The doc's example string: yyyyyy&client_key=xxxxxx&timestamp=1624293280123&http_body=zzzzzz
        // python3 -c 'import hashlib; print(hashlib.sha256(
        //   b"yyyyyy&client_key=xxxxxx&timestamp=1624293280123&http_body=zzzzzz").hexdigest())'
        let expected = "1cb07147475e76d0a8b9f6c7e201c7d8cde1617fb9f5d7e576bec5268fa887ae";
        let query = "timestamp=1624293280123&sign=ignored&client_key=xxxxxx";
        assert_eq!(spi_signature("yyyyyy", query, b"zzzzzz"), expected);
        assert!(verify_spi_signature(
            "yyyyyy",
            query,
            true,
            b"zzzzzz",
            expected.as_bytes()
        ));
    }

    #[test]
    fn spi_signature_decodes_and_sorts_repeated_keys() {
        // python3 -c 'import hashlib; print(hashlib.sha256(
        //   b"sec&a=x y&b=1&b=2&c=\xe4\xb8\xad").hexdigest())'
        let expected = "40e0c387299451583c174b0fc0c0974053e17964d4b0b4a61b6dffe722b4df8a";
        assert_eq!(
            spi_signature("sec", "c=%E4%B8%AD&b=2&a=x+y&b=1", b""),
            expected
        );
    }

    #[test]
    fn spi_empty_post_accepts_both_forms() {
        // python3 -c 'import hashlib; print(hashlib.sha256(b"sec&timestamp=1").hexdigest())'
        let without = "586f55662699bec1a9e2e9508af501877dbf6cec2a41ff8764302a571e583930";
        // python3 -c 'import hashlib; print(hashlib.sha256(b"sec&timestamp=1&http_body=").hexdigest())'
        let with = "9533829ed3a59d28a6d4f99badd2cb96c1eda38c916f937ec463bf0e6b7ea36c";
        assert_eq!(spi_signature("sec", "timestamp=1", b""), without);
        assert!(verify_spi_signature(
            "sec",
            "timestamp=1",
            true,
            b"",
            without.as_bytes()
        ));
        assert!(verify_spi_signature(
            "sec",
            "timestamp=1",
            true,
            b"",
            with.as_bytes()
        ));
        assert!(!verify_spi_signature(
            "sec",
            "timestamp=1",
            false,
            b"",
            with.as_bytes()
        ));
    }

    #[test]
    fn query_pairs_read_like_go() {
        let pairs: Vec<_> = query_pairs("a=1&&b&c=%zz&d=%41=").collect();
        assert_eq!(
            pairs,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"".to_vec()),
                (b"c".to_vec(), b"%zz".to_vec()),
                (b"d".to_vec(), b"A=".to_vec()),
            ]
        );
    }
}

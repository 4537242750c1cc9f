//! Random tokens and Douyin-style log ids.

/// A fresh random token with `prefix` (`clt.`, `act.`, `rft.` or `code.`).
pub(crate) fn random_token(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 40);
    s.push_str(prefix);
    s.extend(std::iter::repeat_with(fastrand::alphanumeric).take(40));
    s
}

/// A Douyin-looking log id: 34 upper-case hex digits.
pub(crate) fn log_id() -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    std::iter::repeat_with(|| char::from(HEX[fastrand::usize(..16)]))
        .take(34)
        .collect()
}

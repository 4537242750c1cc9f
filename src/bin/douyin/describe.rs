//! Error text of the `douyin` command, shared with `examples/douyin_api.rs`.

/// What failed and why, each said once: the error's message, then its root cause if the
/// message does not say it already (the crate's errors do; an HTTP client's error may not).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut root = e;
    // Bounded: a chain of sources may, in theory, loop.
    for _ in 0..32 {
        match root.source() {
            Some(next) => root = next,
            None => break,
        }
    }
    let cause = root.to_string();
    if !out.contains(&cause) {
        out.push_str(": ");
        out.push_str(&cause);
    }
    out
}

//! The `--base-url` check of the `douyin` command, shared with `examples/douyin_api.rs`: a
//! usage error before any call, where the token sources would refuse the URL only when they
//! fetch.

/// `https://`, or plain `http://` to a loopback host (a mock); the message names the flag.
pub fn check(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("--base-url {url:?} is not a URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("--base-url {url:?} has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "--base-url {url:?}: plain http:// is accepted for loopback hosts only"
        )),
        _ => Err(format!("--base-url {url:?} must start with https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

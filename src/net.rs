//! Host checks shared by the layer and the token sources.

use std::net::IpAddr;

/// Whether `host` (a name, an IPv4 address or a bracketed IPv6 address) is a loopback host.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

//! Which requests may carry a token: the allow-list of hosts and schemes.

use http::uri::Scheme;
use http::Uri;

use crate::error::Error;
use crate::net::is_loopback;

/// The hosts a token is sent to by default. Loopback hosts are always allowed (local proxies,
/// the mock server).
///
/// | host | what lives there |
/// | --- | --- |
/// | `open.douyin.com` | Douyin's OpenAPI: OAuth, user, video, data, life-service and business-token APIs |
/// | `open.snssdk.com` | the same OAuth API for Toutiao |
/// | `open-api.ixigua.com` | the same OAuth API for Xigua |
/// | `developer.toutiao.com` | mini-app server APIs (`/api/apps/…`, their token and login), `/auth/entity/…` |
/// | `minigame.zijieapi.com` | mini-game server APIs (`/mgplatform/api/apps/…`, their token, stable token and login) |
/// | `webcast.bytedance.com` | live-interactive tools (直播小玩法: `/api/live_data/…`, `/api/gift/…`, `/api/card/…`) |
/// | `developer-product.zijieapi.com` | mini-app product APIs (`/product/api/…`) |
pub const DEFAULT_HOSTS: &[&str] = &[
    "open.douyin.com",
    "open.snssdk.com",
    "open-api.ixigua.com",
    "developer.toutiao.com",
    "minigame.zijieapi.com",
    "webcast.bytedance.com",
    "developer-product.zijieapi.com",
];

/// Which requests may carry a token: the configured hosts over HTTPS, loopback hosts over
/// HTTP too, and requests with no host at all (the inner service decides where they go, as a
/// tonic `Channel` does).
#[derive(Clone, Debug)]
pub(crate) struct Targets {
    pub(crate) any_host: bool,
    pub(crate) hosts: Vec<Box<str>>,
    pub(crate) allow_http: bool,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            any_host: false,
            hosts: DEFAULT_HOSTS.iter().map(|h| Box::from(*h)).collect(),
            allow_http: false,
        }
    }
}

impl Targets {
    #[inline]
    pub(crate) fn check(&self, uri: &Uri) -> Result<(), Error> {
        let Some(authority) = uri.authority() else {
            return Ok(());
        };
        // The common case first, without parsing the authority: HTTPS to an allowed host with
        // no port or user info (the same answer as below, for a tenth of the work). Hosts are
        // compared byte for byte before ignoring case: both are nearly always lower case, and
        // a plain comparison is a few instructions where a case-insensitive one is a dozen
        // per byte.
        if uri.scheme() == Some(&Scheme::HTTPS)
            && (self.any_host || {
                let a = authority.as_str();
                self.hosts.iter().any(|h| **h == *a)
                    || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(a))
            })
        {
            return Ok(());
        }
        let host = authority.host();
        let host_ok = self.any_host
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || is_loopback(host);
        let scheme_ok = match uri.scheme_str() {
            None | Some("https") => true,
            Some("http") => self.allow_http || is_loopback(host),
            Some(_) => false,
        };
        if host_ok && scheme_ok {
            Ok(())
        } else {
            Err(Error::DisallowedTarget {
                target: format!("{}://{}", uri.scheme_str().unwrap_or(""), host),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Targets::default();
        let ok = |u: &str| t.check(&u.parse().unwrap()).is_ok();
        assert!(ok("/oauth/x"));
        assert!(ok("https://open.douyin.com/x"));
        assert!(ok("https://OPEN.douyin.com/x"));
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(ok("http://[::1]:8080/x"));
        assert!(ok("http://localhost/x"));
        for host in [
            "developer.toutiao.com",
            "minigame.zijieapi.com",
            "webcast.bytedance.com",
            "developer-product.zijieapi.com",
        ] {
            assert!(ok(&format!("https://{host}/api/x")), "{host}");
            assert!(!ok(&format!("http://{host}/api/x")), "{host}");
        }
        assert!(!ok("http://open.douyin.com/x"));
        assert!(!ok("https://evil.example/x"));
        assert!(!ok("https://open.douyin.com.evil.example/x"));
        let err = t
            .check(
                &"https://evil.example/x?access_token=secret"
                    .parse()
                    .unwrap(),
            )
            .unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}

//! Douyin's error codes and what they mean, used by the token sources and by the expiry
//! classifier alike. Sources: Douyin's status-code pages and the official SDKs (see
//! `docs/douyin-protocol.md`).
//!
//! Most codes mean one thing wherever they appear. A few mean different things in different
//! API families ([`Family`]): 40002 is "bad access_token" on the old mini-app APIs but "no
//! permission" on the live-interactive tools. [`CodeKind::of`] gives the meaning shared by
//! every family (such codes are [`CodeKind::Other`] there); [`CodeKind::of_in`] reads the
//! family's own table.

use std::fmt;

/// What a Douyin error code means to this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodeKind {
    /// Code 0: success.
    Success,
    /// The access token (client or user) has expired: refresh and retry once.
    AccessTokenExpired,
    /// The access token is invalid (rotated or revoked): refresh and retry once.
    AccessTokenInvalid,
    /// The refresh token has expired: the user must authorise again.
    RefreshTokenExpired,
    /// Rate limited (token endpoint) or, on renewal, the renewal limit is used up.
    RateLimited,
    /// An API call was rate limited: not an expiry, passed through.
    ApiRateLimited,
    /// `client_key` or `client_secret` is wrong, or the key does not exist or is invalid.
    BadCredentials,
    /// Douyin is busy: transient, back off and try again.
    SystemBusy,
    /// The `open_id` does not match the token's user (a caller bug): passed through.
    OpenIdMismatch,
    /// The app is banned.
    AppBanned,
    /// A parameter was wrong.
    ParameterError,
    /// The authorization code has expired or was used already.
    CodeExpired,
    /// The app lacks the capability (scope) for this API.
    ScopeMissing,
    /// A code this crate has no meaning for.
    Other,
}

/// An API family: where the same error code may mean different things.
///
/// | family | hosts and paths | answer shape |
/// | --- | --- | --- |
/// | [`OpenApi`](Self::OpenApi) | `open.douyin.com` (`/oauth/`, `/data/`, `/video/`, `/goodlife/`, `/api/…`) | `data.error_code` + `extra`, `err_no`, top-level `error_code` (business tokens) |
/// | [`MiniApp`](Self::MiniApp) | `developer.toutiao.com` `/api/apps/…` | `err_no`/`err_tips`; the old APIs `errcode`/`errmsg` |
/// | [`MiniGame`](Self::MiniGame) | `minigame.zijieapi.com` `/mgplatform/api/apps/…` | `errcode`/`errmsg`, or `error` |
/// | [`LiveTools`](Self::LiveTools) | `webcast.bytedance.com` `/api/live_data/…`, `/api/gift/…`, `/api/card/…` | `errcode`/`errmsg` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// Douyin's OpenAPI on `open.douyin.com` (client, user and business tokens).
    OpenApi,
    /// Mini-app server APIs on `developer.toutiao.com` (the mini-app app token).
    MiniApp,
    /// Mini-game server APIs on `minigame.zijieapi.com` (the mini-game app token).
    MiniGame,
    /// Live-interactive tools (直播小玩法) on `webcast.bytedance.com`.
    LiveTools,
}

/// Codes that mean "the access token has expired or is invalid" in every family, in any body
/// shape Douyin uses.
pub const DEFAULT_EXPIRY_CODES: &[i64] =
    &[2_190_008, 10_008, 28_001_008, 2_190_002, 28_001_003, 40_004];

/// 40002 in the old mini-app APIs: "bad access_token" (in the live-interactive tools the same
/// number means "no permission").
pub const MINI_APP_BAD_TOKEN: i64 = 40_002;

/// The codes that mean "expired or invalid token" in `family`: [`DEFAULT_EXPIRY_CODES`] and
/// the family's own (40002 for [`Family::MiniApp`]).
pub fn expiry_codes(family: Family) -> &'static [i64] {
    match family {
        Family::MiniApp => &[
            2_190_008,
            10_008,
            28_001_008,
            2_190_002,
            28_001_003,
            40_004,
            MINI_APP_BAD_TOKEN,
        ],
        Family::OpenApi | Family::MiniGame | Family::LiveTools => DEFAULT_EXPIRY_CODES,
    }
}

/// Sub-codes (`extra.sub_error_code`) that mean "the access token has expired" (trade APIs).
pub const DEFAULT_EXPIRY_SUB_CODES: &[i64] = &[11_002];

impl CodeKind {
    /// What `code` means.
    pub fn of(code: i64) -> Self {
        match code {
            0 => Self::Success,
            2_190_008 | 10_008 | 28_001_008 => Self::AccessTokenExpired,
            2_190_002 | 28_001_003 | 40_004 => Self::AccessTokenInvalid,
            10_010 => Self::RefreshTokenExpired,
            10_020 => Self::RateLimited,
            28_003_018 | 28_003_017 | 2_119_003 | 2_190_001 => Self::ApiRateLimited,
            10_013 | 40_015 | 40_017 | 10_003 | 29_002_002 => Self::BadCredentials,
            2_100_004 | 28_001_005 => Self::SystemBusy,
            28_001_015 | 2_190_015 => Self::OpenIdMismatch,
            28_001_016 | 2_190_016 => Self::AppBanned,
            10_002 | 2_100_005 | 28_001_007 => Self::ParameterError,
            10_007 => Self::CodeExpired,
            2_190_004 => Self::ScopeMissing,
            _ => Self::Other,
        }
    }

    /// What `code` means in `family`: the family's own table first, then [`of`](Self::of).
    ///
    /// ```
    /// use douyin_auth::douyin::codes::{CodeKind, Family};
    ///
    /// assert_eq!(CodeKind::of_in(Family::MiniApp, 40002), CodeKind::AccessTokenInvalid);
    /// assert_eq!(CodeKind::of_in(Family::LiveTools, 40002), CodeKind::ScopeMissing);
    /// assert_eq!(CodeKind::of(40002), CodeKind::Other);
    /// ```
    pub fn of_in(family: Family, code: i64) -> Self {
        match (family, code) {
            (Family::MiniApp, MINI_APP_BAD_TOKEN) => Self::AccessTokenInvalid,
            (Family::LiveTools, 40_002) => Self::ScopeMissing,
            _ => Self::of(code),
        }
    }

    /// Whether the code means the access token is expired or invalid (refresh and retry once).
    pub fn is_token_expiry(self) -> bool {
        matches!(self, Self::AccessTokenExpired | Self::AccessTokenInvalid)
    }

    /// Whether a token call that failed with this code is worth trying again after a back-off.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::SystemBusy | Self::RateLimited | Self::ApiRateLimited
        )
    }

    /// A short human description of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::AccessTokenExpired => "access token expired",
            Self::AccessTokenInvalid => "access token invalid",
            Self::RefreshTokenExpired => "refresh token expired",
            Self::RateLimited => "rate limited",
            Self::ApiRateLimited => "API rate limited",
            Self::BadCredentials => "bad client credentials",
            Self::SystemBusy => "system busy",
            Self::OpenIdMismatch => "open_id does not match the token",
            Self::AppBanned => "app banned",
            Self::ParameterError => "parameter error",
            Self::CodeExpired => "authorization code expired or used",
            Self::ScopeMissing => "app lacks the scope",
            Self::Other => "unknown code",
        }
    }
}

impl fmt::Display for CodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_codes_agree_with_kinds() {
        for &c in DEFAULT_EXPIRY_CODES {
            assert!(CodeKind::of(c).is_token_expiry(), "{c}");
        }
        assert!(!CodeKind::of(10_010).is_token_expiry());
        assert!(!CodeKind::of(2_190_004).is_token_expiry());
        assert!(!CodeKind::of(0).is_token_expiry());
        assert_eq!(CodeKind::of(10_010), CodeKind::RefreshTokenExpired);
        assert!(CodeKind::of(2_100_004).is_transient());
        assert!(!CodeKind::of(10_013).is_transient());
    }

    #[test]
    fn forty_thousand_two_depends_on_the_family() {
        assert_eq!(
            CodeKind::of_in(Family::MiniApp, 40_002),
            CodeKind::AccessTokenInvalid
        );
        assert_eq!(
            CodeKind::of_in(Family::LiveTools, 40_002),
            CodeKind::ScopeMissing
        );
        assert_eq!(CodeKind::of_in(Family::OpenApi, 40_002), CodeKind::Other);
        assert_eq!(CodeKind::of(40_002), CodeKind::Other);
        assert!(expiry_codes(Family::MiniApp).contains(&40_002));
        assert!(!expiry_codes(Family::LiveTools).contains(&40_002));
        for f in [
            Family::OpenApi,
            Family::MiniApp,
            Family::MiniGame,
            Family::LiveTools,
        ] {
            for &c in expiry_codes(f) {
                assert!(CodeKind::of_in(f, c).is_token_expiry(), "{f:?} {c}");
            }
        }
    }
}

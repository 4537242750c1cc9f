//! Which protected API is which: where Douyin reads the token for each API family, which token
//! kinds it takes, and the shape and codes it answers in.

use super::state::Kind;

/// Where a request may carry its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The `access-token` header.
    Header,
    /// The `access_token` header (underscore).
    UnderscoreHeader,
    /// The `X-Token` header.
    XToken,
    /// The `access_token` query parameter.
    Query,
    /// The `access_token` field of a form-urlencoded body.
    Form,
}

/// The body shape a protected API answers in, with its expired and invalid codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `data.error_code` and `extra.error_code` (most OpenAPI).
    DataExtra,
    /// Code only in `extra` (`/goodlife/`).
    ExtraOnly,
    /// `err_no` / `err_msg` (`/api/` on open.douyin.com; mini-app v2 APIs with `err_tips`).
    ErrNo,
    /// `errcode` / `errmsg` (mini-game, live-interactive tools, old mini-app APIs).
    ErrCode,
}

/// One API family's rules.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub(crate) shape: Shape,
    pub(crate) places: &'static [Place],
    pub(crate) takes: &'static [Kind],
    /// Answer rejections with HTTP 401.
    pub(crate) force_401: bool,
    /// The code for an expired token.
    pub(crate) expired: i64,
    /// The code for a missing, unknown or revoked token, or one of the wrong kind.
    pub(crate) invalid: i64,
    /// The code for an `open_id` that is not the token's.
    pub(crate) mismatch: i64,
}

const OPENAPI_KINDS: &[Kind] = &[Kind::Client, Kind::User, Kind::Business];
const USER_KINDS: &[Kind] = &[Kind::User, Kind::Business];
const APP_KINDS: &[Kind] = &[Kind::MiniApp, Kind::MiniGame];

const fn route(shape: Shape, places: &'static [Place], takes: &'static [Kind]) -> Route {
    let (expired, invalid, mismatch) = match shape {
        Shape::DataExtra | Shape::ExtraOnly => (2_190_008, 2_190_002, 2_190_015),
        Shape::ErrNo => (28_001_008, 28_001_003, 28_001_015),
        Shape::ErrCode => (40_004, 40_004, 40_004),
    };
    Route {
        shape,
        places,
        takes,
        force_401: false,
        expired,
        invalid,
        mismatch,
    }
}

/// The route of a protected API at `path` (trailing slash trimmed); see the module docs of
/// [`mock`](crate::mock) for the table.
pub(crate) fn route_for(path: &str) -> Route {
    let under = |prefix: &str| path == prefix.trim_end_matches('/') || path.starts_with(prefix);
    if under("/test/401/") {
        return Route {
            force_401: true,
            ..route(Shape::DataExtra, &[Place::Header], OPENAPI_KINDS)
        };
    }
    if under("/oauth/userinfo/") {
        return route(
            Shape::DataExtra,
            &[
                Place::Header,
                Place::UnderscoreHeader,
                Place::Query,
                Place::Form,
            ],
            USER_KINDS,
        );
    }
    if under("/data/external/user/") || under("/video/") {
        return route(Shape::DataExtra, &[Place::Header, Place::Query], USER_KINDS);
    }
    if under("/api/douyin/v1/user/") {
        return route(Shape::ErrNo, &[Place::Header], USER_KINDS);
    }
    if under("/goodlife/") {
        return route(Shape::ExtraOnly, &[Place::Header], &[Kind::Client]);
    }
    if under("/api/apps/v1/") || under("/api/apps/v2/") {
        return route(
            Shape::ErrNo,
            &[Place::Header, Place::UnderscoreHeader],
            &[Kind::MiniApp],
        );
    }
    if under("/api/apps/") {
        // The old mini-app APIs: `errcode` 40002 "bad access_token".
        return Route {
            expired: 40_002,
            invalid: 40_002,
            ..route(
                Shape::ErrCode,
                &[Place::Header, Place::Query],
                &[Kind::MiniApp],
            )
        };
    }
    if under("/mgplatform/api/apps/") {
        return route(
            Shape::ErrCode,
            &[Place::UnderscoreHeader, Place::Query],
            &[Kind::MiniGame],
        );
    }
    if under("/api/card/") || under("/api/v2/tags/") {
        return route(Shape::ErrCode, &[Place::XToken], APP_KINDS);
    }
    if under("/api/live_data/") || under("/api/gift/") {
        return route(Shape::ErrCode, &[Place::Header], APP_KINDS);
    }
    if under("/api/") {
        return route(Shape::ErrNo, &[Place::Header], OPENAPI_KINDS);
    }
    route(
        Shape::DataExtra,
        &[Place::Header, Place::Query, Place::Form],
        OPENAPI_KINDS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(route_for("/oauth/userinfo").takes, USER_KINDS);
        assert_eq!(route_for("/data/external/user/fans").takes, USER_KINDS);
        assert_eq!(
            route_for("/goodlife/v1/shop/poi/query").shape,
            Shape::ExtraOnly
        );
        assert_eq!(route_for("/api/apps/v2/qrcode/create").shape, Shape::ErrNo);
        assert_eq!(route_for("/api/apps/qrcode").invalid, 40_002);
        assert_eq!(
            route_for("/mgplatform/api/apps/set_user_storage").invalid,
            40_004
        );
        assert_eq!(route_for("/api/card/default/set").places, [Place::XToken]);
        assert_eq!(route_for("/api/x").shape, Shape::ErrNo);
        assert!(route_for("/test/401").force_401);
        assert_eq!(route_for("/data/x").takes, OPENAPI_KINDS);
    }
}

//! What the mock hands its caller: injected failures, counters, user grants.

use std::fmt;

use http::StatusCode;

/// How the next token-endpoint calls fail; see [`MockDouyin::fail_next_token_calls`](crate::mock::MockDouyin::fail_next_token_calls).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFailure {
    /// HTTP 200 with this Douyin error code in the token endpoints' error shape
    /// (e.g. 2100004 system busy, 10020 rate limited).
    Code(i64),
    /// This HTTP status with a non-JSON body (e.g. 500 or 502 from a gateway).
    HttpStatus(StatusCode),
    /// HTTP 200 with a truncated, unparseable JSON body.
    Malformed,
}

/// A snapshot of the mock's counters. Each counts requests as they arrive, including those
/// answered with an injected failure or an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Calls to `/oauth/client_token/`.
    pub client_token_calls: u64,
    /// Calls to `/oauth/stable_client_token/`.
    pub stable_client_token_calls: u64,
    /// Calls to `/oauth/access_token/` (code exchanges).
    pub code_exchanges: u64,
    /// Calls to `/oauth/refresh_token/`.
    pub refresh_calls: u64,
    /// Calls to `/oauth/renew_refresh_token/`.
    pub renew_calls: u64,
    /// Calls to protected APIs, whatever the answer.
    pub api_calls: u64,
    /// Protected-API calls rejected because the token had expired.
    pub api_expired: u64,
    /// Protected-API calls rejected because the token was missing, unknown or revoked, or
    /// sat where this API does not read it, or was of a kind this API does not take.
    pub api_invalid: u64,
    /// Of [`api_invalid`](Self::api_invalid): a valid token of a kind the API does not take
    /// (a client token on a user API).
    pub api_wrong_kind: u64,
    /// Calls to the mini-app `/api/apps/v2/token`.
    pub mini_app_token_calls: u64,
    /// Calls to the mini-game `/mgplatform/api/apps/v2/token`.
    pub mini_game_token_calls: u64,
    /// Calls to the mini-game `/mgplatform/api/apps/stable_token`.
    pub mini_game_stable_token_calls: u64,
    /// Of those, the calls with `force_refresh: true` that made a new token.
    pub mini_game_force_refreshes: u64,
    /// Calls to `/oauth/business_token/`.
    pub business_token_calls: u64,
    /// Calls to `/oauth/refresh_biz_token/`.
    pub biz_refresh_calls: u64,
    /// Calls to either `jscode2session`.
    pub code2session_calls: u64,
}

impl Counters {
    /// Calls to either client-token endpoint.
    pub fn all_client_token_calls(&self) -> u64 {
        self.client_token_calls + self.stable_client_token_calls
    }

    /// Protected-API calls rejected as expired or invalid.
    pub fn api_rejected(&self) -> u64 {
        self.api_expired + self.api_invalid
    }
}

/// A user's tokens made by [`MockDouyin::issue_user_tokens`](crate::mock::MockDouyin::issue_user_tokens). `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserGrant {
    /// The user's `open_id`.
    pub open_id: String,
    /// The access token (`act.…`).
    pub access_token: String,
    /// The refresh token (`rft.…`).
    pub refresh_token: String,
    /// The granted scopes.
    pub scopes: Vec<String>,
}

impl fmt::Debug for UserGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserGrant")
            .field("open_id", &self.open_id)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

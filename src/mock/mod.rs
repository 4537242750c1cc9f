//! An embedded mock of Douyin's OpenAPI token endpoints and protected APIs, for tests,
//! examples and the quickstart.
//!
//! [`MockDouyin::start`] binds a real HTTP/1.1 server to `127.0.0.1` on a random port and runs
//! it on the current Tokio runtime until the [`MockDouyin`] handle is dropped or
//! [`shutdown`](MockDouyin::shutdown) is called (`cargo run --example mock_server` runs it
//! standalone, for clients in other languages). It answers in Douyin's shapes (HTTP 200 with
//! the code in the JSON body) and follows the token rules of the crate's protocol notes
//! (`docs/douyin-protocol.md` in the repository): only the newest two client tokens stay
//! valid, the stable client token is idempotent, refreshing an unexpired access token returns
//! the same token with a later expiry, renewing a refresh token kills the old one at once (at
//! most five times per authorisation), codes work once; a new mini-app or mini-game token cuts
//! the previous ones to five minutes, the mini-game stable token is idempotent until a
//! `force_refresh` (at most 20 a day), a business-token refresh replaces the refresh token.
//!
//! It is as strict as Douyin about where the token goes and which kind an API takes: each API
//! family reads the token only from its own places (a token elsewhere, `Authorization: Bearer`
//! included, is no token), and a user API refuses a client token.
//!
//! Lifetimes run on [`tokio::time::Instant`], so a test on a paused clock
//! (`#[tokio::test(start_paused = true)]` and `tokio::time::advance`) can let tokens expire;
//! [`MockDouyin::advance_clock`] shifts the mock's own notion of "now" without touching Tokio's
//! clock.
//!
//! # Routes
//!
//! Token endpoints (trailing slash optional; POST only; `client_key` and, where noted,
//! `client_secret` must match the mock's):
//!
//! | route | body | answers |
//! | --- | --- | --- |
//! | `POST /oauth/client_token/` | JSON, form-urlencoded or query | a new `clt.…` each call; only the newest two stay valid; over 500 calls in 5 minutes: 10020 |
//! | `POST /oauth/stable_client_token/` | JSON | the same `clt.…` while it is valid (with the seconds left), a new one after |
//! | `POST /oauth/access_token/` | form | code exchange: `act.…`, `rft.…`, `open_id`, `scope`, lifetimes |
//! | `POST /oauth/refresh_token/` | form | same `act.…` with a later expiry if unexpired, a new one if expired; refresh token not extended |
//! | `POST /oauth/renew_refresh_token/` | form | a new `rft.…`; the old one dies at once; at most 5 per authorisation |
//! | `GET /platform/oauth/connect/` | query | the consent page (HTML): the app's `client_key`, the scopes, an account field, **Allow** (`#allow`) and **Deny** (`#deny`); an invalid request gets an error page (400) |
//! | `POST /platform/oauth/connect/` | form (the page's) | Allow: `302` to `redirect_uri?code=…&state=…`; Deny: `302` to `redirect_uri?error=access_denied&error_description=…&state=…` |
//! | `POST /api/apps/v2/token` | JSON `appid`, `secret`, `grant_type` | mini-app token `mat.…`, `{"err_no": 0, "err_tips": "success", "data": {"access_token", "expires_in"}}`; a new one cuts the previous ones to 5 minutes |
//! | `POST /mgplatform/api/apps/v2/token` | same | mini-game token `mgt.…`, same rule, `data.expires_at` too |
//! | `POST /mgplatform/api/apps/stable_token` | same, `force_refresh` | `mgs.…`: the same while valid; `force_refresh: true` makes a new one and kills the old at once, at most 20 in 24 hours (then 10020) |
//! | `POST /api/apps/v2/jscode2session` | JSON `appid`, `secret`, `code`, `anonymous_code` | `{"err_no": 0, "data": {"session_key", "openid", "anonymous_openid", "unionid"}}` for a code of [`login_code`](MockDouyin::login_code) or [`anonymous_login_code`](MockDouyin::anonymous_login_code) (single use) |
//! | `GET /mgplatform/api/apps/jscode2session` | query, same | flat `{"error": 0, "errcode": 0, "errmsg", "message", "session_key", "openid", "anonymous_openid", "unionid"}` |
//! | `POST /oauth/business_token/` | JSON `client_key`, `client_secret`, `open_id`, `scope` | `{"data": {"biz_token", "biz_expires_in", "biz_refresh_token", "biz_refresh_expires_in"}, "error_code": 0, "message": "success"}` for an account with a live authorisation holding the scope (else 2190004); the account's previous refresh token for the scope dies |
//! | `POST /oauth/refresh_biz_token/` | JSON `client_key`, `client_secret`, `refresh_token` | a new business token and a new refresh token; the old refresh token dies at once (10010 after) |
//!
//! The mini-app and mini-game endpoints take the mock's `client_key` and `client_secret` as
//! their `appid` and `secret`, and answer errors in their own shapes: `{"err_no": N,
//! "err_tips": …}` (40014 parameter, 40015 bad appid, 40017 bad secret, 40020 bad
//! `grant_type`, 40018 bad login code), `{"error": 1, "errcode": N, "errmsg": …}` for the
//! mini-game login, `{"error_code": N, "message": …}` for business tokens. Which code Douyin
//! sends when the forced-refresh cap is reached is not documented; the mock sends 10020.
//!
//! The consent page checks the request as Douyin does: `client_key` known (else 10003),
//! `response_type=code` and a `redirect_uri` (else 2100005), `redirect_uri` `https://` or
//! `http://` on a loopback host (else 10006). Allow issues a code as
//! [`authorize`](MockDouyin::authorize) does, for the account typed on the page (default
//! `mock-open-id-1`). What Douyin's page sends back on Deny is not documented (UNVERIFIED): the
//! mock sends OAuth 2.0's `error=access_denied` (RFC 6749 4.1.2.1).
//!
//! Query parameters are read on every token endpoint; the body wins on conflicts. A body of the
//! wrong kind (JSON to a form endpoint, form to the stable endpoint) is a parameter error, so a
//! client that ignores Douyin's "form, not JSON" rule fails against the mock as it would
//! against Douyin. Success: `{"data": {…, "error_code": 0, "description": ""}, "message":
//! "success"}`. Errors: `{"data": {"description": …, "error_code": N}, "extra": {"logid": …,
//! "now": ms}}` with
//!
//! | code | when |
//! | --- | --- |
//! | 2100005 | a parameter is missing or wrong, or the body is of the wrong kind |
//! | 10003 | unknown `client_key` |
//! | 10013 | wrong `client_secret` |
//! | 10007 | the code is unknown, used or older than 10 minutes |
//! | 10010 | the refresh token is unknown, renewed away, revoked or expired |
//! | 10020 | the renewal limit is used up; on `/oauth/client_token/`, rate limited |
//!
//! The plain and the stable client tokens are independent: neither rotates the other out
//! (Douyin does not document how they interact).
//!
//! Protected APIs (any method, any other path) read the token only where Douyin reads it for
//! the API family, first place first, and take only the token kinds Douyin takes there. A
//! token anywhere else is no token ("invalid"); a valid token of the wrong kind is "invalid"
//! too (counted in [`Counters::api_wrong_kind`]). If the query has an `open_id` that differs
//! from a user's or business token's, the answer is "open_id mismatch" (2190015, 28001015 in
//! the `err_no` family).
//!
//! | route (first match) | token read from | kinds taken | body shape | expired | invalid |
//! | --- | --- | --- | --- | --- | --- |
//! | `/test/401/…` | `access-token` | client, user, business | shape 1, HTTP **401** on expired or invalid | 2190008 | 2190002 |
//! | `/oauth/userinfo/` | `access-token`, `access_token` header, `access_token` query, `access_token` form field | user, business | shape 1 | 2190008 | 2190002 |
//! | `/data/external/user/…`, `/video/…` | `access-token`, `access_token` query | user, business | shape 1 | 2190008 | 2190002 |
//! | `/api/douyin/v1/user/…` | `access-token` | user, business | shape 3 | 28001008 | 28001003 |
//! | `/goodlife/…` | `access-token` | client | shape 2: `{"data": {…}, "extra": {"error_code": N, "description", "logid", "now"}}` | 2190008 | 2190002 |
//! | `/api/apps/v1/…`, `/api/apps/v2/…` (mini-app) | `access-token`, `access_token` header | mini-app | `{"err_no": N, "err_msg", "err_tips", "log_id", "data"}` | 28001008 | 28001003 |
//! | other `/api/apps/…` (old mini-app APIs) | `access-token`, `access_token` query | mini-app | `{"errcode": N, "errmsg"}` | 40002 | 40002 |
//! | `/mgplatform/api/apps/…` (mini-game) | `access_token` header, `access_token` query | mini-game | `{"errcode": N, "errmsg"}` | 40004 | 40004 |
//! | `/api/card/…`, `/api/v2/tags/…` (live-interactive cards) | `X-Token` | mini-app, mini-game | `errcode` | 40004 | 40004 |
//! | `/api/live_data/…`, `/api/gift/…` (live-interactive tools) | `access-token` | mini-app, mini-game | `errcode` | 40004 | 40004 |
//! | other `/api/…` | `access-token` | client, user, business | shape 3: `{"err_no": N, "err_msg", "log_id", "data": {…}}` | 28001008 | 28001003 |
//! | anything else (e.g. `/data/extern/billboard/…`) | `access-token`, `access_token` query, `access_token` form field | client, user, business | shape 1: `{"data": {"error_code": N, "description"}, "extra": {"error_code": N, "description", "sub_error_code": 0, "sub_description": "", "logid", "now"}}` | 2190008 | 2190002 |
//!
//! All answer HTTP 200 unless [`MockDouyin::answer_401_on_expiry`] is on (or the path is under
//! `/test/401/`). Success is code 0 with `data` holding `token_type` (`"client"`, `"user"`,
//! `"mini_app"`, `"mini_game"` or `"business"`), `path`, and for a user token its `open_id`,
//! `nickname` and `scope`, for a business token its `open_id` and `scope` (for a client token,
//! the queried `open_id` if any).
//!
//! # Knobs and counters
//!
//! - [`authorize`](MockDouyin::authorize): a user consents; returns a single-use code.
//!   [`issue_user_tokens`](MockDouyin::issue_user_tokens) skips the code exchange (and
//!   authorises the scopes business tokens ask for).
//! - [`login_code`](MockDouyin::login_code), [`anonymous_login_code`](MockDouyin::anonymous_login_code):
//!   `tt.login` in a mini-app or mini-game, for `code2session`.
//! - [`expire_all_tokens`](MockDouyin::expire_all_tokens),
//!   [`expire_token`](MockDouyin::expire_token), [`revoke_token`](MockDouyin::revoke_token),
//!   [`revoke_user`](MockDouyin::revoke_user), [`advance_clock`](MockDouyin::advance_clock).
//! - [`fail_next_token_calls`](MockDouyin::fail_next_token_calls) with a [`TokenFailure`]
//!   (an error code, an HTTP status or a malformed body),
//!   [`set_token_latency`](MockDouyin::set_token_latency),
//!   [`answer_401_on_expiry`](MockDouyin::answer_401_on_expiry),
//!   [`answer_numbers_as_strings`](MockDouyin::answer_numbers_as_strings).
//! - [`counters`](MockDouyin::counters) returns a [`Counters`] snapshot.
//!
//! The handle's `Debug` shows the address and the counters, never a secret.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use douyin_auth::mock::{MockDouyin, TokenFailure};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let mock = MockDouyin::builder()
//!     .client_token_lifetime(Duration::from_secs(600))
//!     .start()
//!     .await?;
//! let base_url = mock.base_url(); // "http://127.0.0.1:PORT": point the crate's endpoints here
//! assert!(base_url.starts_with("http://127.0.0.1:"));
//!
//! // A user consents; the app exchanges the code at POST {base_url}/oauth/access_token/.
//! let code = mock.authorize("open-id-1", ["user_info"]);
//! assert!(code.starts_with("code."));
//!
//! // Make the next token call fail as Douyin does when it is busy.
//! mock.fail_next_token_calls(1, TokenFailure::Code(2_100_004));
//! // Every token the mock issued so far expires now.
//! mock.expire_all_tokens();
//! assert_eq!(mock.counters().client_token_calls, 0);
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod consent;
mod families;
mod handlers;
mod ids;
mod routes;
mod server;
mod state;
mod types;

pub use self::config::{
    DEFAULT_ACCESS_TOKEN_LIFETIME, DEFAULT_BUSINESS_TOKEN_LIFETIME, DEFAULT_CLIENT_KEY,
    DEFAULT_CLIENT_SECRET, DEFAULT_CLIENT_TOKEN_LIFETIME, DEFAULT_CLIENT_TOKEN_RATE_LIMIT,
    DEFAULT_CLIENT_TOKEN_RATE_WINDOW, DEFAULT_CODE_LIFETIME, DEFAULT_MAX_RENEWALS,
    DEFAULT_REFRESH_TOKEN_LIFETIME,
};
pub use self::server::{MockDouyin, MockDouyinBuilder};
pub use self::types::{Counters, TokenFailure, UserGrant};

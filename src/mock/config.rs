//! The mock's settings: their defaults and the configuration fixed at start.

use std::time::Duration;

/// The `client_key` the mock accepts unless the builder sets another.
pub const DEFAULT_CLIENT_KEY: &str = "mock_client_key";
/// The `client_secret` the mock accepts unless the builder sets another.
pub const DEFAULT_CLIENT_SECRET: &str = "mock_client_secret";
/// Default client-token lifetime: 7200 s.
pub const DEFAULT_CLIENT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// Default user access-token lifetime: 1,296,000 s (15 days).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(1_296_000);
/// Default refresh-token lifetime: 2,592,000 s (30 days).
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(2_592_000);
/// Default authorization-code lifetime: 10 minutes.
pub const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Default business-token lifetime: 30 days (the mini-app token tutorial's figure).
pub const DEFAULT_BUSINESS_TOKEN_LIFETIME: Duration = Duration::from_secs(2_592_000);
/// Default number of refresh-token renewals per authorisation: 5.
pub const DEFAULT_MAX_RENEWALS: u32 = 5;

/// Default rate limit of `/oauth/client_token/`: 500 calls per
/// [`DEFAULT_CLIENT_TOKEN_RATE_WINDOW`].
pub const DEFAULT_CLIENT_TOKEN_RATE_LIMIT: usize = 500;
/// Default window of the client-token rate limit: 5 minutes.
pub const DEFAULT_CLIENT_TOKEN_RATE_WINDOW: Duration = Duration::from_secs(300);

/// The mock's configuration, fixed at start.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) client_key: String,
    pub(crate) client_secret: String,
    pub(crate) client_token_lifetime: Duration,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
    pub(crate) code_lifetime: Duration,
    pub(crate) max_renewals: u32,
    /// At most this many `/oauth/client_token/` calls per `rate_window` (then 10020).
    pub(crate) rate_limit: usize,
    pub(crate) rate_window: Duration,
    /// How long business tokens live.
    pub(crate) business_token_lifetime: Duration,
}

//! The mock's state: issued tokens, codes, authorisations, knobs and counters, and the token
//! endpoints' logic (independent of HTTP, which lives in `handlers`). One concern, the mock's
//! books, kept whole so every rule of Douyin's it follows is in one place.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::config::Config;
use super::families::Apps;
use super::ids::{log_id, random_token};
use super::types::{Counters, TokenFailure, UserGrant};

/// Douyin's "parameter error" code, as its token endpoints send it.
pub(crate) const PARAMETER_ERROR: i64 = 2_100_005;
/// `client_key` does not exist.
pub(crate) const UNKNOWN_CLIENT_KEY: i64 = 10_003;
/// `client_secret` is wrong.
pub(crate) const BAD_SECRET: i64 = 10_013;
/// Authorization code expired or used.
pub(crate) const CODE_EXPIRED: i64 = 10_007;
/// Refresh token expired (or unknown).
pub(crate) const REFRESH_EXPIRED: i64 = 10_010;
/// Renewal limit used up (and, on the client-token endpoint, rate limited).
pub(crate) const RENEW_LIMIT: i64 = 10_020;

/// A token endpoint's error answer: code and description.
#[derive(Debug)]
pub(crate) struct TokenError {
    pub(crate) code: i64,
    pub(crate) description: String,
}

impl TokenError {
    fn new(code: i64, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    fn parameter(description: impl Into<String>) -> Self {
        Self::new(PARAMETER_ERROR, description)
    }
}

/// Who called a protected API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A client token (app-wide, no user).
    Client,
    /// A user access token.
    User {
        /// The user's `open_id`.
        open_id: String,
        /// The scopes the user granted.
        scopes: Vec<String>,
    },
    /// A mini-app app token.
    MiniApp,
    /// A mini-game app token (plain or stable).
    MiniGame,
    /// A business token of one account and scope.
    Business {
        /// The account's `open_id`.
        open_id: String,
        /// The scope.
        scope: String,
    },
}

/// The kinds of token a protected API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A client token.
    Client,
    /// A user access token.
    User,
    /// A mini-app app token.
    MiniApp,
    /// A mini-game app token.
    MiniGame,
    /// A business token.
    Business,
}

impl Caller {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Caller::Client => Kind::Client,
            Caller::User { .. } => Kind::User,
            Caller::MiniApp => Kind::MiniApp,
            Caller::MiniGame => Kind::MiniGame,
            Caller::Business { .. } => Kind::Business,
        }
    }

    /// The user or account the token acts for, if any.
    pub(crate) fn open_id(&self) -> Option<&str> {
        match self {
            Caller::User { open_id, .. } | Caller::Business { open_id, .. } => Some(open_id),
            _ => None,
        }
    }
}

/// What the mock thinks of the token an API call carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthOutcome {
    /// A valid token.
    Valid(Caller),
    /// A token the mock issued, past its expiry.
    Expired,
    /// A missing, unknown, rotated-out or revoked token.
    Invalid,
    /// A valid token of a kind this API does not take (a client token on a user API).
    WrongKind(Kind),
}

/// An issued token and its deadline on the mock's clock.
struct Issued {
    token: String,
    expires_at: Instant,
}

impl Issued {
    fn is_valid(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// Whole seconds left, rounded up, zero once expired.
    fn remaining_secs(&self, now: Instant) -> u64 {
        let left = self.expires_at.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

struct PendingCode {
    open_id: String,
    scopes: Vec<String>,
    expires_at: Instant,
}

/// One authorisation of the app by a user: its access and refresh tokens.
struct Grant {
    open_id: String,
    scopes: Vec<String>,
    access: Issued,
    refresh: Issued,
    renewals: u32,
}

struct Inner {
    clock_offset: Duration,
    /// The newest client tokens from `/oauth/client_token/`, oldest first, at most two.
    client_tokens: VecDeque<Issued>,
    /// The token of `/oauth/stable_client_token/`.
    stable: Option<Issued>,
    codes: HashMap<String, PendingCode>,
    grants: Vec<Grant>,
    failures: VecDeque<TokenFailure>,
    latency: Duration,
    answer_401: bool,
    numbers_as_strings: bool,
    /// When recent `/oauth/client_token/` calls arrived, oldest first (for the rate limit).
    recent_client_calls: VecDeque<Instant>,
    counters: Counters,
}

/// The shared state of one mock server.
pub(crate) struct State {
    pub(crate) config: Config,
    inner: Mutex<Inner>,
    /// Mini-app and mini-game app tokens, business tokens and login codes.
    pub(crate) apps: Apps,
}

/// Which counter a token endpoint call bumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/oauth/client_token/`.
    Client,
    /// `/oauth/stable_client_token/`.
    Stable,
    /// `/oauth/access_token/`.
    CodeExchange,
    /// `/oauth/refresh_token/`.
    Refresh,
    /// `/oauth/renew_refresh_token/`.
    Renew,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                clock_offset: Duration::ZERO,
                client_tokens: VecDeque::new(),
                stable: None,
                codes: HashMap::new(),
                grants: Vec::new(),
                failures: VecDeque::new(),
                latency: Duration::ZERO,
                answer_401: false,
                numbers_as_strings: false,
                recent_client_calls: VecDeque::new(),
                counters: Counters::default(),
            }),
            apps: Apps::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a test double: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mock's "now": tokio's clock (pausable) plus the knob's offset.
    fn now(inner: &Inner) -> Instant {
        Instant::now() + inner.clock_offset
    }

    /// The mock's "now", for the other parts of the mock.
    pub(crate) fn clock(&self) -> Instant {
        Self::now(&self.lock())
    }

    /// Runs `f` on the counters.
    pub(crate) fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.lock().counters);
    }

    /// Whether `open_id` authorised the app for `scope` (a live authorisation holds it).
    pub(crate) fn user_has_scope(&self, open_id: &str, scope: &str) -> bool {
        self.lock()
            .grants
            .iter()
            .any(|g| g.open_id == open_id && g.scopes.iter().any(|s| s == scope))
    }

    // ----- knobs -----

    pub(crate) fn advance_clock(&self, by: Duration) {
        let mut inner = self.lock();
        inner.clock_offset = inner.clock_offset.saturating_add(by);
    }

    pub(crate) fn clock_offset(&self) -> Duration {
        self.lock().clock_offset
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn set_answer_401(&self, on: bool) {
        self.lock().answer_401 = on;
    }

    pub(crate) fn answer_401(&self) -> bool {
        self.lock().answer_401
    }

    pub(crate) fn set_numbers_as_strings(&self, on: bool) {
        self.lock().numbers_as_strings = on;
    }

    pub(crate) fn numbers_as_strings(&self) -> bool {
        self.lock().numbers_as_strings
    }

    pub(crate) fn push_failures(&self, n: usize, failure: TokenFailure) {
        let mut inner = self.lock();
        inner.failures.extend(std::iter::repeat_n(failure, n));
    }

    pub(crate) fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    pub(crate) fn take_failure(&self) -> Option<TokenFailure> {
        self.lock().failures.pop_front()
    }

    pub(crate) fn counters(&self) -> Counters {
        self.lock().counters
    }

    pub(crate) fn reset_counters(&self) {
        self.lock().counters = Counters::default();
    }

    pub(crate) fn count_token_call(&self, endpoint: Endpoint) {
        let c = &mut self.lock().counters;
        let slot = match endpoint {
            Endpoint::Client => &mut c.client_token_calls,
            Endpoint::Stable => &mut c.stable_client_token_calls,
            Endpoint::CodeExchange => &mut c.code_exchanges,
            Endpoint::Refresh => &mut c.refresh_calls,
            Endpoint::Renew => &mut c.renew_calls,
        };
        *slot += 1;
    }

    /// Simulates a user consenting: a new single-use code for `open_id`. Any earlier unused
    /// code of the same user dies (Douyin: a new code invalidates the previous one).
    pub(crate) fn authorize(&self, open_id: String, scopes: Vec<String>) -> String {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        inner.codes.retain(|_, c| c.open_id != open_id);
        let code = random_token("code.");
        let expires_at = now + self.config.code_lifetime;
        inner.codes.insert(
            code.clone(),
            PendingCode {
                open_id,
                scopes,
                expires_at,
            },
        );
        code
    }

    /// A new authorisation without the code exchange.
    pub(crate) fn issue_user_tokens(&self, open_id: String, scopes: Vec<String>) -> UserGrant {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let grant = self.new_grant(now, open_id, scopes);
        let out = UserGrant {
            open_id: grant.open_id.clone(),
            access_token: grant.access.token.clone(),
            refresh_token: grant.refresh.token.clone(),
            scopes: grant.scopes.clone(),
        };
        inner.grants.push(grant);
        out
    }

    fn new_grant(&self, now: Instant, open_id: String, scopes: Vec<String>) -> Grant {
        Grant {
            open_id,
            scopes,
            access: Issued {
                token: random_token("act."),
                expires_at: now + self.config.access_token_lifetime,
            },
            refresh: Issued {
                token: random_token("rft."),
                expires_at: now + self.config.refresh_token_lifetime,
            },
            renewals: 0,
        }
    }

    /// Expires every client token (plain and stable) and every user access token now.
    /// Refresh tokens and codes stay valid.
    pub(crate) fn expire_all(&self) {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let inner = &mut *inner;
        self.apps.expire_all(now);
        for t in inner.client_tokens.iter_mut() {
            t.expires_at = t.expires_at.min(now);
        }
        if let Some(t) = inner.stable.as_mut() {
            t.expires_at = t.expires_at.min(now);
        }
        for g in inner.grants.iter_mut() {
            g.access.expires_at = g.access.expires_at.min(now);
        }
    }

    /// Expires one token of any kind (client, access, refresh, code) now.
    pub(crate) fn expire_token(&self, token: &str) -> bool {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let inner = &mut *inner;
        let mut found = self.apps.expire_token(token, now);
        let issued = inner
            .client_tokens
            .iter_mut()
            .chain(inner.stable.iter_mut())
            .chain(
                inner
                    .grants
                    .iter_mut()
                    .flat_map(|g| [&mut g.access, &mut g.refresh]),
            );
        for t in issued {
            if t.token == token {
                t.expires_at = t.expires_at.min(now);
                found = true;
            }
        }
        if let Some(c) = inner.codes.get_mut(token) {
            c.expires_at = c.expires_at.min(now);
            found = true;
        }
        found
    }

    /// Revokes a token: a client token is forgotten; a user's access or refresh token kills
    /// the whole authorisation it belongs to; a code is forgotten.
    pub(crate) fn revoke_token(&self, token: &str) -> bool {
        let revoked_app_token = self.apps.revoke_token(token);
        let mut inner = self.lock();
        let before = inner.client_tokens.len()
            + usize::from(inner.stable.is_some())
            + inner.grants.len()
            + inner.codes.len();
        inner.client_tokens.retain(|t| t.token != token);
        if inner.stable.as_ref().is_some_and(|t| t.token == token) {
            inner.stable = None;
        }
        inner
            .grants
            .retain(|g| g.access.token != token && g.refresh.token != token);
        inner.codes.remove(token);
        let after = inner.client_tokens.len()
            + usize::from(inner.stable.is_some())
            + inner.grants.len()
            + inner.codes.len();
        after < before || revoked_app_token
    }

    /// Revokes every authorisation of `open_id`; returns how many there were.
    pub(crate) fn revoke_user(&self, open_id: &str) -> usize {
        let mut inner = self.lock();
        let before = inner.grants.len();
        inner.grants.retain(|g| g.open_id != open_id);
        inner.codes.retain(|_, c| c.open_id != open_id);
        before - inner.grants.len()
    }

    // ----- protected APIs -----

    /// Checks an API call's token against the kinds the API takes, and counts the call.
    pub(crate) fn check_api_token(&self, token: Option<&str>, takes: &[Kind]) -> AuthOutcome {
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let mut outcome = match token {
            None | Some("") => AuthOutcome::Invalid,
            Some(token) => match Self::lookup(&inner, now, token) {
                AuthOutcome::Invalid => self.apps.lookup(token, now),
                found => found,
            },
        };
        if let AuthOutcome::Valid(caller) = &outcome {
            if !takes.contains(&caller.kind()) {
                outcome = AuthOutcome::WrongKind(caller.kind());
            }
        }
        let c = &mut inner.counters;
        c.api_calls += 1;
        match outcome {
            AuthOutcome::Valid(_) => {}
            AuthOutcome::Expired => c.api_expired += 1,
            AuthOutcome::Invalid => c.api_invalid += 1,
            AuthOutcome::WrongKind(_) => {
                c.api_invalid += 1;
                c.api_wrong_kind += 1;
            }
        }
        outcome
    }

    fn lookup(inner: &Inner, now: Instant, token: &str) -> AuthOutcome {
        let judge = |t: &Issued| {
            if t.is_valid(now) {
                None
            } else {
                Some(AuthOutcome::Expired)
            }
        };
        if let Some(t) = inner
            .client_tokens
            .iter()
            .chain(inner.stable.iter())
            .find(|t| t.token == token)
        {
            return judge(t).unwrap_or(AuthOutcome::Valid(Caller::Client));
        }
        if let Some(g) = inner.grants.iter().find(|g| g.access.token == token) {
            return judge(&g.access).unwrap_or_else(|| {
                AuthOutcome::Valid(Caller::User {
                    open_id: g.open_id.clone(),
                    scopes: g.scopes.clone(),
                })
            });
        }
        AuthOutcome::Invalid
    }

    // ----- token endpoints -----

    /// `client_key` and `client_secret` of the request, as the mock's.
    pub(crate) fn check_app_credentials(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<(), TokenError> {
        self.check_credentials(params)
    }

    fn check_client_key(&self, params: &HashMap<String, String>) -> Result<(), TokenError> {
        match params.get("client_key").map(String::as_str) {
            None | Some("") => Err(TokenError::parameter("Parameter error: client_key missing")),
            Some(k) if k != self.config.client_key => Err(TokenError::new(
                UNKNOWN_CLIENT_KEY,
                "client_key does not exist",
            )),
            Some(_) => Ok(()),
        }
    }

    fn check_credentials(&self, params: &HashMap<String, String>) -> Result<(), TokenError> {
        self.check_client_key(params)?;
        match params.get("client_secret").map(String::as_str) {
            None | Some("") => Err(TokenError::parameter(
                "Parameter error: client_secret missing",
            )),
            Some(s) if s != self.config.client_secret => Err(TokenError::new(
                BAD_SECRET,
                "client_key or client_secret is wrong",
            )),
            Some(_) => Ok(()),
        }
    }

    fn check_grant_type(
        params: &HashMap<String, String>,
        expected: &str,
    ) -> Result<(), TokenError> {
        match params.get("grant_type") {
            Some(g) if g != expected => Err(TokenError::parameter(format!(
                "Parameter error: grant_type must be {expected}"
            ))),
            _ => Ok(()),
        }
    }

    /// `/oauth/client_token/`: a new token each call; only the newest two stay valid.
    pub(crate) fn client_token(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, TokenError> {
        Self::check_grant_type(params, "client_credential")?;
        self.check_credentials(params)?;
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let window_start = now.checked_sub(self.config.rate_window);
        while inner
            .recent_client_calls
            .front()
            .is_some_and(|&t| window_start.is_some_and(|start| t <= start))
        {
            inner.recent_client_calls.pop_front();
        }
        if inner.recent_client_calls.len() >= self.config.rate_limit {
            return Err(TokenError::new(
                RENEW_LIMIT,
                "too many client_token requests: rate limited",
            ));
        }
        inner.recent_client_calls.push_back(now);
        let token = random_token("clt.");
        inner.client_tokens.push_back(Issued {
            token: token.clone(),
            expires_at: now + self.config.client_token_lifetime,
        });
        while inner.client_tokens.len() > 2 {
            inner.client_tokens.pop_front();
        }
        Ok(obj(json!({
            "access_token": token,
            "expires_in": self.config.client_token_lifetime.as_secs(),
        })))
    }

    /// `/oauth/stable_client_token/`: the same token while it is valid, a new one after.
    pub(crate) fn stable_client_token(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, TokenError> {
        Self::check_grant_type(params, "client_credential")?;
        self.check_credentials(params)?;
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let current = inner.stable.as_ref().filter(|t| t.is_valid(now));
        let (token, expires_in) = match current {
            Some(t) => (t.token.clone(), t.remaining_secs(now)),
            None => {
                let t = Issued {
                    token: random_token("clt."),
                    expires_at: now + self.config.client_token_lifetime,
                };
                let out = (t.token.clone(), t.remaining_secs(now));
                inner.stable = Some(t);
                out
            }
        };
        Ok(obj(
            json!({ "access_token": token, "expires_in": expires_in }),
        ))
    }

    /// `/oauth/access_token/`: exchanges a single-use code for a user's tokens.
    pub(crate) fn exchange_code(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, TokenError> {
        Self::check_grant_type(params, "authorization_code")?;
        self.check_credentials(params)?;
        let code = match params.get("code").map(String::as_str) {
            None | Some("") => return Err(TokenError::parameter("Parameter error: code missing")),
            Some(c) => c,
        };
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let pending = inner
            .codes
            .remove(code)
            .filter(|c| now < c.expires_at)
            .ok_or_else(|| {
                TokenError::new(CODE_EXPIRED, "authorization code expired or already used")
            })?;
        let grant = self.new_grant(now, pending.open_id, pending.scopes);
        let data = user_token_data(&grant, now);
        inner.grants.push(grant);
        Ok(data)
    }

    /// `/oauth/refresh_token/`: a new access token if the old one expired, else the same one
    /// with a later expiry. The refresh token is not extended.
    pub(crate) fn refresh(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, TokenError> {
        Self::check_grant_type(params, "refresh_token")?;
        self.check_client_key(params)?;
        let refresh_token = required(params, "refresh_token")?;
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let grant = find_live_grant(&mut inner.grants, refresh_token, now)?;
        if !grant.access.is_valid(now) {
            grant.access.token = random_token("act.");
        }
        grant.access.expires_at = now + self.config.access_token_lifetime;
        Ok(user_token_data(grant, now))
    }

    /// `/oauth/renew_refresh_token/`: a new refresh token, the old one dead at once, at most
    /// `max_renewals` times per authorisation.
    pub(crate) fn renew(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Map<String, Value>, TokenError> {
        self.check_client_key(params)?;
        let refresh_token = required(params, "refresh_token")?;
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let grant = find_live_grant(&mut inner.grants, refresh_token, now)?;
        if grant.renewals >= self.config.max_renewals {
            return Err(TokenError::new(
                RENEW_LIMIT,
                "refresh token renewal limit reached: the user must authorise again",
            ));
        }
        grant.renewals += 1;
        grant.refresh = Issued {
            token: random_token("rft."),
            expires_at: now + self.config.refresh_token_lifetime,
        };
        Ok(obj(json!({
            "refresh_token": grant.refresh.token,
            "expires_in": grant.refresh.remaining_secs(now),
        })))
    }
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, TokenError> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Err(TokenError::parameter(format!(
            "Parameter error: {name} missing"
        ))),
        Some(v) => Ok(v),
    }
}

fn find_live_grant<'a>(
    grants: &'a mut [Grant],
    refresh_token: &str,
    now: Instant,
) -> Result<&'a mut Grant, TokenError> {
    grants
        .iter_mut()
        .find(|g| g.refresh.token == refresh_token)
        .filter(|g| g.refresh.is_valid(now))
        .ok_or_else(|| {
            TokenError::new(
                REFRESH_EXPIRED,
                "refresh_token expired: the user must authorise again",
            )
        })
}

fn user_token_data(grant: &Grant, now: Instant) -> Map<String, Value> {
    obj(json!({
        "access_token": grant.access.token,
        "expires_in": grant.access.remaining_secs(now),
        "open_id": grant.open_id,
        "refresh_token": grant.refresh.token,
        "refresh_expires_in": grant.refresh.remaining_secs(now),
        "scope": grant.scopes.join(","),
        "log_id": log_id(),
        "captcha": "",
        "desc_url": "",
    }))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

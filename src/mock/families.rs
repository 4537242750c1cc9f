//! The token families beyond the OpenAPI client and user tokens: mini-app and mini-game app
//! tokens (plain and stable), business tokens and the `code2session` logins, each with its
//! rotation rules and answer shapes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::handlers::{json_response, read_params, Accepts};
use super::ids::{log_id, random_token};
use super::state::{AuthOutcome, Caller, State, TokenError, RENEW_LIMIT};
use super::types::TokenFailure;

/// A new app token cuts the previous ones to this (mini-app and mini-game plain tokens).
pub(crate) const APP_TOKEN_OVERLAP: Duration = Duration::from_secs(300);
/// Forced refreshes of the mini-game stable token allowed per 24 hours.
pub(crate) const FORCE_REFRESH_CAP: usize = 20;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// `appid` wrong (mini-app and mini-game token and login endpoints).
const BAD_APPID: i64 = 40_015;
/// `secret` wrong.
const BAD_APP_SECRET: i64 = 40_017;
/// A parameter is missing or wrong.
const APP_PARAMETER_ERROR: i64 = 40_014;
/// `grant_type` wrong.
const BAD_GRANT_TYPE: i64 = 40_020;
/// The login code is unknown, used or expired.
const BAD_LOGIN_CODE: i64 = 40_018;
/// The account did not authorise the scope (business token).
const SCOPE_MISSING: i64 = 2_190_004;
/// The business refresh token is unknown, replaced or expired.
const BIZ_REFRESH_EXPIRED: i64 = 10_010;

/// The endpoints this module serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FamilyEndpoint {
    /// POST `/api/apps/v2/token`.
    MiniAppToken,
    /// POST `/mgplatform/api/apps/v2/token`.
    MiniGameToken,
    /// POST `/mgplatform/api/apps/stable_token`.
    MiniGameStable,
    /// POST `/api/apps/v2/jscode2session`.
    MiniAppLogin,
    /// GET `/mgplatform/api/apps/jscode2session`.
    MiniGameLogin,
    /// POST `/oauth/business_token/`.
    BusinessToken,
    /// POST `/oauth/refresh_biz_token/`.
    RefreshBizToken,
}

impl FamilyEndpoint {
    /// The endpoint at `path` (trailing slash trimmed), if it is one of these.
    pub(crate) fn at(path: &str) -> Option<Self> {
        Some(match path {
            "/api/apps/v2/token" => Self::MiniAppToken,
            "/mgplatform/api/apps/v2/token" => Self::MiniGameToken,
            "/mgplatform/api/apps/stable_token" => Self::MiniGameStable,
            "/api/apps/v2/jscode2session" => Self::MiniAppLogin,
            "/mgplatform/api/apps/jscode2session" => Self::MiniGameLogin,
            "/oauth/business_token" => Self::BusinessToken,
            "/oauth/refresh_biz_token" => Self::RefreshBizToken,
            _ => return None,
        })
    }

    fn shape(self) -> Answer {
        match self {
            Self::MiniAppToken
            | Self::MiniGameToken
            | Self::MiniGameStable
            | Self::MiniAppLogin => Answer::ErrNo,
            Self::MiniGameLogin => Answer::Flat,
            Self::BusinessToken | Self::RefreshBizToken => Answer::Business,
        }
    }
}

/// How an endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// `{"err_no", "err_tips", "data": {…}}` (mini-app, mini-game tokens).
    ErrNo,
    /// `{"error", "errcode", "errmsg", "message", …fields}` (mini-game login).
    Flat,
    /// `{"data": {…}, "error_code", "message"}` (business tokens).
    Business,
}

struct Issued {
    token: String,
    expires_at: Instant,
}

impl Issued {
    fn new(prefix: &str, now: Instant, life: Duration) -> Self {
        Self {
            token: random_token(prefix),
            expires_at: now + life,
        }
    }

    fn remaining_secs(&self, now: Instant) -> u64 {
        let left = self.expires_at.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

struct BizGrant {
    open_id: String,
    scope: String,
    tokens: Vec<Issued>,
    refresh: Issued,
}

struct Login {
    openid: Option<String>,
    anonymous_openid: Option<String>,
    expires_at: Instant,
}

#[derive(Default)]
struct AppsInner {
    mini_app: VecDeque<Issued>,
    mini_game: VecDeque<Issued>,
    stable: Option<Issued>,
    forced: VecDeque<Instant>,
    biz: Vec<BizGrant>,
    logins: HashMap<String, Login>,
}

/// The state of this module's token families.
#[derive(Default)]
pub(crate) struct Apps {
    inner: Mutex<AppsInner>,
}

impl Apps {
    fn lock(&self) -> MutexGuard<'_, AppsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the mock thinks of an app or business token.
    pub(crate) fn lookup(&self, token: &str, now: Instant) -> AuthOutcome {
        let inner = self.lock();
        let judge = |t: &Issued, caller: Caller| {
            if now < t.expires_at {
                AuthOutcome::Valid(caller)
            } else {
                AuthOutcome::Expired
            }
        };
        if let Some(t) = inner.mini_app.iter().find(|t| t.token == token) {
            return judge(t, Caller::MiniApp);
        }
        if let Some(t) = inner
            .mini_game
            .iter()
            .chain(inner.stable.iter())
            .find(|t| t.token == token)
        {
            return judge(t, Caller::MiniGame);
        }
        for g in &inner.biz {
            if let Some(t) = g.tokens.iter().find(|t| t.token == token) {
                return judge(
                    t,
                    Caller::Business {
                        open_id: g.open_id.clone(),
                        scope: g.scope.clone(),
                    },
                );
            }
        }
        AuthOutcome::Invalid
    }

    pub(crate) fn expire_all(&self, now: Instant) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let biz = inner.biz.iter_mut().flat_map(|g| g.tokens.iter_mut());
        for t in inner
            .mini_app
            .iter_mut()
            .chain(inner.mini_game.iter_mut())
            .chain(inner.stable.iter_mut())
            .chain(biz)
        {
            t.expires_at = t.expires_at.min(now);
        }
    }

    pub(crate) fn expire_token(&self, token: &str, now: Instant) -> bool {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut found = false;
        let biz = inner
            .biz
            .iter_mut()
            .flat_map(|g| g.tokens.iter_mut().chain(std::iter::once(&mut g.refresh)));
        for t in inner
            .mini_app
            .iter_mut()
            .chain(inner.mini_game.iter_mut())
            .chain(inner.stable.iter_mut())
            .chain(biz)
        {
            if t.token == token {
                t.expires_at = t.expires_at.min(now);
                found = true;
            }
        }
        found
    }

    pub(crate) fn revoke_token(&self, token: &str) -> bool {
        let mut inner = self.lock();
        let before = inner.mini_app.len() + inner.mini_game.len() + inner.biz.len();
        let stable = inner.stable.as_ref().is_some_and(|t| t.token == token);
        if stable {
            inner.stable = None;
        }
        inner.mini_app.retain(|t| t.token != token);
        inner.mini_game.retain(|t| t.token != token);
        inner
            .biz
            .retain(|g| g.refresh.token != token && g.tokens.iter().all(|t| t.token != token));
        stable || inner.mini_app.len() + inner.mini_game.len() + inner.biz.len() < before
    }

    pub(crate) fn login_code(
        &self,
        openid: Option<String>,
        anonymous_openid: Option<String>,
        now: Instant,
        life: Duration,
    ) -> String {
        let code = random_token("login.");
        self.lock().logins.insert(
            code.clone(),
            Login {
                openid,
                anonymous_openid,
                expires_at: now + life,
            },
        );
        code
    }
}

fn error(code: i64, description: impl Into<String>) -> TokenError {
    TokenError {
        code,
        description: description.into(),
    }
}

/// Serves one of this module's endpoints.
pub(crate) async fn call(
    state: &State,
    endpoint: FamilyEndpoint,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    state.count(|c| match endpoint {
        FamilyEndpoint::MiniAppToken => c.mini_app_token_calls += 1,
        FamilyEndpoint::MiniGameToken => c.mini_game_token_calls += 1,
        FamilyEndpoint::MiniGameStable => c.mini_game_stable_token_calls += 1,
        FamilyEndpoint::MiniAppLogin | FamilyEndpoint::MiniGameLogin => c.code2session_calls += 1,
        FamilyEndpoint::BusinessToken => c.business_token_calls += 1,
        FamilyEndpoint::RefreshBizToken => c.biz_refresh_calls += 1,
    });
    let shape = endpoint.shape();
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(failure) = state.take_failure() {
        return match failure {
            TokenFailure::Code(code) => {
                let description = crate::douyin::codes::CodeKind::of(code).as_str();
                answer_error(shape, &error(code, description))
            }
            other => super::handlers::injected_failure(other),
        };
    }
    let method = if endpoint == FamilyEndpoint::MiniGameLogin {
        Method::GET
    } else {
        Method::POST
    };
    if req.method() != method {
        return answer_error(
            shape,
            &error(APP_PARAMETER_ERROR, format!("this endpoint takes {method}")),
        );
    }
    let accepts = if method == Method::GET {
        Accepts::Any
    } else {
        Accepts::Json
    };
    let params = match read_params(req, accepts).await {
        Ok(p) => p,
        Err(e) => return answer_error(shape, &e),
    };
    let result = match endpoint {
        FamilyEndpoint::MiniAppToken => app_token(state, &params, Family::MiniApp),
        FamilyEndpoint::MiniGameToken => app_token(state, &params, Family::MiniGame),
        FamilyEndpoint::MiniGameStable => stable_token(state, &params),
        FamilyEndpoint::MiniAppLogin | FamilyEndpoint::MiniGameLogin => login(state, &params),
        FamilyEndpoint::BusinessToken => business_token(state, &params),
        FamilyEndpoint::RefreshBizToken => refresh_biz_token(state, &params),
    };
    match result {
        Ok(data) => answer_ok(shape, data, state.numbers_as_strings()),
        Err(e) => answer_error(shape, &e),
    }
}

/// Every number of `v`, at any depth, as a string (as the official SDK's models declare them).
fn stringify_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => *v = Value::String(n.to_string()),
        Value::Object(m) => m.values_mut().for_each(stringify_numbers),
        Value::Array(a) => a.iter_mut().for_each(stringify_numbers),
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    MiniApp,
    MiniGame,
}

type Params = HashMap<String, String>;

fn check_app(state: &State, params: &Params, grant: bool) -> Result<(), TokenError> {
    let c = &state.config;
    match params.get("appid").map(String::as_str) {
        None | Some("") => return Err(error(APP_PARAMETER_ERROR, "appid missing")),
        Some(a) if a != c.client_key => return Err(error(BAD_APPID, "bad appid")),
        Some(_) => {}
    }
    match params.get("secret").map(String::as_str) {
        None | Some("") => return Err(error(APP_PARAMETER_ERROR, "secret missing")),
        Some(s) if s != c.client_secret => return Err(error(BAD_APP_SECRET, "bad secret")),
        Some(_) => {}
    }
    if grant && params.get("grant_type").map(String::as_str) != Some("client_credential") {
        return Err(error(BAD_GRANT_TYPE, "bad grant_type"));
    }
    Ok(())
}

/// A new plain app token; the previous ones live five more minutes at most.
fn app_token(state: &State, params: &Params, family: Family) -> Result<Value, TokenError> {
    check_app(state, params, true)?;
    let now = state.clock();
    let life = state.config.client_token_lifetime;
    let mut inner = state.apps.lock();
    let list = match family {
        Family::MiniApp => &mut inner.mini_app,
        Family::MiniGame => &mut inner.mini_game,
    };
    for old in list.iter_mut() {
        old.expires_at = old.expires_at.min(now + APP_TOKEN_OVERLAP);
    }
    list.retain(|t| now < t.expires_at);
    let prefix = match family {
        Family::MiniApp => "mat.",
        Family::MiniGame => "mgt.",
    };
    let t = Issued::new(prefix, now, life);
    let data = app_token_data(&t, now, family == Family::MiniGame);
    list.push_back(t);
    Ok(data)
}

fn app_token_data(t: &Issued, now: Instant, with_expires_at: bool) -> Value {
    let mut data = json!({ "access_token": t.token, "expires_in": t.remaining_secs(now) });
    if with_expires_at {
        let unix = super::handlers::now_ms() / 1000 + t.remaining_secs(now);
        data["expires_at"] = json!(unix);
    }
    data
}

/// The stable token: the same one while valid; `force_refresh` kills it at once, capped.
fn stable_token(state: &State, params: &Params) -> Result<Value, TokenError> {
    check_app(state, params, true)?;
    let force = params
        .get("force_refresh")
        .is_some_and(|v| v == "true" || v == "1");
    let now = state.clock();
    let life = state.config.client_token_lifetime;
    // Lock order: the state's lock is never taken while this one is held (the API path takes
    // the state's, then this one).
    let mut inner = state.apps.lock();
    let valid = inner.stable.as_ref().is_some_and(|t| now < t.expires_at);
    if force {
        while inner
            .forced
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= DAY)
        {
            inner.forced.pop_front();
        }
        if inner.forced.len() >= FORCE_REFRESH_CAP {
            return Err(error(RENEW_LIMIT, "force_refresh limit reached: 20 a day"));
        }
        inner.forced.push_back(now);
    }
    if force || !valid {
        inner.stable = Some(Issued::new("mgs.", now, life));
    }
    let t = inner
        .stable
        .as_ref()
        .ok_or_else(|| error(APP_PARAMETER_ERROR, "no stable token"))?;
    let data = app_token_data(t, now, true);
    drop(inner);
    if force {
        state.count(|c| c.mini_game_force_refreshes += 1);
    }
    Ok(data)
}

/// `code2session` for either family: a single-use login code becomes the user's ids.
fn login(state: &State, params: &Params) -> Result<Value, TokenError> {
    check_app(state, params, false)?;
    let code = params.get("code").filter(|c| !c.is_empty());
    let anonymous = params.get("anonymous_code").filter(|c| !c.is_empty());
    if code.is_none() && anonymous.is_none() {
        return Err(error(APP_PARAMETER_ERROR, "code or anonymous_code missing"));
    }
    let now = state.clock();
    let mut inner = state.apps.lock();
    let mut take = |c: Option<&String>| -> Result<Option<Login>, TokenError> {
        match c {
            None => Ok(None),
            Some(c) => inner
                .logins
                .remove(c)
                .filter(|l| now < l.expires_at)
                .map(Some)
                .ok_or_else(|| error(BAD_LOGIN_CODE, "bad code")),
        }
    };
    let by_code = take(code)?;
    let by_anonymous = take(anonymous)?;
    let openid = by_code.as_ref().and_then(|l| l.openid.clone());
    let anonymous_openid = by_anonymous
        .as_ref()
        .or(by_code.as_ref())
        .and_then(|l| l.anonymous_openid.clone());
    let mut data = json!({
        "openid": openid.clone().unwrap_or_default(),
        "anonymous_openid": anonymous_openid.unwrap_or_default(),
        "unionid": openid.as_ref().map(|o| format!("union-{o}")).unwrap_or_default(),
        "session_key": "",
    });
    if openid.is_some() {
        data["session_key"] = json!(random_token("sk."));
    }
    Ok(data)
}

/// `/oauth/business_token/`: a new business token and refresh token for an account that
/// authorised the scope; the account's previous refresh token for the scope dies.
fn business_token(state: &State, params: &Params) -> Result<Value, TokenError> {
    state.check_app_credentials(params)?;
    let open_id = required(params, "open_id")?;
    let scope = required(params, "scope")?;
    if !state.user_has_scope(open_id, scope) {
        return Err(error(
            SCOPE_MISSING,
            "the account has not authorised this scope",
        ));
    }
    let now = state.clock();
    let c = &state.config;
    let mut inner = state.apps.lock();
    let token = Issued::new("bzt.", now, c.business_token_lifetime);
    let refresh = Issued::new("bzr.", now, c.refresh_token_lifetime);
    let data = biz_data(&token, &refresh, now);
    match inner
        .biz
        .iter_mut()
        .find(|g| g.open_id == open_id && g.scope == scope)
    {
        Some(g) => {
            g.tokens.retain(|t| now < t.expires_at);
            g.tokens.push(token);
            g.refresh = refresh;
        }
        None => inner.biz.push(BizGrant {
            open_id: open_id.to_owned(),
            scope: scope.to_owned(),
            tokens: vec![token],
            refresh,
        }),
    }
    Ok(data)
}

/// `/oauth/refresh_biz_token/`: a new business token and a new refresh token; the old
/// refresh token dies at once (the old business token lives out its time).
fn refresh_biz_token(state: &State, params: &Params) -> Result<Value, TokenError> {
    state.check_app_credentials(params)?;
    let refresh_token = required(params, "refresh_token")?;
    let now = state.clock();
    let c = &state.config;
    let mut inner = state.apps.lock();
    let g = inner
        .biz
        .iter_mut()
        .find(|g| g.refresh.token == refresh_token && now < g.refresh.expires_at)
        .ok_or_else(|| error(BIZ_REFRESH_EXPIRED, "refresh_token expired or replaced"))?;
    let token = Issued::new("bzt.", now, c.business_token_lifetime);
    g.refresh = Issued::new("bzr.", now, c.refresh_token_lifetime);
    let data = biz_data(&token, &g.refresh, now);
    g.tokens.retain(|t| now < t.expires_at);
    g.tokens.push(token);
    Ok(data)
}

fn biz_data(token: &Issued, refresh: &Issued, now: Instant) -> Value {
    json!({
        "biz_token": token.token,
        "biz_expires_in": token.remaining_secs(now),
        "biz_refresh_token": refresh.token,
        "biz_refresh_expires_in": refresh.remaining_secs(now),
    })
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, TokenError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            error(
                super::state::PARAMETER_ERROR,
                format!("Parameter error: {name} missing"),
            )
        })
}

fn answer_ok(shape: Answer, data: Value, as_strings: bool) -> Response<Full<Bytes>> {
    let mut body = match shape {
        Answer::ErrNo => json!({ "err_no": 0, "err_tips": "success", "data": data }),
        Answer::Flat => {
            let mut top = json!({ "error": 0, "errcode": 0, "errmsg": "", "message": "" });
            if let (Value::Object(top), Value::Object(data)) = (&mut top, data) {
                top.extend(data);
            }
            top
        }
        Answer::Business => json!({ "data": data, "error_code": 0, "message": "success" }),
    };
    if as_strings {
        stringify_numbers(&mut body);
    }
    json_response(StatusCode::OK, &body)
}

fn answer_error(shape: Answer, e: &TokenError) -> Response<Full<Bytes>> {
    let body = match shape {
        Answer::ErrNo => json!({ "err_no": e.code, "err_tips": e.description, "data": null }),
        Answer::Flat => json!({
            "error": 1, "errcode": e.code, "errmsg": e.description, "message": e.description,
        }),
        Answer::Business => json!({
            "data": { "error_code": e.code, "description": e.description },
            "error_code": e.code, "message": e.description,
            "extra": { "logid": log_id(), "now": super::handlers::now_ms() },
        }),
    };
    json_response(StatusCode::OK, &body)
}

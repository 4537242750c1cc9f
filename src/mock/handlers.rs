//! HTTP routing and Douyin's body shapes for the mock server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::families::{self, FamilyEndpoint};
use super::ids::log_id;
use super::routes::{route_for, Place, Route, Shape};
use super::state::{AuthOutcome, Caller, Endpoint, State, TokenError, PARAMETER_ERROR};
use super::types::TokenFailure;

/// The largest request body the mock reads.
const BODY_LIMIT: usize = 1 << 20;

/// Which request bodies a token endpoint takes (query parameters are always read).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepts {
    /// JSON, form-urlencoded or query only (`/oauth/client_token/`).
    Any,
    /// JSON only (`/oauth/stable_client_token/`).
    Json,
    /// Form-urlencoded only (the user-token endpoints: Douyin insists on form).
    Form,
}

/// The server's one service function.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let trimmed = path.trim_end_matches('/');
    let token_endpoint = match trimmed {
        "/oauth/client_token" => Some((Endpoint::Client, Accepts::Any)),
        "/oauth/stable_client_token" => Some((Endpoint::Stable, Accepts::Json)),
        "/oauth/access_token" => Some((Endpoint::CodeExchange, Accepts::Form)),
        "/oauth/refresh_token" => Some((Endpoint::Refresh, Accepts::Form)),
        "/oauth/renew_refresh_token" => Some((Endpoint::Renew, Accepts::Form)),
        _ => None,
    };
    if let Some((endpoint, accepts)) = token_endpoint {
        return Ok(token_call(&state, endpoint, accepts, req).await);
    }
    if let Some(endpoint) = FamilyEndpoint::at(trimmed) {
        return Ok(families::call(&state, endpoint, req).await);
    }
    if trimmed == "/platform/oauth/connect" {
        return Ok(super::consent::handle(&state, req).await);
    }
    if trimmed.starts_with("/oauth") && trimmed != "/oauth/userinfo" {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &token_error_body(PARAMETER_ERROR, "no such endpoint"),
        ));
    }
    Ok(api_call(&state, route_for(trimmed), req).await)
}

// ----- token endpoints -----

async fn token_call(
    state: &State,
    endpoint: Endpoint,
    accepts: Accepts,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    state.count_token_call(endpoint);
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(failure) = state.take_failure() {
        return injected_failure(failure);
    }
    if req.method() != Method::POST {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &token_error_body(PARAMETER_ERROR, "this endpoint takes POST"),
        );
    }
    let params = match read_params(req, accepts).await {
        Ok(p) => p,
        Err(e) => return token_error(&e),
    };
    let result = match endpoint {
        Endpoint::Client => state.client_token(&params),
        Endpoint::Stable => state.stable_client_token(&params),
        Endpoint::CodeExchange => state.exchange_code(&params),
        Endpoint::Refresh => state.refresh(&params),
        Endpoint::Renew => state.renew(&params),
    };
    match result {
        Ok(mut data) => {
            data.insert("error_code".into(), json!(0));
            data.insert("description".into(), json!(""));
            let mut message = "success";
            if state.numbers_as_strings() {
                for v in data.values_mut() {
                    if let Value::Number(n) = v {
                        *v = Value::String(n.to_string());
                    }
                }
                message = "<nil>";
            }
            json_response(StatusCode::OK, &json!({ "data": data, "message": message }))
        }
        Err(e) => token_error(&e),
    }
}

pub(crate) fn injected_failure(failure: TokenFailure) -> Response<Full<Bytes>> {
    match failure {
        TokenFailure::Code(code) => {
            let description = crate::douyin::codes::CodeKind::of(code).as_str();
            json_response(StatusCode::OK, &token_error_body(code, description))
        }
        TokenFailure::HttpStatus(status) => {
            let mut resp = Response::new(Full::new(Bytes::from_static(
                b"<html><body>mock: injected HTTP failure</body></html>",
            )));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            resp
        }
        TokenFailure::Malformed => {
            let mut resp = Response::new(Full::new(Bytes::from_static(
                br#"{"data": {"access_token": "clt.trunc"#,
            )));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

fn token_error(e: &TokenError) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &token_error_body(e.code, &e.description))
}

fn token_error_body(code: i64, description: &str) -> Value {
    json!({
        "data": { "description": description, "error_code": code },
        "extra": { "logid": log_id(), "now": now_ms() },
    })
}

/// Reads query parameters, then the body (which wins on conflicts), as `accepts` allows.
pub(crate) async fn read_params(
    req: Request<Incoming>,
    accepts: Accepts,
) -> Result<HashMap<String, String>, TokenError> {
    let mut params = query_params(req.uri().query());
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(TokenError {
                code: PARAMETER_ERROR,
                description: format!("Parameter error: could not read the body: {e}"),
            })
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let is_json = if content_type.starts_with("application/json") {
        true
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        false
    } else {
        body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    };
    let wrong = match (accepts, is_json) {
        (Accepts::Json, false) => Some("Parameter error: this endpoint takes a JSON body"),
        (Accepts::Form, true) => {
            Some("Parameter error: this endpoint takes a form-urlencoded body, not JSON")
        }
        _ => None,
    };
    if let Some(description) = wrong {
        return Err(TokenError {
            code: PARAMETER_ERROR,
            description: description.into(),
        });
    }
    if is_json {
        let value: Value = serde_json::from_slice(&body).map_err(|_| TokenError {
            code: PARAMETER_ERROR,
            description: "Parameter error: the body is not valid JSON".into(),
        })?;
        let Value::Object(map) = value else {
            return Err(TokenError {
                code: PARAMETER_ERROR,
                description: "Parameter error: the JSON body is not an object".into(),
            });
        };
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            params.insert(k, v);
        }
    } else {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    Ok(params)
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

// ----- protected APIs -----

async fn api_call(state: &State, route: Route, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = query_params(req.uri().query());
    let path = req.uri().path().to_owned();
    let token = read_token(&route, &query, req).await;

    let outcome = state.check_api_token(token.as_deref(), route.takes);
    let shape = route.shape;
    let (code, description) = match &outcome {
        AuthOutcome::Valid(caller) => {
            if let (Some(open_id), Some(asked)) = (caller.open_id(), query.get("open_id")) {
                if asked != open_id {
                    return api_error(
                        shape,
                        StatusCode::OK,
                        route.mismatch,
                        "open_id does not match the access token",
                    );
                }
            }
            return api_success(shape, caller, &path, query.get("open_id"));
        }
        AuthOutcome::Expired => (
            route.expired,
            "access_token expired, please refresh or authorise again".to_owned(),
        ),
        AuthOutcome::Invalid => (route.invalid, "access_token is invalid".to_owned()),
        AuthOutcome::WrongKind(kind) => (
            route.invalid,
            format!("access_token is invalid: this API does not take a {kind:?} token"),
        ),
    };
    let status = if route.force_401 || state.answer_401() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    api_error(shape, status, code, &description)
}

/// The token from the first place, in the route's order, that holds one. Douyin reads no
/// other place: a token elsewhere (another header, `Authorization: Bearer`) is no token.
async fn read_token(
    route: &Route,
    query: &HashMap<String, String>,
    req: Request<Incoming>,
) -> Option<String> {
    let headers = req.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    for place in route.places {
        let found = match place {
            Place::Header => header("access-token"),
            Place::UnderscoreHeader => header("access_token"),
            Place::XToken => header("x-token"),
            Place::Query => query.get("access_token").cloned(),
            Place::Form => None,
        };
        if found.is_some() {
            return found;
        }
    }
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !(route.places.contains(&Place::Form) && is_form) {
        // The body is not needed; it is dropped unread (the connection handles the rest).
        return None;
    }
    let body = Limited::new(req.into_body(), BODY_LIMIT)
        .collect()
        .await
        .ok()?
        .to_bytes();
    form_urlencoded::parse(&body)
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

fn api_error(
    shape: Shape,
    status: StatusCode,
    code: i64,
    description: &str,
) -> Response<Full<Bytes>> {
    let body = match shape {
        Shape::DataExtra => json!({
            "data": { "error_code": code, "description": description },
            "extra": {
                "error_code": code, "description": description,
                "sub_error_code": 0, "sub_description": "",
                "logid": log_id(), "now": now_ms(),
            },
        }),
        Shape::ExtraOnly => json!({
            "data": {},
            "extra": {
                "error_code": code, "description": description,
                "logid": log_id(), "now": now_ms(),
            },
        }),
        Shape::ErrNo => json!({
            "err_no": code, "err_msg": description, "err_tips": description,
            "log_id": log_id(), "data": {},
        }),
        Shape::ErrCode => json!({ "errcode": code, "errmsg": description }),
    };
    json_response(status, &body)
}

fn api_success(
    shape: Shape,
    caller: &Caller,
    path: &str,
    asked_open_id: Option<&String>,
) -> Response<Full<Bytes>> {
    let mut data = Map::new();
    match caller {
        Caller::Client => {
            data.insert("token_type".into(), json!("client"));
            if let Some(open_id) = asked_open_id {
                data.insert("open_id".into(), json!(open_id));
            }
        }
        Caller::User { open_id, scopes } => {
            data.insert("token_type".into(), json!("user"));
            data.insert("open_id".into(), json!(open_id));
            data.insert("nickname".into(), json!(format!("mock user {open_id}")));
            data.insert("scope".into(), json!(scopes.join(",")));
        }
        Caller::MiniApp => {
            data.insert("token_type".into(), json!("mini_app"));
        }
        Caller::MiniGame => {
            data.insert("token_type".into(), json!("mini_game"));
        }
        Caller::Business { open_id, scope } => {
            data.insert("token_type".into(), json!("business"));
            data.insert("open_id".into(), json!(open_id));
            data.insert("scope".into(), json!(scope));
        }
    }
    data.insert("path".into(), json!(path));
    let body = match shape {
        Shape::DataExtra => {
            data.insert("error_code".into(), json!(0));
            data.insert("description".into(), json!(""));
            json!({
                "data": data,
                "extra": {
                    "error_code": 0, "description": "",
                    "sub_error_code": 0, "sub_description": "",
                    "logid": log_id(), "now": now_ms(),
                },
            })
        }
        Shape::ExtraOnly => json!({
            "data": data,
            "extra": { "error_code": 0, "description": "", "logid": log_id(), "now": now_ms() },
        }),
        Shape::ErrNo => json!({
            "err_no": 0, "err_msg": "success", "err_tips": "success", "log_id": log_id(),
            "data": data,
        }),
        Shape::ErrCode => json!({ "errcode": 0, "errmsg": "ok", "data": data }),
    };
    json_response(StatusCode::OK, &body)
}

// ----- helpers -----

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Wall-clock milliseconds, as Douyin's `extra.now`.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

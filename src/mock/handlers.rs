//! HTTP routing and Douyin's body shapes for the mock server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::ids::log_id;
use super::state::{AuthOutcome, Caller, Endpoint, State, TokenError, PARAMETER_ERROR};
use super::types::TokenFailure;

/// The largest request body the mock reads.
const BODY_LIMIT: usize = 1 << 20;

/// Which request bodies a token endpoint takes (query parameters are always read).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accepts {
    /// JSON, form-urlencoded or query only (`/oauth/client_token/`).
    Any,
    /// JSON only (`/oauth/stable_client_token/`).
    Json,
    /// Form-urlencoded only (the user-token endpoints: Douyin insists on form).
    Form,
}

/// The body shape a protected API answers in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// `data.error_code` and `extra.error_code` (most OpenAPI).
    DataExtra,
    /// Code only in `extra` (`/goodlife/`).
    ExtraOnly,
    /// `err_no` / `err_msg` (`/api/`).
    ErrNo,
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
    if trimmed == "/platform/oauth/connect" {
        return Ok(super::consent::handle(&state, req).await);
    }
    if trimmed.starts_with("/oauth") && trimmed != "/oauth/userinfo" {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &token_error_body(PARAMETER_ERROR, "no such endpoint"),
        ));
    }
    let (shape, force_401) = if trimmed.starts_with("/goodlife/") {
        (Shape::ExtraOnly, false)
    } else if trimmed.starts_with("/api/") {
        (Shape::ErrNo, false)
    } else if trimmed.starts_with("/test/401/") || trimmed == "/test/401" {
        (Shape::DataExtra, true)
    } else {
        (Shape::DataExtra, false)
    };
    Ok(api_call(&state, shape, force_401, req).await)
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

fn injected_failure(failure: TokenFailure) -> Response<Full<Bytes>> {
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
async fn read_params(
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

async fn api_call(
    state: &State,
    shape: Shape,
    force_401: bool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let query = query_params(req.uri().query());
    let headers = req.headers();
    let token = headers
        .get("access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|v| v.trim().to_owned())
        })
        .or_else(|| query.get("access_token").cloned());
    let path = req.uri().path().to_owned();
    // The body is not needed; it is dropped unread (the connection handles the rest).
    drop(req);

    let outcome = state.check_api_token(token.as_deref());
    let (code, description) = match &outcome {
        AuthOutcome::Valid(caller) => {
            if let (Caller::User { open_id, .. }, Some(asked)) = (caller, query.get("open_id")) {
                if asked != open_id {
                    let code = match shape {
                        Shape::ErrNo => 28_001_015,
                        _ => 2_190_015,
                    };
                    return api_error(
                        shape,
                        StatusCode::OK,
                        code,
                        "open_id does not match the access token",
                    );
                }
            }
            return api_success(shape, caller, &path, query.get("open_id"));
        }
        AuthOutcome::Expired => (
            match shape {
                Shape::ErrNo => 28_001_008,
                _ => 2_190_008,
            },
            "access_token expired, please refresh or authorise again",
        ),
        AuthOutcome::Invalid => (
            match shape {
                Shape::ErrNo => 28_001_003,
                _ => 2_190_002,
            },
            "access_token is invalid",
        ),
    };
    let status = if force_401 || state.answer_401() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    api_error(shape, status, code, description)
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
            "err_no": code, "err_msg": description, "log_id": log_id(), "data": {},
        }),
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
            "err_no": 0, "err_msg": "success", "log_id": log_id(), "data": data,
        }),
    };
    json_response(StatusCode::OK, &body)
}

// ----- helpers -----

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Wall-clock milliseconds, as Douyin's `extra.now`.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

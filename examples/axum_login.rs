//! "Log in with Douyin": a complete OAuth authorization-code flow in an axum app, against the
//! embedded mock Douyin server.
//!
//! Run it with `cargo run --example axum_login --features axum`. The app
//!
//! 1. `GET /login`: makes the authorization URL with a fresh CSRF `state`, keeps the state in
//!    the browser's (in-memory) session and redirects to Douyin;
//! 2. `GET /callback?code=..&state=..`: checks the state against the session's in constant
//!    time (single use), exchanges the code for the user's tokens, stores them (in memory:
//!    your database) and logs the user in;
//! 3. `GET /me`: calls a user API (`/oauth/userinfo/`) on the user's behalf through a layer
//!    built from the user's `UserTokens`, which refreshes the access token when Douyin says it
//!    expired and writes every refreshed pair back to the store first.
//!
//! `main` plays the browser: it follows the redirect by asking the mock to authorize (the mock
//! renders no consent page), proves that a forged `state` is rejected, logs in, calls `/me`,
//! lets the user's access token expire and calls `/me` again. Then it exits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use douyin_auth::douyin::{verify_state, HttpsClient, OAuthClient};
use douyin_auth::mock::MockDouyin;
use douyin_auth::{BoxError, DouyinAuth, DouyinAuthLayer, Token};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Http = Client<HttpConnector, Full<Bytes>>;
/// A client that acts for one user.
type UserClient = DouyinAuth<Http>;

#[derive(Default)]
struct Session {
    /// The `state` of the login in progress, if any; used once.
    pending_state: Option<douyin_auth::douyin::State>,
    /// The user logged in with this session.
    open_id: Option<String>,
}

#[derive(Clone)]
struct App {
    oauth: OAuthClient<HttpsClient>,
    douyin_base: String,
    redirect_uri: String,
    http: Http,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// Your database: each user's current tokens, written before they are used.
    token_store: Arc<Mutex<HashMap<String, Token>>>,
    /// One layered client per logged-in user (one token cache per user).
    users: Arc<Mutex<HashMap<String, UserClient>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The session id from the `sid` cookie.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sid=").map(str::to_owned))
}

async fn login(State(app): State<App>) -> Result<Response, (StatusCode, String)> {
    let failed = |e: douyin_auth::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let (url, state) = app
        .oauth
        .authorization_url(app.redirect_uri.clone())
        .scope("user_info")
        .build()
        .map_err(failed)?;
    let sid = douyin_auth::douyin::State::generate().map_err(failed)?;
    let sid = sid.as_str().to_owned();
    lock(&app.sessions).insert(
        sid.clone(),
        Session {
            pending_state: Some(state),
            open_id: None,
        },
    );
    let mut response = Redirect::to(&url).into_response();
    let cookie = format!("sid={sid}; HttpOnly; SameSite=Lax; Path=/");
    if let Ok(v) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
struct Callback {
    code: String,
    state: String,
}

async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(cb): Query<Callback>,
) -> Result<String, (StatusCode, String)> {
    let forbidden = |why: &str| (StatusCode::BAD_REQUEST, why.to_owned());
    let sid = session_id(&headers).ok_or_else(|| forbidden("no session"))?;
    // The state is taken out of the session: one callback per login, right or wrong.
    let expected = lock(&app.sessions)
        .get_mut(&sid)
        .and_then(|s| s.pending_state.take())
        .ok_or_else(|| forbidden("no login in progress"))?;
    if !verify_state(&expected, &cb.state) {
        return Err(forbidden("state mismatch: possible CSRF, login refused"));
    }

    let token = app
        .oauth
        .exchange_code(&cb.code)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let open_id = token.open_id().unwrap_or_default().to_owned();
    lock(&app.token_store).insert(open_id.clone(), token.clone());

    // The user's token source: hands out the fresh token of the exchange first, then refreshes
    // with the refresh token and persists every new pair before it is used.
    let store = Arc::clone(&app.token_store);
    let source = app.oauth.user_tokens(token).on_refresh(move |t: Token| {
        let store = Arc::clone(&store);
        async move {
            let id = t.open_id().unwrap_or_default().to_owned();
            lock(&store).insert(id, t);
            Ok::<_, BoxError>(())
        }
    });
    let client = DouyinAuthLayer::new(source).layer(app.http.clone());
    lock(&app.users).insert(open_id.clone(), client);
    if let Some(s) = lock(&app.sessions).get_mut(&sid) {
        s.open_id = Some(open_id.clone());
    }
    Ok(format!("logged in as {open_id}"))
}

async fn me(State(app): State<App>, headers: HeaderMap) -> Result<Response, (StatusCode, String)> {
    let unauthorized = || (StatusCode::UNAUTHORIZED, "log in first".to_owned());
    let sid = session_id(&headers).ok_or_else(unauthorized)?;
    let open_id = lock(&app.sessions)
        .get(&sid)
        .and_then(|s| s.open_id.clone())
        .ok_or_else(unauthorized)?;
    let client = lock(&app.users)
        .get(&open_id)
        .cloned()
        .ok_or_else(unauthorized)?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("open_id", &open_id)
        .finish();
    let request = http::Request::get(format!("{}/oauth/userinfo/?{query}", app.douyin_base))
        .body(Full::<Bytes>::default())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let answer = client
        .oneshot(request)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
    let (parts, body) = answer.into_parts();
    let mut response = Response::new(axum::body::Body::new(body));
    *response.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, ct.clone());
    }
    Ok(response)
}

// ----- the browser -----

struct Browser {
    http: Http,
    cookie: Option<String>,
}

impl Browser {
    async fn get(&mut self, url: &str) -> Result<(StatusCode, HeaderMap, String), BoxError> {
        let mut req = http::Request::get(url);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c.as_str());
        }
        let res = self.http.request(req.body(Full::default())?).await?;
        let (parts, body) = res.into_parts();
        if let Some(set) = parts.headers.get(header::SET_COOKIE) {
            let pair = set.to_str()?.split(';').next().unwrap_or_default();
            self.cookie = Some(pair.to_owned());
        }
        let body = body.collect().await?.to_bytes();
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    /// `GET /login`, returns the `state` and `redirect_uri` of the Douyin URL it redirects to.
    async fn start_login(
        &mut self,
        app_url: &str,
        douyin: &str,
    ) -> Result<(String, String), BoxError> {
        let (status, headers, _) = self.get(&format!("{app_url}/login")).await?;
        assert!(status.is_redirection(), "{status}");
        let location = headers
            .get(header::LOCATION)
            .ok_or("no Location")?
            .to_str()?;
        assert!(location.starts_with(&format!("{douyin}/platform/oauth/connect/?")));
        let query = location.split_once('?').map(|x| x.1).unwrap_or_default();
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Ok((params["state"].clone(), params["redirect_uri"].clone()))
    }
}

fn callback_url(redirect_uri: &str, code: &str, state: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .append_pair("state", state)
        .finish();
    format!("{redirect_uri}?{query}")
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mock = MockDouyin::start().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let http: Http = Client::builder(TokioExecutor::new()).build_http();

    let app = App {
        oauth: OAuthClient::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url()),
        douyin_base: mock.base_url(),
        redirect_uri: format!("{app_url}/callback"),
        http: http.clone(),
        sessions: Arc::default(),
        token_store: Arc::default(),
        users: Arc::default(),
    };
    let token_store = Arc::clone(&app.token_store);
    let router = Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/me", get(me))
        .with_state(app);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    println!("app on {app_url}, mock Douyin on {}", mock.base_url());

    // An attacker's forged callback: the state does not match the session's.
    let mut victim = Browser {
        http: http.clone(),
        cookie: None,
    };
    let (_, redirect_uri) = victim.start_login(&app_url, &mock.base_url()).await?;
    let code = mock.authorize("alice-open-id", ["user_info"]);
    let forged = callback_url(&redirect_uri, &code, "attacker-chosen-state");
    let (status, _, body) = victim.get(&forged).await?;
    println!("forged callback      -> {status} {body}");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        mock.counters().code_exchanges,
        0,
        "the code was not exchanged"
    );

    // The real login.
    let mut browser = Browser { http, cookie: None };
    let (state, redirect_uri) = browser.start_login(&app_url, &mock.base_url()).await?;
    println!(
        "GET /login           -> redirect to Douyin's consent page (state kept in the session)"
    );
    let code = mock.authorize("alice-open-id", ["user_info"]);
    println!("the user consents    -> Douyin redirects back with a code");
    let (status, _, body) = browser
        .get(&callback_url(&redirect_uri, &code, &state))
        .await?;
    println!("GET /callback        -> {status} {body}");
    assert_eq!(status, StatusCode::OK);
    assert!(lock(&token_store).contains_key("alice-open-id"));

    // Replaying the callback fails: the state is single-use.
    let (status, _, _) = browser
        .get(&callback_url(&redirect_uri, &code, &state))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, body) = browser.get(&format!("{app_url}/me")).await?;
    println!("GET /me              -> {status} {body}");
    assert!(body.contains(r#""open_id":"alice-open-id""#), "{body}");
    let first_token = lock(&token_store)["alice-open-id"].clone();

    mock.expire_all_tokens();
    println!("the user's access token expires on Douyin's side");
    let (status, _, body) = browser.get(&format!("{app_url}/me")).await?;
    println!("GET /me              -> {status} {body}");
    assert!(body.contains(r#""error_code":0"#), "{body}");
    let stored = lock(&token_store)["alice-open-id"].clone();
    assert!(stored.expires_at() > first_token.expires_at());

    let c = mock.counters();
    println!(
        "code exchanges: {}, refreshes: {}, user API calls: {} ({} answered \"expired\" and were retried)",
        c.code_exchanges, c.refresh_calls, c.api_calls, c.api_expired
    );
    assert_eq!(c.code_exchanges, 1);
    assert_eq!(c.refresh_calls, 1);
    assert_eq!(c.api_expired, 1);

    server.abort();
    mock.shutdown().await;
    Ok(())
}

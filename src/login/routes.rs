//! The two routes of [`DouyinLogin`](super::DouyinLogin): `GET /login` and `GET /callback`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};

use super::cookie;
use super::error::LoginError;
use super::flow::Inner;
use super::hooks::LoggedIn;
use crate::douyin::codes::CodeKind;
use crate::douyin::{HttpClient, State};
use crate::error::Error;
use crate::store::shared::timed;
use crate::store::TokenStore;
use crate::users::StoredUsers;

/// `GET /login`: a fresh state in the signed cookie, and the redirect to Douyin.
pub(super) async fn start<C: HttpClient, St: TokenStore>(
    Shared(inner): Shared<Arc<Inner<C, St>>>,
) -> Response {
    match start_login(&inner) {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(target: "douyin_auth", kind = err.kind(), error = %err, "login start failed");
            (inner.on_error)(err).await
        }
    }
}

fn start_login<C, St>(inner: &Inner<C, St>) -> Result<Response, LoginError> {
    let state = State::generate().map_err(LoginError::Start)?;
    let ttl = inner.state_ttl.as_secs();
    let expires = cookie::now_secs().saturating_add(ttl);
    let value = cookie::seal(&inner.key, state.as_str(), expires)
        .ok_or_else(|| LoginError::Start(Error::Protocol("signing the state failed".into())))?;
    let (url, _) = inner
        .oauth
        .authorization_url(inner.redirect_uri.clone())
        .scopes(inner.scopes.iter().cloned())
        .state(state)
        .build()
        .map_err(LoginError::Start)?;
    let bad_header = || LoginError::Start(Error::Protocol("a header value is invalid".into()));
    let location = HeaderValue::try_from(url).map_err(|_| bad_header())?;
    let set_cookie =
        cookie::set(&value, ttl, &inner.cookie_path, inner.secure).ok_or_else(bad_header)?;
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    headers.insert(SET_COOKIE, set_cookie);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::debug!(target: "douyin_auth", "login started");
    Ok(response)
}

/// `GET /callback`: the checks, the exchange, the store, then the app's hook.
pub(super) async fn callback<C: HttpClient, St: TokenStore>(
    Shared(inner): Shared<Arc<Inner<C, St>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = match complete(&inner, &uri, headers).await {
        Ok(user) => {
            tracing::info!(target: "douyin_auth", open_id = %user.open_id, "login completed");
            (inner.on_login)(user).await
        }
        Err(err) => {
            tracing::warn!(target: "douyin_auth", kind = err.kind(), error = %err, "login refused");
            (inner.on_error)(err).await
        }
    };
    let out = response.headers_mut();
    if let Some(clear) = cookie::clear(&inner.cookie_path, inner.secure) {
        out.append(SET_COOKIE, clear);
    }
    if !out.contains_key(CACHE_CONTROL) {
        out.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn complete<C: HttpClient, St: TokenStore>(
    inner: &Inner<C, St>,
    uri: &Uri,
    headers: HeaderMap,
) -> Result<LoggedIn, LoginError> {
    let params = query(uri);
    if let Some(denied) = denial(&params) {
        return Err(denied);
    }
    let state_param = params
        .get("state")
        .filter(|s| !s.is_empty())
        .ok_or(LoginError::MissingState)?;
    let values = cookie::values(&headers);
    if values.is_empty() {
        return Err(LoginError::MissingState);
    }
    let now = cookie::now_secs();
    let mut refused = LoginError::InvalidState;
    let mut opened = None;
    for value in values {
        match cookie::open(&inner.key, value, state_param, now) {
            Ok(o) => {
                opened = Some(o);
                break;
            }
            Err(LoginError::ExpiredState) => refused = LoginError::ExpiredState,
            Err(_) => {}
        }
    }
    let opened = opened.ok_or(refused)?;
    if !inner.used.first_use(&opened.state, opened.expires, now) {
        return Err(LoginError::ReplayedState);
    }
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(LoginError::MissingCode)?;
    let token = match inner.oauth.exchange_code(code).await {
        Ok(token) => token,
        Err(Error::Douyin(d)) if d.kind() == CodeKind::CodeExpired => {
            return Err(LoginError::CodeExpired(d))
        }
        Err(e) => return Err(LoginError::Exchange(e)),
    };
    let open_id = token
        .open_id()
        .ok_or_else(|| LoginError::Exchange(Error::Protocol("the token has no open_id".into())))?
        .to_owned();
    let key = StoredUsers::<(), St>::key_for(&open_id);
    timed(inner.store_timeout, inner.store.put(&key, &token))
        .await
        .map_err(LoginError::Store)?;
    Ok(LoggedIn {
        open_id,
        token,
        headers,
    })
}

/// The query's parameters; the first of repeated names wins.
fn query(uri: &Uri) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// Douyin's error parameters, if the callback carries some: `error` (OAuth 2.0, RFC 6749
/// 4.1.2.1), or a non-zero `error_code` / `errCode`; the description from
/// `error_description` or `description`.
fn denial(params: &HashMap<String, String>) -> Option<LoginError> {
    let error = params.get("error").filter(|e| !e.is_empty()).or_else(|| {
        ["error_code", "errCode"]
            .iter()
            .filter_map(|k| params.get(*k))
            .find(|c| !c.is_empty() && c.as_str() != "0")
    })?;
    let description = ["error_description", "description"]
        .iter()
        .filter_map(|k| params.get(*k))
        .find(|d| !d.is_empty())
        .cloned();
    Some(LoginError::Denied {
        error: error.clone(),
        description,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::douyin::OAuthClient;
    use crate::login::{DouyinLogin, LoginKey};
    use crate::store::{Lease, MemoryStore};
    use crate::{BoxError, Token};
    use axum::Router;
    use std::time::Duration;

    const EXCHANGED: &str = r#"{"data": {"access_token": "act.A", "description": "", "error_code": 0,
        "expires_in": 1296000, "open_id": "open-9", "refresh_expires_in": 2592000,
        "refresh_token": "rft.R", "scope": "user_info"}, "message": "success"}"#;
    const CODE_EXPIRED: &str = r#"{"data": {"description": "code expired", "error_code": 10007},
        "extra": {"logid": "L", "now": 1}}"#;

    fn key() -> LoginKey {
        LoginKey::from_bytes(&[9u8; 32]).unwrap()
    }

    /// The forms of the requests the HTTP mock saw.
    type Seen = Arc<std::sync::Mutex<Vec<Vec<(String, String)>>>>;

    /// An HTTP client that records each request's form and plays `answers` in turn.
    #[allow(clippy::type_complexity)]
    fn mock(answers: Vec<(u16, &'static str)>) -> (impl HttpClient, Seen) {
        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};
        let seen: Seen = Arc::default();
        let answers = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            answers,
        )));
        let log = Arc::clone(&seen);
        let client = tower::service_fn(move |req: Request<Full<Bytes>>| {
            let (log, answers) = (Arc::clone(&log), Arc::clone(&answers));
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                let form = form_urlencoded::parse(&body).into_owned().collect();
                log.lock().unwrap().push(form);
                let (status, text) = answers.lock().unwrap().pop_front().unwrap_or((500, "{}"));
                let mut response =
                    http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                *response.status_mut() = StatusCode::from_u16(status)?;
                Ok::<_, BoxError>(response)
            }
        });
        (client, seen)
    }

    /// A login over a recorded HTTP mock; the hook answers whether the user's tokens were in
    /// the store when it ran, and counts its calls.
    fn app_with<St: TokenStore + Clone>(
        answers: Vec<(u16, &'static str)>,
        store: St,
    ) -> (Router, Seen, Arc<AtomicUsize>) {
        let (client, seen) = mock(answers);
        let oauth = OAuthClient::with_client("key1", "SECRET", client);
        let hooks = Arc::new(AtomicUsize::new(0));
        let (count, read) = (Arc::clone(&hooks), store.clone());
        let login = DouyinLogin::builder(oauth, store)
            .redirect_uri("https://app.example/auth/callback")
            .scope("user_info")
            .key(key())
            .on_login(move |user: LoggedIn| {
                count.fetch_add(1, Ordering::SeqCst);
                let read = read.clone();
                async move {
                    let key = StoredUsers::<(), St>::key_for(user.open_id());
                    let stored = read.get(&key).await.ok().flatten();
                    let stored = stored.is_some_and(|t| t.secret() == "act.A");
                    format!("hello {} stored={stored}", user.open_id())
                }
            })
            .build()
            .unwrap();
        (login.router(), seen, hooks)
    }

    fn app(answers: Vec<(u16, &'static str)>) -> (Router, Seen, Arc<AtomicUsize>) {
        app_with(answers, MemoryStore::new())
    }

    async fn get(app: &Router, uri: &str, cookie: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(http::header::COOKIE, c);
        }
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// `GET /login`: the `Cookie` header to send back and the state in the Location.
    async fn start_login(app: &Router) -> (String, String) {
        let r = get(app, "/login", None).await;
        let set = r.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap().to_owned();
        let location = r.headers()[LOCATION].to_str().unwrap();
        let (_, q) = location.split_once('?').unwrap();
        let state = form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        (pair, state)
    }

    fn callback_uri(code: &str, state: &str) -> String {
        format!("/callback?code={code}&state={state}")
    }

    async fn error_kind(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let body = body(response).await;
        let kind = body
            .split("data-kind=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("none")
            .to_owned();
        (status, kind)
    }

    #[tokio::test]
    async fn login_redirects_to_douyin_with_a_signed_state_cookie() {
        let (app, seen, _) = app(vec![]);
        let r = get(&app, "/login", None).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let location = r.headers()[LOCATION].to_str().unwrap();
        let (base, q) = location.split_once('?').unwrap();
        assert_eq!(base, "https://open.douyin.com/platform/oauth/connect/");
        let q: HashMap<String, String> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        assert_eq!(q["client_key"], "key1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["scope"], "user_info");
        assert_eq!(q["redirect_uri"], "https://app.example/auth/callback");
        let set = r.headers()[SET_COOKIE].to_str().unwrap();
        let (pair, attributes) = set.split_once("; ").unwrap();
        assert_eq!(
            attributes,
            "Max-Age=600; Path=/auth/callback; HttpOnly; SameSite=Lax; Secure"
        );
        let value = pair.strip_prefix("douyin_login_state=").unwrap();
        let opened = cookie::open(&key(), value, &q["state"], cookie::now_secs()).unwrap();
        assert_eq!(opened.state, q["state"]);
        let (_, second) = start_login(&app).await;
        assert_ne!(second, q["state"], "a fresh state per login");
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_callback_writes_the_tokens_before_the_hook_runs() {
        let (app, seen, hooks) = app(vec![(200, EXCHANGED)]);
        let (cookie, state) = start_login(&app).await;
        let r = get(&app, &callback_uri("CODE1", &state), Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let cleared: Vec<_> = r.headers().get_all(SET_COOKIE).iter().collect();
        assert_eq!(
            cleared,
            ["douyin_login_state=; Max-Age=0; Path=/auth/callback; HttpOnly; SameSite=Lax; Secure"]
        );
        assert_eq!(body(r).await, "hello open-9 stored=true");
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains(&("code".into(), "CODE1".into())));
    }

    #[tokio::test]
    async fn a_callback_is_used_once() {
        let (app, seen, hooks) = app(vec![(200, EXCHANGED), (200, EXCHANGED)]);
        let (cookie, state) = start_login(&app).await;
        let uri = callback_uri("CODE1", &state);
        assert_eq!(
            get(&app, &uri, Some(&cookie)).await.status(),
            StatusCode::OK
        );
        let (status, kind) = error_kind(get(&app, &uri, Some(&cookie)).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_REQUEST, "replayed_state")
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "no second exchange");
        assert_eq!(hooks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_tampered_or_foreign_state_is_refused_before_any_exchange() {
        let (app, seen, hooks) = app(vec![(200, EXCHANGED)]);
        let (cookie, state) = start_login(&app).await;
        let (other_cookie, other_state) = start_login(&app).await;
        let value = cookie.strip_prefix("douyin_login_state=").unwrap();
        let (_, rest) = value.split_once('.').unwrap();
        let (expires, tag) = rest.split_once('.').unwrap();
        let later: u64 = expires.parse::<u64>().unwrap() + 3600;
        let extended = format!("douyin_login_state={state}.{later}.{tag}");
        // A key of the attacker's own signs a cookie for a state of the attacker's choice.
        let attacker = LoginKey::from_bytes(&[1u8; 32]).unwrap();
        let chosen = "a".repeat(64);
        let forged = format!(
            "douyin_login_state={}",
            cookie::seal(&attacker, &chosen, later).unwrap()
        );
        for (what, cookie, state) in [
            ("extended expiry", extended.as_str(), state.as_str()),
            (
                "another login's state",
                cookie.as_str(),
                other_state.as_str(),
            ),
            (
                "another login's cookie",
                other_cookie.as_str(),
                state.as_str(),
            ),
            ("attacker's key", forged.as_str(), chosen.as_str()),
            ("attacker-chosen state", cookie.as_str(), "attacker-chosen"),
        ] {
            let (status, kind) =
                error_kind(get(&app, &callback_uri("C", state), Some(cookie)).await).await;
            assert_eq!(
                (status, kind.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_state"),
                "{what}"
            );
        }
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(hooks.load(Ordering::SeqCst), 0);
        // The genuine pair still works.
        let r = get(&app, &callback_uri("C", &state), Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_expired_state_is_refused() {
        let (app, seen, _) = app(vec![(200, EXCHANGED)]);
        let state = "b".repeat(64);
        let past = cookie::now_secs() - 1;
        let cookie = format!(
            "douyin_login_state={}",
            cookie::seal(&key(), &state, past).unwrap()
        );
        let (status, kind) =
            error_kind(get(&app, &callback_uri("C", &state), Some(&cookie)).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_REQUEST, "expired_state")
        );
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn no_cookie_or_no_state_is_no_login_in_progress() {
        let (app, seen, _) = app(vec![]);
        let (cookie, state) = start_login(&app).await;
        let (_, kind) = error_kind(get(&app, &callback_uri("C", &state), None).await).await;
        assert_eq!(kind, "missing_state");
        let (_, kind) = error_kind(get(&app, "/callback?code=C", Some(&cookie)).await).await;
        assert_eq!(kind, "missing_state");
        let (_, kind) =
            error_kind(get(&app, &format!("/callback?state={state}"), Some(&cookie)).await).await;
        assert_eq!(kind, "missing_code");
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn douyins_error_parameters_are_a_denial() {
        let (app, seen, hooks) = app(vec![]);
        let (cookie, state) = start_login(&app).await;
        let uri = format!(
            "/callback?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state={state}"
        );
        let r = get(&app, &uri, Some(&cookie)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let page = body(r).await;
        assert!(page.contains("data-kind=\"denied\""), "{page}");
        assert!(
            page.contains("access_denied") && page.contains("&lt;b&gt;no&lt;/b&gt;"),
            "{page}"
        );
        let r = get(
            &app,
            "/callback?error_code=10004&description=scope",
            Some(&cookie),
        )
        .await;
        assert_eq!(error_kind(r).await.1, "denied");
        // error_code=0 is no error: the callback goes on (and finds no code).
        let r = get(
            &app,
            &format!("/callback?error_code=0&state={state}"),
            Some(&cookie),
        )
        .await;
        assert_eq!(error_kind(r).await.1, "missing_code");
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(hooks.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_expired_code_gets_its_own_error() {
        let (app, _, hooks) = app(vec![(200, CODE_EXPIRED)]);
        let (cookie, state) = start_login(&app).await;
        let r = get(&app, &callback_uri("OLD", &state), Some(&cookie)).await;
        let (status, kind) = error_kind(r).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::BAD_REQUEST, "code_expired")
        );
        assert_eq!(hooks.load(Ordering::SeqCst), 0);
    }

    #[derive(Clone)]
    struct DownStore;

    impl TokenStore for DownStore {
        async fn get(&self, _: &str) -> Result<Option<Token>, BoxError> {
            Err("down".into())
        }
        async fn put(&self, _: &str, _: &Token) -> Result<(), BoxError> {
            Err("down".into())
        }
        async fn try_lease(&self, _: &str, _: Duration) -> Result<Option<Lease>, BoxError> {
            Err("down".into())
        }
        async fn put_if_leased(&self, _: &str, _: &Lease, _: &Token) -> Result<bool, BoxError> {
            Err("down".into())
        }
        async fn extend(&self, _: &str, _: &Lease, _: Duration) -> Result<bool, BoxError> {
            Err("down".into())
        }
        async fn release(&self, _: &str, _: &Lease) -> Result<(), BoxError> {
            Err("down".into())
        }
    }

    #[tokio::test]
    async fn a_failed_store_write_refuses_the_login() {
        let (app, _, hooks) = app_with(vec![(200, EXCHANGED)], DownStore);
        let (cookie, state) = start_login(&app).await;
        let r = get(&app, &callback_uri("C", &state), Some(&cookie)).await;
        let (status, kind) = error_kind(r).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "store_failed")
        );
        assert_eq!(
            hooks.load(Ordering::SeqCst),
            0,
            "the hook never runs without stored tokens"
        );
    }

    #[tokio::test]
    async fn the_error_hook_replaces_the_page_and_the_cookie_is_still_cleared() {
        let (client, _) = mock(vec![]);
        let login = DouyinLogin::builder(
            OAuthClient::with_client("k", "s", client),
            MemoryStore::new(),
        )
        .redirect_uri("http://127.0.0.1:3000/callback")
        .scope("user_info")
        .on_login(|_: LoggedIn| async { "in" })
        .on_error(|e: LoginError| async move { (StatusCode::IM_A_TEAPOT, e.kind()) })
        .build()
        .unwrap();
        assert!(!login.secure_cookie());
        let app: Router = login.router();
        let r = get(&app, "/callback?state=x", None).await;
        assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(
            r.headers()[SET_COOKIE],
            "douyin_login_state=; Max-Age=0; Path=/callback; HttpOnly; SameSite=Lax"
        );
        assert_eq!(body(r).await, "missing_state");
    }

    #[tokio::test]
    async fn the_logs_carry_no_code_state_token_or_key() {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (app, _, _) = app(vec![(200, EXCHANGED), (200, CODE_EXPIRED)]);
        let (cookie, state) = start_login(&app).await;
        let ok = get(&app, &callback_uri("CODE-OK", &state), Some(&cookie)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let replay = get(&app, &callback_uri("CODE-OK", &state), Some(&cookie)).await;
        assert_eq!(error_kind(replay).await.1, "replayed_state");
        let (cookie2, state2) = start_login(&app).await;
        let expired = get(&app, &callback_uri("CODE-OLD", &state2), Some(&cookie2)).await;
        assert_eq!(error_kind(expired).await.1, "code_expired");

        let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        assert!(
            log.contains("login completed") && log.contains("open-9"),
            "{log}"
        );
        assert!(
            log.contains("replayed_state") && log.contains("code_expired"),
            "{log}"
        );
        let value = cookie.split_once('=').unwrap().1;
        for secret in [
            "CODE-OK", "CODE-OLD", &state, &state2, value, "act.A", "rft.R", "SECRET",
        ] {
            assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
        }
    }
}

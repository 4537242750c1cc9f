//! "Log in with Douyin" in an axum app with [`DouyinLogin`], against the embedded mock Douyin
//! server and its consent page.
//!
//! Click through it yourself:
//!
//! ```text
//! cargo run --example axum_login --features axum -- --serve 127.0.0.1:8080
//! ```
//!
//! prints `listening on http://127.0.0.1:8080` and serves until Ctrl-C (or SIGTERM). Open that
//! address, click "Log in with Douyin", then "Allow" on the mock's consent page: you land on
//! `/me`, which shows your nickname and `open_id` fetched from Douyin's `/oauth/userinfo/` on
//! your behalf through `UserTokenLayer`; "Log out" ends the session.
//!
//! The app:
//!
//! - `DouyinLogin` serves `GET /login` and `GET /callback`: the CSRF state in a signed cookie,
//!   the code exchange, the user's tokens written to the store (memory here: your database);
//!   its `on_login` hook starts the app's session (a random `sid` cookie) and redirects to
//!   `/me`;
//! - `GET /me` calls the user API through a `UserTokenLayer` over `StoredUsers` on the same
//!   store, which refreshes the user's access token when Douyin says it expired and writes
//!   every new pair back first;
//! - `POST /logout` ends the session.
//!
//! Without `--serve` (`cargo run --example axum_login --features axum`), `main` plays the
//! browser itself: it logs in, calls `/me`, replays the callback, forges a state, denies a
//! login, lets the access token expire and calls `/me` again, logs out, and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use douyin_auth::douyin::OAuthClient;
use douyin_auth::login::{DouyinLogin, LoggedIn};
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::MemoryStore;
use douyin_auth::users::{DouyinUserAuth, OpenId, StoredUsers, UserTokenLayer};
use douyin_auth::BoxError;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Http = Client<HttpConnector, Full<Bytes>>;
/// The client that calls Douyin for the user each request names.
type Douyin = DouyinUserAuth<Http>;
/// The app's sessions: session id to `open_id` (your session store).
type Sessions = Arc<Mutex<HashMap<String, String>>>;

const SESSION_COOKIE: &str = "sid";

#[derive(Clone)]
struct App {
    sessions: Sessions,
    douyin: Douyin,
    douyin_base: String,
}

/// The demo: the mock Douyin server, and the app that will be reachable at `app_addr`.
pub struct Demo {
    /// The mock Douyin server (its consent page, its token endpoints, its user API).
    pub mock: MockDouyin,
    /// The app's routes.
    pub router: Router,
    /// `http://<app_addr>`.
    pub app_url: String,
}

/// Starts the mock and builds the app for `app_addr`.
pub async fn demo(app_addr: SocketAddr) -> Result<Demo, BoxError> {
    let mock = MockDouyin::start().await?;
    let app_url = format!("http://{app_addr}");
    // Your database in production; the login writes the users' tokens here, StoredUsers reads
    // and refreshes them.
    let store = MemoryStore::new();

    let sessions: Sessions = Arc::default();
    let oauth = OAuthClient::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let login = DouyinLogin::builder(oauth, store.clone())
        .redirect_uri(format!("{app_url}/callback"))
        .scope("user_info")
        .on_login({
            let sessions = Arc::clone(&sessions);
            move |user: LoggedIn| start_session(Arc::clone(&sessions), user)
        })
        .build()?;

    let users =
        StoredUsers::new(mock.client_key(), mock.client_secret(), store).base_url(mock.base_url());
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let app = App {
        sessions,
        douyin: UserTokenLayer::new(users).layer(http),
        douyin_base: mock.base_url(),
    };
    let router = Router::new()
        .route("/", get(index))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .with_state(app)
        .merge(login.router())
        .fallback(not_found);
    Ok(Demo {
        mock,
        router,
        app_url,
    })
}

// ----- the app -----

/// The `on_login` hook: the user's tokens are in the store; start the app's own session.
async fn start_session(sessions: Sessions, user: LoggedIn) -> Response {
    let Ok(sid) = douyin_auth::douyin::State::generate() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    let sid = sid.as_str().to_owned();
    lock(&sessions).insert(sid.clone(), user.open_id().to_owned());
    let cookie = format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/me")).into_response()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The session's id and user, if the browser has a live session.
fn session(app: &App, headers: &HeaderMap) -> Option<(String, String)> {
    let sid = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("sid=").map(str::to_owned))?;
    let open_id = lock(&app.sessions).get(&sid).cloned()?;
    Some((sid, open_id))
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:30em;margin:3em auto}}\
         dt{{color:#666}} dd{{margin:0 0 1em;font-size:1.2em}}\
         .login{{display:inline-block;background:#fe2c55;color:#fff;padding:.6em 1.2em;\
         border-radius:6px;text-decoration:none}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>\n"
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(app): State<App>, headers: HeaderMap) -> Html<String> {
    match session(&app, &headers) {
        Some((_, open_id)) => page(
            "Demo app",
            &format!(
                "<p>Logged in as {}. <a id=\"me\" href=\"/me\">Your Douyin profile</a></p>",
                escape(&open_id)
            ),
        ),
        None => page(
            "Demo app",
            "<p><a id=\"login\" class=\"login\" href=\"/login\">Log in with Douyin</a></p>",
        ),
    }
}

async fn me(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some((_, open_id)) = session(&app, &headers) else {
        return Redirect::to("/").into_response();
    };
    match user_info(&app, &open_id).await {
        Ok((nickname, id)) => page(
            "Your Douyin profile",
            &format!(
                "<dl><dt>Nickname</dt><dd id=\"nickname\">{}</dd>\
                 <dt>open_id</dt><dd id=\"open_id\">{}</dd></dl>\
                 <form method=\"post\" action=\"/logout\">\
                 <button id=\"logout\" type=\"submit\">Log out</button></form>",
                escape(&nickname),
                escape(&id)
            ),
        )
        .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            page("Douyin is unavailable", &escape(&e.to_string())),
        )
            .into_response(),
    }
}

/// `/oauth/userinfo/` for `open_id`, through the per-user layer: nickname and open_id.
async fn user_info(app: &App, open_id: &str) -> Result<(String, String), BoxError> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("open_id", open_id)
        .finish();
    let mut request = http::Request::get(format!("{}/oauth/userinfo/?{query}", app.douyin_base))
        .body(Full::<Bytes>::default())?;
    request.extensions_mut().insert(OpenId::new(open_id));
    let answer = app.douyin.clone().oneshot(request).await?;
    let body = answer.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let data = &json["data"];
    if data["error_code"].as_i64() != Some(0) {
        return Err(format!("Douyin answered {}", data["description"]).into());
    }
    let field = |k: &str| data[k].as_str().unwrap_or_default().to_owned();
    Ok((field("nickname"), field("open_id")))
}

async fn not_found() -> (StatusCode, Html<String>) {
    (
        StatusCode::NOT_FOUND,
        page("Not found", "<p><a href=\"/\">Home</a></p>"),
    )
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some((sid, _)) = session(&app, &headers) {
        lock(&app.sessions).remove(&sid);
    }
    let clear = format!("{SESSION_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax");
    ([(header::SET_COOKIE, clear)], Redirect::to("/")).into_response()
}

// ----- main -----

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => self_driving().await,
        [flag, addr] if flag == "--serve" => serve(addr.parse()?).await,
        _ => Err("usage: axum_login [--serve ADDR]".into()),
    }
}

/// Serves the app on `addr` until Ctrl-C or SIGTERM.
async fn serve(addr: SocketAddr) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let demo = demo(addr).await?;
    println!("listening on {}", demo.app_url);
    axum::serve(listener, demo.router)
        .with_graceful_shutdown(interrupted())
        .await?;
    demo.mock.shutdown().await;
    Ok(())
}

async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

// ----- the self-driving run: a tiny browser -----

struct Browser {
    http: Http,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    async fn send(
        &mut self,
        request: http::request::Builder,
        body: String,
    ) -> Result<Page, BoxError> {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut request = request;
        if !cookie.is_empty() {
            request = request.header(header::COOKIE, cookie.join("; "));
        }
        let response = self.http.request(request.body(Full::from(body))?).await?;
        let (parts, body) = response.into_parts();
        for set in parts.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str()?;
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = body.collect().await?.to_bytes();
        Ok(Page {
            status: parts.status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn get(&mut self, url: &str) -> Result<Page, BoxError> {
        self.send(http::Request::get(url), String::new()).await
    }

    async fn post_form(
        &mut self,
        url: &str,
        fields: &[(String, String)],
    ) -> Result<Page, BoxError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = http::Request::post(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, body).await
    }

    /// `GET /login`, the consent page, and a click on `decision` ("allow" or "deny") as
    /// `open_id`: returns the callback URL Douyin sends the browser to.
    async fn consent(
        &mut self,
        app_url: &str,
        decision: &str,
        open_id: &str,
    ) -> Result<String, BoxError> {
        let login = self.get(&format!("{app_url}/login")).await?;
        assert_eq!(login.status, StatusCode::FOUND);
        let douyin = login.location.ok_or("no redirect to Douyin")?;
        let page = self.get(&douyin).await?;
        assert!(page.body.contains("id=\"allow\""), "{}", page.body);
        // The form posts the page's hidden fields (the query's) with the decision.
        let (action, query) = douyin.split_once('?').ok_or("no query")?;
        let mut fields: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        fields.push(("open_id".into(), open_id.into()));
        fields.push(("decision".into(), decision.into()));
        let decided = self.post_form(action, &fields).await?;
        assert_eq!(decided.status, StatusCode::FOUND);
        Ok(decided.location.ok_or("no redirect back")?)
    }
}

fn error_kind(page: &Page) -> &str {
    page.body
        .split("data-kind=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("none")
}

async fn self_driving() -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let demo = demo(listener.local_addr()?).await?;
    let (app, mock) = (demo.app_url.clone(), demo.mock);
    let server = tokio::spawn(async move { axum::serve(listener, demo.router).await });
    println!("app on {app}, mock Douyin on {}", mock.base_url());
    let mut browser = Browser {
        http: Client::builder(TokioExecutor::new()).build_http(),
        cookies: HashMap::new(),
    };

    let home = browser.get(&format!("{app}/")).await?;
    assert!(home.body.contains("Log in with Douyin"));
    let callback = browser.consent(&app, "allow", "alice").await?;
    let state_cookie = browser
        .cookies
        .get("douyin_login_state")
        .cloned()
        .ok_or("no state cookie")?;
    println!("GET /login, Allow    -> Douyin sends the browser back to /callback with a code");
    let back = browser.get(&callback).await?;
    println!(
        "GET /callback        -> {} to {:?}",
        back.status, back.location
    );
    assert_eq!(back.location.as_deref(), Some("/me"));
    assert!(browser.cookies.contains_key("sid"), "the app's session");
    assert!(
        !browser.cookies.contains_key("douyin_login_state"),
        "cleared"
    );
    let me = browser.get(&format!("{app}/me")).await?;
    println!(
        "GET /me              -> {} (nickname \"mock user alice\")",
        me.status
    );
    assert!(
        me.body.contains("<dd id=\"nickname\">mock user alice</dd>"),
        "{}",
        me.body
    );

    // The same callback again: the browser's state cookie is gone ...
    let replay = browser.get(&callback).await?;
    println!(
        "replayed callback    -> {} {}",
        replay.status,
        error_kind(&replay)
    );
    assert_eq!(error_kind(&replay), "missing_state");
    // ... and with the old cookie put back, the state is used already.
    browser
        .cookies
        .insert("douyin_login_state".into(), state_cookie);
    let replay = browser.get(&callback).await?;
    println!(
        "... with its cookie  -> {} {}",
        replay.status,
        error_kind(&replay)
    );
    assert_eq!(error_kind(&replay), "replayed_state");

    // An attacker's state: refused before any code exchange.
    let _ = browser.get(&format!("{app}/login")).await?;
    let code = mock.authorize("alice", ["user_info"]);
    let forged = browser
        .get(&format!("{app}/callback?code={code}&state=attacker-chosen"))
        .await?;
    println!(
        "forged state         -> {} {}",
        forged.status,
        error_kind(&forged)
    );
    assert_eq!(error_kind(&forged), "invalid_state");

    // The user presses Deny.
    let denied = browser.consent(&app, "deny", "alice").await?;
    let denied = browser.get(&denied).await?;
    println!(
        "Deny                 -> {} {}",
        denied.status,
        error_kind(&denied)
    );
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Douyin lets the access token expire: /me refreshes it through StoredUsers.
    mock.expire_all_tokens();
    let me = browser.get(&format!("{app}/me")).await?;
    println!("token expired, /me   -> {}", me.status);
    assert!(me.body.contains("mock user alice"), "{}", me.body);

    let out = browser.post_form(&format!("{app}/logout"), &[]).await?;
    assert_eq!(out.location.as_deref(), Some("/"));
    let me = browser.get(&format!("{app}/me")).await?;
    println!("logged out, /me      -> {} to {:?}", me.status, me.location);
    assert_eq!(me.location.as_deref(), Some("/"));

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

//! "Log in with Douyin" clicked through in headless Chromium: the example app
//! (`examples/axum_login.rs`) and the mock's consent page, driven over WebDriver (fantoccini,
//! chromedriver started here on a free loopback port).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; or set `CHROME` and `CHROMEDRIVER`). Without them the test skips
//! with a printed reason, except under CI (`CI=true`), where it fails: `.ci/run` installs
//! them. It saves screenshots of the consent page and of `/me` to `DOUYIN_AUTH_SCREENSHOTS`
//! (default `target/screenshots`); `docs/login-consent.png` and `docs/login-me.png` come from
//! `DOUYIN_AUTH_SCREENSHOTS=docs cargo test --features axum --test browser_login`.
#![cfg(all(feature = "axum", feature = "mock", feature = "https"))]

#[path = "../examples/axum_login.rs"]
#[allow(dead_code)]
mod example;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// The browser and its driver, or why they are not here.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let find = |var: &str, default: &str| {
        let path = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} not found (set {var}, or apt-get install chromium chromium-driver)",
                path.display()
            ))
        }
    };
    Ok((
        find("CHROME", "/usr/bin/chromium")?,
        find("CHROMEDRIVER", "/usr/bin/chromedriver")?,
    ))
}

/// A chromedriver process on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start(path: &Path) -> Driver {
        // Take a free port from the OS, then hand it to chromedriver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready once it says so (its first lines), read off the runtime's threads.
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let said = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|line| line.contains("started successfully"));
            // Keep draining so chromedriver never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            said
        });
        let said = tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("chromedriver announces itself within 30 s")
            .expect("the reader thread");
        assert!(said, "chromedriver exited before it was ready");
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, chrome: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=820,640", "--lang=en-US"],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("DOUYIN_AUTH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(tmp).join("screenshots")
        });
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("the screenshot written");
    println!("screenshot: {}", path.display());
}

async fn text(client: &Client, id: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .expect("the element's text")
}

async fn click(client: &Client, id: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

/// The `data-kind` of the login error page the browser shows.
async fn error_kind(client: &Client) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("login-error"))
        .await
        .expect("the login error page")
        .attr("data-kind")
        .await
        .expect("its kind")
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_with_douyin_in_a_real_browser() {
    let (chrome, chromedriver) = match tools() {
        Ok(t) => t,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the browser test must run under CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping the browser test: {why}");
            return;
        }
    };

    // The example app, with every request's path and query recorded. It listens on 127.0.0.2,
    // the mock on 127.0.0.1: two sites for the browser, so the return from the consent page is
    // a cross-site navigation, as from Douyin (where a `SameSite=Strict` cookie is not sent).
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let demo = example::demo(listener.local_addr().unwrap()).await.unwrap();
    let (app, mock) = (demo.app_url.clone(), demo.mock);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let router = demo.router.layer(tower::util::MapRequestLayer::new(
        move |req: axum::extract::Request| {
            record.lock().unwrap().push(req.uri().to_string());
            req
        },
    ));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let driver = Driver::start(&chromedriver).await;
    let client = browser(&driver, &chrome).await;

    // ----- the happy path: /, "Log in with Douyin", Allow, /me -----
    client.goto(&format!("{app}/")).await.unwrap();
    assert_eq!(text(&client, "login").await, "Log in with Douyin");
    click(&client, "login").await;
    assert_eq!(text(&client, "client-key").await, mock.client_key());
    let consent_url = client.current_url().await.unwrap();
    assert_eq!(
        format!("{}", consent_url).split('?').next().unwrap(),
        format!("{}/platform/oauth/connect/", mock.base_url())
    );
    assert_eq!(text(&client, "scopes").await, "user_info");

    // The browser holds the state cookie as the login set it: visible to WebDriver on the
    // callback's path only (it is `Path=/callback`), so look from a page under it.
    client.goto(&format!("{app}/callback/probe")).await.unwrap();
    let cookie = client
        .get_named_cookie("douyin_login_state")
        .await
        .expect("the state cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax")
    );
    assert_ne!(
        cookie.secure(),
        Some(true),
        "not Secure on plain-HTTP loopback"
    );
    assert_eq!(cookie.path(), Some("/callback"));
    client.back().await.unwrap();

    assert_eq!(text(&client, "allow").await, "同意授权 · Allow");
    save_screenshot(&client, "login-consent.png").await;
    click(&client, "allow").await;
    assert_eq!(text(&client, "nickname").await, "mock user mock-open-id-1");
    assert_eq!(text(&client, "open_id").await, "mock-open-id-1");
    assert_eq!(client.current_url().await.unwrap().path(), "/me");
    save_screenshot(&client, "login-me.png").await;
    assert_eq!(mock.counters().code_exchanges, 1);

    // ----- a replayed callback -----
    let callback = seen
        .lock()
        .unwrap()
        .iter()
        .find(|u| u.starts_with("/callback?code="))
        .cloned()
        .expect("the callback was recorded");
    client.goto(&format!("{app}{callback}")).await.unwrap();
    // The completed login deleted the browser's state cookie.
    assert_eq!(error_kind(&client).await, "missing_state");
    // With the old cookie put back, the state was used already.
    client.add_cookie(cookie).await.unwrap();
    client.goto(&format!("{app}{callback}")).await.unwrap();
    assert_eq!(error_kind(&client).await, "replayed_state");
    assert_eq!(mock.counters().code_exchanges, 1, "no second exchange");

    // ----- log out -----
    client.goto(&format!("{app}/me")).await.unwrap();
    click(&client, "logout").await;
    assert_eq!(text(&client, "login").await, "Log in with Douyin");
    client.goto(&format!("{app}/me")).await.unwrap();
    assert_eq!(text(&client, "login").await, "Log in with Douyin");

    // ----- Deny -----
    click(&client, "login").await;
    click(&client, "deny").await;
    assert_eq!(error_kind(&client).await, "denied");
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/callback");
    assert!(url
        .query_pairs()
        .any(|(k, v)| k == "error" && v == "access_denied"));
    assert!(client.source().await.unwrap().contains("Login cancelled"));

    // ----- a forged state: a callback this browser's login did not ask for -----
    client.goto(&format!("{app}/login")).await.unwrap();
    text(&client, "allow").await; // the login is in progress
    let code = mock.authorize("mallory", ["user_info"]);
    client
        .goto(&format!("{app}/callback?code={code}&state=attacker-chosen"))
        .await
        .unwrap();
    assert_eq!(error_kind(&client).await, "invalid_state");
    assert_eq!(
        mock.counters().code_exchanges,
        1,
        "the forged code was not exchanged"
    );

    client.close().await.unwrap();
    drop(driver);
    server.abort();
    mock.shutdown().await;
}

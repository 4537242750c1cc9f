//! End to end over real loopback HTTP: the layer, the Douyin token sources and the embedded
//! mock Douyin server.
#![cfg(all(feature = "mock", feature = "https"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::{verify_state, ClientCredentials, OAuthClient, UserTokens};
use douyin_auth::mock::MockDouyin;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, Token};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get_json<S>(svc: S, url: &str) -> serde_json::Value
where
    S: tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<douyin_auth::ResponseBody<hyper::body::Incoming>>,
        Error = Error,
    >,
{
    let req = http::Request::get(url).body(Full::default()).unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn code(v: &serde_json::Value) -> i64 {
    v["data"]["error_code"].as_i64().unwrap()
}

#[tokio::test]
async fn client_token_is_fetched_once_for_many_concurrent_calls() {
    let mock = MockDouyin::start().await.unwrap();
    let source =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let svc = DouyinAuthLayer::new(source).layer(http());
    let url = format!("{}/data/extern/billboard/hot_video/", mock.base_url());
    let answers = join_all((0..64).map(|_| get_json(svc.clone(), &url))).await;
    assert!(answers.iter().all(|a| code(a) == 0));
    let c = mock.counters();
    assert_eq!(c.stable_client_token_calls, 1);
    assert_eq!(c.client_token_calls, 0);
    assert_eq!(c.api_calls, 64);
    assert_eq!(c.api_rejected(), 0);
}

#[tokio::test]
async fn expiry_mid_run_refreshes_once_and_every_call_succeeds() {
    let mock = MockDouyin::start().await.unwrap();
    let source = ClientCredentials::new(mock.client_key(), mock.client_secret())
        .classic()
        .base_url(mock.base_url());
    let svc = DouyinAuthLayer::new(source).layer(http());
    for (i, path) in [
        "/data/extern/billboard/hot_video/",
        "/goodlife/v1/shop/",
        "/api/x/",
    ]
    .into_iter()
    .enumerate()
    {
        let url = format!("{}{path}", mock.base_url());
        let answers = join_all((0..16).map(|_| get_json(svc.clone(), &url))).await;
        for a in &answers {
            let code = a["data"]["error_code"]
                .as_i64()
                .or(a["err_no"].as_i64())
                .or(a["extra"]["error_code"].as_i64())
                .unwrap_or(0);
            assert_eq!(code, 0, "{a}");
        }
        let c = mock.counters();
        assert_eq!(c.client_token_calls, i as u64 + 1, "one fetch per expiry");
        assert_eq!(c.api_rejected(), if i == 0 { 0 } else { 16 * i as u64 });
        mock.expire_all_tokens();
    }
}

#[tokio::test]
async fn the_user_token_refresh_path_persists_before_use() {
    let mock = MockDouyin::start().await.unwrap();
    let grant = mock.issue_user_tokens("user-1", ["user_info"]);
    let stored = Token::new(grant.access_token.clone(), Duration::from_secs(3600))
        .with_open_id("user-1")
        .with_refresh_token(grant.refresh_token.clone(), Duration::from_secs(30 * 86400));
    // The app's store holds the pair it was given; the source adopts it without a call.
    let persisted = Arc::new(Mutex::new(vec![grant.access_token.clone()]));
    let p2 = persisted.clone();
    let source = UserTokens::new(mock.client_key(), mock.client_secret(), stored)
        .base_url(mock.base_url())
        .on_refresh(move |t: Token| {
            let p2 = p2.clone();
            async move {
                p2.lock().unwrap().push(t.secret().to_owned());
                Ok::<_, BoxError>(())
            }
        });
    // The inner client refuses to send a token that has not been persisted yet.
    let p3 = persisted.clone();
    let client = http();
    let guarded = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let token = req.headers()["access-token"].to_str().unwrap().to_owned();
        assert!(
            p3.lock().unwrap().contains(&token),
            "a token was used before it was persisted"
        );
        client.clone().oneshot(req)
    });
    let svc = DouyinAuthLayer::new(source).layer(guarded);
    let url = format!("{}/oauth/userinfo/?open_id=user-1", mock.base_url());
    let a = get_json(svc.clone(), &url).await;
    assert_eq!(code(&a), 0);
    assert_eq!(a["data"]["open_id"], "user-1");
    assert_eq!(persisted.lock().unwrap().len(), 1);
    assert_eq!(
        mock.counters().refresh_calls,
        0,
        "the stored token was adopted"
    );

    mock.expire_all_tokens();
    let a = get_json(svc.clone(), &url).await;
    assert_eq!(code(&a), 0, "{a}");
    let persisted = persisted.lock().unwrap();
    assert_eq!(persisted.len(), 2);
    assert_ne!(
        persisted[0], persisted[1],
        "a new access token after expiry"
    );
    assert_eq!(mock.counters().refresh_calls, 1);
}

#[tokio::test]
async fn the_full_oauth_code_flow() {
    let mock = MockDouyin::start().await.unwrap();
    let oauth = OAuthClient::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let (url, state) = oauth
        .authorization_url("https://app.example/callback")
        .scopes(["user_info", "video.list.bind"])
        .build()
        .unwrap();
    let url: http::Uri = url.parse().unwrap();
    assert_eq!(url.path(), "/platform/oauth/connect/");
    let query: Vec<(String, String)> = form_urlencoded::parse(url.query().unwrap().as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(param("client_key"), mock.client_key());
    assert_eq!(param("response_type"), "code");
    assert_eq!(param("scope"), "user_info,video.list.bind");
    assert_eq!(param("redirect_uri"), "https://app.example/callback");

    // The browser comes back with the state it was given, and a code.
    assert!(verify_state(&state, &param("state")));
    assert!(!verify_state(&state, "forged"));
    let code = mock.authorize("user-9", ["user_info", "video.list.bind"]);

    let token = oauth.exchange_code(&code).await.unwrap();
    assert_eq!(token.open_id(), Some("user-9"));
    assert!(token.refresh_token().is_some());
    assert_eq!(token.scopes(), ["user_info", "video.list.bind"]);
    assert!(token.refresh_expires_in().unwrap() > token.expires_in());

    // A code works once.
    let again = oauth.exchange_code(&code).await.unwrap_err();
    assert_eq!(again.douyin().map(|d| d.code()), Some(10007));

    // The user's tokens now call a user API on the user's behalf.
    let svc = DouyinAuthLayer::new(oauth.user_tokens(token)).layer(http());
    let a = get_json(
        svc,
        &format!("{}/oauth/userinfo/?open_id=user-9", mock.base_url()),
    )
    .await;
    assert_eq!(code_of(&a), 0);
    assert_eq!(a["data"]["open_id"], "user-9");
}

fn code_of(v: &serde_json::Value) -> i64 {
    code(v)
}

/// The `douyin_api` example against the mock: N requests through one client, one fetch.
#[tokio::test]
async fn the_douyin_api_example_shares_one_token_across_its_requests() {
    let mock = MockDouyin::start().await.unwrap();
    let exe = example("douyin_api");
    let out = tokio::process::Command::new(&exe)
        .args([
            "--requests",
            "20",
            "--concurrency",
            "5",
            "GET",
            "/data/extern/billboard/hot_video/",
        ])
        .env("DOUYIN_CLIENT_KEY", mock.client_key())
        .env("DOUYIN_CLIENT_SECRET", mock.client_secret())
        .env("DOUYIN_BASE_URL", mock.base_url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 20);
    assert!(
        stderr.contains("20 requests, 20 ok, 0 failed; 1 token fetches"),
        "{stderr}"
    );
    assert_eq!(mock.counters().all_client_token_calls(), 1);
    assert!(!stderr.contains(mock.client_secret()));

    // A Douyin error code makes the exit status 1.
    let out = tokio::process::Command::new(&exe)
        .args(["POST", "/data/extern/billboard/hot_video/?open_id=x"])
        .env("DOUYIN_CLIENT_KEY", mock.client_key())
        .env("DOUYIN_CLIENT_SECRET", "wrong")
        .env("DOUYIN_BASE_URL", mock.base_url())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Bad usage is 2.
    let out = tokio::process::Command::new(&exe)
        .args(["--requests", "zero", "GET", "/x"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A loopback address nothing listens on: a port the OS gave us, then closed.
fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A failed request is reported with what failed and the root cause, each once: the crate's
/// errors already display their root cause, so the example does not print it again.
#[tokio::test]
async fn the_douyin_api_example_says_each_fact_of_a_failure_once() {
    let out = tokio::process::Command::new(example("douyin_api"))
        .args(["GET", "/data/extern/billboard/hot_video/"])
        .env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", refused_base_url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("douyin_api: request failed: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.starts_with(
            "douyin_api: request failed: could not get a token: the token endpoint request \
             (/oauth/stable_client_token/) failed: "
        ),
        "{line}"
    );
    assert_eq!(line.to_lowercase().matches("refused").count(), 1, "{line}");
    assert_eq!(line.matches("failed").count(), 2, "{line}");
}

/// A Douyin whose stable endpoint keeps handing out a token its APIs reject, and whose classic
/// endpoint hands out one they accept.
async fn stuck_stable_token_server() -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let token = |t: &str| {
                    format!(
                        r#"{{"data":{{"access_token":"{t}","expires_in":7200,"error_code":0,"description":""}},"message":"success"}}"#
                    )
                };
                let answer = match req.uri().path() {
                    "/oauth/stable_client_token/" => token("clt.stuck"),
                    "/oauth/client_token/" => token("clt.new"),
                    _ => {
                        let code = match req.headers().get("access-token") {
                            Some(t) if t == "clt.new" => 0,
                            _ => 2_190_008,
                        };
                        format!(
                            r#"{{"data":{{"error_code":{code},"description":""}},"extra":{{"error_code":{code},"logid":"x"}}}}"#
                        )
                    }
                };
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(answer)))
                        .unwrap(),
                )
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    base
}

/// The example's fetch counter passes the rejected token on to the source, so the stable
/// endpoint's rejected token is replaced from the classic endpoint and the request retried.
#[tokio::test]
async fn the_douyin_api_example_replaces_a_rejected_stable_token() {
    let base = stuck_stable_token_server().await;
    let out = tokio::process::Command::new(example("douyin_api"))
        .args(["GET", "/data/extern/billboard/hot_video/"])
        .env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 requests, 1 ok, 0 failed; 2 token fetches"),
        "{stderr}"
    );
}

/// `--credential KIND`: each app-token kind against the mock, one fetch for all requests; the
/// app kinds take the app id and secret from the same variables.
#[tokio::test]
async fn the_douyin_api_example_takes_every_credential_kind() {
    let mock = MockDouyin::start().await.unwrap();
    let exe = example("douyin_api");
    let run = |kind: &'static str, path: &'static str| {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "--credential",
            kind,
            "--requests",
            "6",
            "--concurrency",
            "3",
            "GET",
            path,
        ])
        .env("DOUYIN_CLIENT_KEY", mock.client_key())
        .env("DOUYIN_CLIENT_SECRET", mock.client_secret())
        .env("DOUYIN_BASE_URL", mock.base_url());
        async move { cmd.output().await.unwrap() }
    };
    for (kind, path) in [
        ("client-token", "/data/extern/billboard/hot_video/"),
        ("stable-client-token", "/data/extern/billboard/hot_video/"),
        ("mini-app", "/api/apps/v2/qrcode/create/"),
        ("mini-game", "/mgplatform/api/apps/set_user_storage/"),
    ] {
        let out = run(kind, path).await;
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{kind}: {stderr}");
        assert!(
            stderr.contains("6 requests, 6 ok, 0 failed; 1 token fetches"),
            "{kind}: {stderr}"
        );
    }
    let c = mock.counters();
    assert_eq!(
        (
            c.client_token_calls,
            c.stable_client_token_calls,
            c.mini_app_token_calls,
            c.mini_game_stable_token_calls
        ),
        (1, 1, 1, 1)
    );
    // A mini-game token is not read from the `access-token` header of a mini-game API, so a
    // kind that does not match the API fails there, as it would against Douyin.
    let out = run(
        "stable-client-token",
        "/mgplatform/api/apps/set_user_storage/",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let out = run("no-such-kind", "/x").await;
    assert_eq!(out.status.code(), Some(2));
}

/// `mock_server`: prints its base URL and credentials, serves until interrupted.
#[cfg(unix)]
#[tokio::test]
async fn the_mock_server_example_serves_until_interrupted() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(example("mock_server"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let base = first
        .strip_prefix("mock Douyin serving on ")
        .unwrap()
        .to_owned();
    let mut printed = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("serving until interrupted") {
            break;
        }
    }
    assert!(printed.contains("mock_client_key"), "{printed}");
    assert!(printed.contains("mock_client_secret"), "{printed}");
    let source = ClientCredentials::new("mock_client_key", "mock_client_secret").base_url(&base);
    let svc = DouyinAuthLayer::new(source).layer(http());
    let a = get_json(svc, &format!("{base}/data/extern/billboard/hot_video/")).await;
    assert_eq!(code(&a), 0);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let rest = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(rest.starts_with("stopping"), "{rest}");
}

/// The path of an example binary that `cargo test` built beside the test binaries.
fn example(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built; run via cargo test",
        path.display()
    );
    path
}

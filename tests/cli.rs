//! The `douyin` command (feature `cli`), run as a user runs it: the built binary against the
//! embedded mock (and, for `--paginate`, a small paginated server), its output and exit codes.
#![cfg(feature = "cli")]

use std::convert::Infallible;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::douyin::ClientCredentials;
use douyin_auth::mock::MockDouyin;
use douyin_auth::TokenSource;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn douyin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin"));
    cmd.env_remove("DOUYIN_CLIENT_KEY")
        .env_remove("DOUYIN_CLIENT_SECRET")
        .env_remove("DOUYIN_BASE_URL")
        .kill_on_drop(true);
    cmd
}

/// `douyin` with the mock's credentials and base URL in its environment.
fn against(mock: &MockDouyin) -> Command {
    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", mock.client_key())
        .env("DOUYIN_CLIENT_SECRET", mock.client_secret())
        .env("DOUYIN_BASE_URL", mock.base_url());
    cmd
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(cmd: &mut Command, args: &[&str]) -> Run {
    let out = cmd.args(args).output().await.unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[tokio::test]
async fn api_sends_n_requests_through_one_token_and_no_progress_bar_off_a_terminal() {
    let mock = MockDouyin::start().await.unwrap();
    let out = run(
        &mut against(&mock),
        &[
            "api",
            "--requests",
            "20",
            "--concurrency",
            "5",
            "GET",
            "/data/extern/billboard/hot_video/?open_id=o1",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 20, "{}", out.stdout);
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["data"]["error_code"], 0, "{line}");
    }
    // stderr is a pipe here: the summary and nothing else (no bar, no carriage returns).
    assert_eq!(
        out.stderr,
        "douyin: 20 requests, 20 ok, 0 failed; 1 token fetches\n"
    );
    let c = mock.counters();
    assert_eq!(
        (
            c.stable_client_token_calls,
            c.client_token_calls,
            c.api_calls
        ),
        (1, 0, 20)
    );
    assert!(!out.stdout.contains(mock.client_secret()));
}

#[tokio::test]
async fn credential_picks_the_token_endpoint() {
    let mock = MockDouyin::start().await.unwrap();
    let out = run(
        &mut against(&mock),
        &[
            "api",
            "--credential",
            "client-token",
            "GET",
            "/data/extern/billboard/hot_video/",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let c = mock.counters();
    assert_eq!((c.stable_client_token_calls, c.client_token_calls), (0, 1));
}

/// Each kind's token, from its own endpoint, on an API that takes that kind where that API
/// reads it (the mini-game APIs read the `access_token` header, not `access-token`).
const KINDS: [(&str, &str); 4] = [
    ("stable-client-token", "/data/extern/billboard/hot_video/"),
    ("client-token", "/data/extern/billboard/hot_video/"),
    ("mini-app", "/api/apps/v2/qrcode/create/"),
    ("mini-game", "/mgplatform/api/apps/set_user_storage/"),
];

#[tokio::test]
async fn every_credential_kind_calls_an_api_that_takes_its_token() {
    let mock = MockDouyin::start().await.unwrap();
    for (kind, path) in KINDS {
        let out = run(
            &mut against(&mock),
            &[
                "api",
                "--credential",
                kind,
                "--requests",
                "3",
                "--concurrency",
                "3",
                "GET",
                path,
            ],
        )
        .await;
        assert_eq!(out.code, Some(0), "{kind}: {}", out.stderr);
        assert_eq!(
            out.stderr, "douyin: 3 requests, 3 ok, 0 failed; 1 token fetches\n",
            "{kind}"
        );
        assert_eq!(out.stdout.lines().count(), 3, "{kind}: {}", out.stdout);

        let out = run(&mut against(&mock), &["token", "--credential", kind]).await;
        assert_eq!(out.code, Some(0), "{kind}: {}", out.stderr);
        assert!(
            out.stdout.starts_with(&format!("{kind}: expires in ")),
            "{kind}: {}",
            out.stdout
        );
    }
    let c = mock.counters();
    assert_eq!(
        (
            c.stable_client_token_calls,
            c.client_token_calls,
            c.mini_app_token_calls,
            c.mini_game_stable_token_calls
        ),
        (2, 2, 2, 2),
        "one token call per run"
    );
}

#[tokio::test]
async fn a_token_of_the_wrong_kind_is_a_failure_in_every_answer_shape() {
    let mock = MockDouyin::start().await.unwrap();
    // The mock answers each refusal with HTTP 200 and the API family's own code field
    // (`errcode` on the mini-game APIs, `err_no` on the mini-app ones), as Douyin does.
    for (kind, path) in [
        (
            "stable-client-token",
            "/mgplatform/api/apps/set_user_storage/",
        ),
        ("stable-client-token", "/api/apps/v2/qrcode/create/"),
        ("mini-app", "/data/extern/billboard/hot_video/"),
    ] {
        let out = run(
            &mut against(&mock),
            &["api", "--credential", kind, "GET", path],
        )
        .await;
        assert_eq!(out.code, Some(1), "{kind} on {path}: {}", out.stdout);
        assert!(
            out.stderr.contains("1 requests, 0 ok, 1 failed"),
            "{kind} on {path}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn exit_codes_are_the_examples() {
    let mock = MockDouyin::start().await.unwrap();
    // Douyin refuses the credentials: 1, and the error names the token endpoint.
    let out = run(
        against(&mock).env("DOUYIN_CLIENT_SECRET", "wrong-secret"),
        &["api", "POST", "/data/extern/billboard/hot_video/?open_id=x"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("could not get a token"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-secret"), "{}", out.stderr);

    // Bad usage: 2.
    for args in [
        &["api", "--requests", "zero", "GET", "/x"][..],
        &["api", "GET", "no-slash"],
        &["api", "--data", "{not json", "POST", "/x"],
        &["api", "--paginate", "--requests", "2", "GET", "/x"],
        &["nonsense"],
    ] {
        let out = run(&mut against(&mock), args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    }
    // Missing credentials: 2, naming the variables.
    let out = run(&mut douyin(), &["api", "GET", "/x"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("DOUYIN_CLIENT_KEY and DOUYIN_CLIENT_SECRET"),
        "{}",
        out.stderr
    );
    // A remote plain-HTTP base URL: 2.
    let out = run(
        against(&mock).env("DOUYIN_BASE_URL", "http://open.douyin.com"),
        &["api", "GET", "/x"],
    )
    .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    // --help: 0, and it names the commands.
    let out = run(&mut douyin(), &["--help"]).await;
    assert_eq!(out.code, Some(0));
    for word in ["api", "token", "mock", "DOUYIN_CLIENT_KEY", "Exit status"] {
        assert!(out.stdout.contains(word), "{word}: {}", out.stdout);
    }
    // `api --help` names every kind and what its credentials are.
    let out = run(&mut douyin(), &["api", "--help"]).await;
    assert_eq!(out.code, Some(0));
    for (kind, _) in KINDS {
        assert!(out.stdout.contains(kind), "{kind}: {}", out.stdout);
    }
    assert!(out.stdout.contains("app id"), "{}", out.stdout);
    assert!(!out.stdout.contains("not supported"), "{}", out.stdout);
}

/// A loopback address nothing listens on: a port the OS gave us, then closed.
fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_failure_says_what_failed_and_the_root_cause_once() {
    let base = refused_base_url();
    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base);
    let out = run(
        &mut cmd,
        &["api", "GET", "/data/extern/billboard/hot_video/"],
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = out.stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(
            "douyin: request failed: could not get a token: the token endpoint request \
             (/oauth/stable_client_token/) failed: "
        ),
        "{line}"
    );
    assert_eq!(line.to_lowercase().matches("refused").count(), 1, "{line}");

    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base);
    let out = run(&mut cmd, &["token", "--credential", "mini-app"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = out.stderr.trim_end();
    assert!(
        line.starts_with(
            "douyin: could not get a token: the token endpoint request (/api/apps/v2/token) failed: "
        ),
        "{line}"
    );
    assert_eq!(line.to_lowercase().matches("refused").count(), 1, "{line}");
}

#[tokio::test]
async fn token_prints_the_kind_and_lifetime_never_the_token() {
    let mock = MockDouyin::start().await.unwrap();
    let out = run(&mut against(&mock), &["token"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The stable endpoint hands everyone the same token: the one the command saw.
    let token = ClientCredentials::new(mock.client_key(), mock.client_secret())
        .base_url(mock.base_url())
        .fetch()
        .await
        .unwrap();
    let line = out.stdout.trim_end();
    assert!(!out.stdout.contains(token.secret()), "{line}");
    let secs: u64 = line
        .strip_prefix("stable-client-token: expires in ")
        .and_then(|rest| rest.rsplit_once(" (")?.1.strip_suffix(" s)")?.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    let left = token.remaining().as_secs();
    assert!(secs >= left && secs <= left + 5, "{secs} vs {left}");
    assert!(line.contains("1h 59m"), "{line}");
}

#[tokio::test]
async fn mock_serves_until_interrupted_and_prints_what_the_other_commands_need() {
    let mut child = douyin()
        .arg("mock")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env = Vec::new();
    while env.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the mock prints its settings")
            .unwrap()
            .expect("the mock keeps running");
        if let Some(kv) = line.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "DOUYIN_BASE_URL",
            "DOUYIN_CLIENT_KEY",
            "DOUYIN_CLIENT_SECRET"
        ]
    );

    let mut api = douyin();
    api.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = run(
        &mut api,
        &["api", "GET", "/data/extern/billboard/hot_video/"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(r#""error_code":0"#), "{}", out.stdout);

    // Ctrl-C (SIGINT) stops it cleanly.
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the mock stops on Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A paginated endpoint: three pages of `list`, following `cursor` (in the query of a GET,
/// in the JSON body of a POST); the token endpoint answers one client token. It records each
/// API request's token header and cursor.
async fn paginated_server() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let log = Arc::clone(&log);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.unwrap().to_bytes();
                    let answer = if parts.uri.path().contains("client_token") {
                        r#"{"data":{"access_token":"clt.pages","expires_in":7200,"error_code":0,"description":""},"message":"success"}"#.to_owned()
                    } else {
                        let cursor = if parts.method == http::Method::GET {
                            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                                .find(|(k, _)| k == "cursor")
                                .map(|(_, v)| v.into_owned())
                                .unwrap_or_default()
                        } else {
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            v["cursor"]
                                .as_i64()
                                .map(|c| c.to_string())
                                .unwrap_or_default()
                        };
                        let token = parts
                            .headers
                            .get("access-token")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        log.lock().unwrap().push((token, cursor.clone()));
                        let (list, next, more) = match cursor.as_str() {
                            "" | "0" => ("[1,2]", 2, true),
                            "2" => ("[3,4]", 4, true),
                            _ => ("[5]", 5, false),
                        };
                        format!(
                            r#"{{"data":{{"list":{list},"cursor":{next},"has_more":{more},"error_code":0,"description":""}},
  "extra":{{"logid":"x"}}}}"#
                        )
                    };
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (base, seen)
}

#[tokio::test]
async fn paginate_follows_the_cursor_and_prints_one_json_value_a_line() {
    let (base, seen) = paginated_server().await;
    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base);
    let out = run(
        &mut cmd,
        &[
            "api",
            "--paginate",
            "GET",
            "/video/list/?open_id=o1&cursor=0&count=2",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lists: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["list"].clone())
        .collect();
    assert_eq!(
        lists,
        [
            serde_json::json!([1, 2]),
            serde_json::json!([3, 4]),
            serde_json::json!([5])
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("clt.pages".to_owned(), "0".to_owned()),
            ("clt.pages".to_owned(), "2".to_owned()),
            ("clt.pages".to_owned(), "4".to_owned()),
        ]
    );
    assert!(
        out.stderr.starts_with("douyin: 3 pages, 3 ok, 0 failed;"),
        "{}",
        out.stderr
    );

    // A POST carries the cursor in its JSON body, beside the fields given with --data.
    seen.lock().unwrap().clear();
    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base);
    let out = run(
        &mut cmd,
        &[
            "api",
            "--paginate",
            "--data",
            r#"{"count":2}"#,
            "POST",
            "/video/list/",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    let cursors: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(cursors, ["", "2", "4"]);

    // --max-pages stops early.
    let mut cmd = douyin();
    cmd.env("DOUYIN_CLIENT_KEY", "key")
        .env("DOUYIN_CLIENT_SECRET", "secret")
        .env("DOUYIN_BASE_URL", &base);
    let out = run(
        &mut cmd,
        &[
            "api",
            "--paginate",
            "--max-pages",
            "2",
            "GET",
            "/video/list/",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stderr.contains("stopped after 2 pages"),
        "{}",
        out.stderr
    );
}

//! The embedded mock Douyin server, exercised over real loopback HTTP/1.1.
#![cfg(feature = "mock")]

use std::time::Duration;

use bytes::Bytes;
use douyin_auth::mock::{MockDouyin, TokenFailure, DEFAULT_CLIENT_KEY, DEFAULT_CLIENT_SECRET};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

// ----- a tiny HTTP/1.1 client -----

struct Resp {
    status: StatusCode,
    raw: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.raw)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.raw))
    }

    /// `data.error_code` of a token-endpoint answer.
    fn code(&self) -> i64 {
        self.json()["data"]["error_code"].as_i64().unwrap()
    }

    fn data(&self) -> Value {
        self.json()["data"].clone()
    }
}

async fn send(mock: &MockDouyin, req: Request<Full<Bytes>>) -> Resp {
    let stream = TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    Resp { status, raw }
}

fn request(mock: &MockDouyin, method: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", mock.addr().to_string())
}

async fn post_json(mock: &MockDouyin, path: &str, body: Value) -> Resp {
    let req = request(mock, "POST", path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(mock, req).await
}

async fn post_form(mock: &MockDouyin, path: &str, fields: &[(&str, &str)]) -> Resp {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let req = request(mock, "POST", path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(mock, req).await
}

async fn post_query(mock: &MockDouyin, path: &str, fields: &[(&str, &str)]) -> Resp {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let req = request(mock, "POST", &format!("{path}?{query}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(mock, req).await
}

/// A protected API call with the token in the `access-token` header.
async fn api(mock: &MockDouyin, path: &str, token: &str) -> Resp {
    let req = request(mock, "GET", path)
        .header("access-token", token)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(mock, req).await
}

fn creds() -> Value {
    json!({
        "client_key": DEFAULT_CLIENT_KEY,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "grant_type": "client_credential",
    })
}

async fn client_token(mock: &MockDouyin) -> String {
    let r = post_json(mock, "/oauth/client_token/", creds()).await;
    assert_eq!(r.code(), 0, "{:?}", r.raw);
    r.data()["access_token"].as_str().unwrap().to_owned()
}

async fn stable_token(mock: &MockDouyin) -> (String, u64) {
    let r = post_json(mock, "/oauth/stable_client_token/", creds()).await;
    assert_eq!(r.code(), 0, "{:?}", r.raw);
    let d = r.data();
    (
        d["access_token"].as_str().unwrap().to_owned(),
        d["expires_in"].as_u64().unwrap(),
    )
}

async fn exchange(mock: &MockDouyin, code: &str) -> Resp {
    post_form(
        mock,
        "/oauth/access_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", code),
            ("grant_type", "authorization_code"),
        ],
    )
    .await
}

async fn refresh(mock: &MockDouyin, refresh_token: &str) -> Resp {
    post_form(
        mock,
        "/oauth/refresh_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn renew(mock: &MockDouyin, refresh_token: &str) -> Resp {
    post_form(
        mock,
        "/oauth/renew_refresh_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `data.error_code` of a shape-1 API answer, checked against `extra.error_code`.
fn shape1_code(r: &Resp) -> i64 {
    let v = r.json();
    let code = v["data"]["error_code"].as_i64().unwrap();
    assert_eq!(v["extra"]["error_code"].as_i64(), Some(code), "{v}");
    assert_eq!(v["extra"]["sub_error_code"].as_i64(), Some(0), "{v}");
    assert!(v["extra"]["logid"].is_string(), "{v}");
    assert!(v["extra"]["now"].is_u64(), "{v}");
    code
}

// ----- token endpoints -----

#[tokio::test]
async fn client_token_only_newest_two_stay_valid() {
    let mock = MockDouyin::start().await.unwrap();
    // JSON, form and query parameters are all accepted.
    let t1 = client_token(&mock).await;
    let r = post_form(
        &mock,
        "/oauth/client_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credential"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["message"], "success");
    assert_eq!(v["data"]["error_code"], 0);
    assert_eq!(v["data"]["description"], "");
    assert_eq!(v["data"]["expires_in"], 7200);
    let t2 = v["data"]["access_token"].as_str().unwrap().to_owned();
    assert!(t1.starts_with("clt.") && t2.starts_with("clt."));
    assert_ne!(t1, t2);

    // Two tokens: both valid.
    assert_eq!(
        shape1_code(&api(&mock, "/data/extern/billboard/hot_video/", &t1).await),
        0
    );
    assert_eq!(
        shape1_code(&api(&mock, "/data/extern/billboard/hot_video/", &t2).await),
        0
    );

    let r = post_query(
        &mock,
        "/oauth/client_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credential"),
        ],
    )
    .await;
    let t3 = r.data()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t3, t2);

    // A third token pushes the first out: invalid, not expired.
    assert_eq!(
        shape1_code(&api(&mock, "/data/extern/billboard/hot_video/", &t1).await),
        2_190_002
    );
    assert_eq!(
        shape1_code(&api(&mock, "/data/extern/billboard/hot_video/", &t2).await),
        0
    );
    assert_eq!(
        shape1_code(&api(&mock, "/data/extern/billboard/hot_video/", &t3).await),
        0
    );

    let c = mock.counters();
    assert_eq!(c.client_token_calls, 3);
    assert_eq!(c.stable_client_token_calls, 0);
    assert_eq!(c.api_calls, 5);
    assert_eq!(c.api_invalid, 1);
    assert_eq!(c.api_expired, 0);
    assert_eq!(c.api_rejected(), 1);
}

#[tokio::test]
async fn client_token_rejects_bad_credentials_in_douyin_error_shape() {
    let mock = MockDouyin::start().await.unwrap();
    let r = post_json(
        &mock,
        "/oauth/client_token/",
        json!({"client_key": "nope", "client_secret": DEFAULT_CLIENT_SECRET, "grant_type": "client_credential"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["data"]["error_code"], 10_003);
    assert!(v["data"]["description"].is_string());
    assert!(v["extra"]["logid"].is_string());
    assert!(v["extra"]["now"].is_u64());

    let r = post_json(
        &mock,
        "/oauth/client_token/",
        json!({"client_key": DEFAULT_CLIENT_KEY, "client_secret": "wrong", "grant_type": "client_credential"}),
    )
    .await;
    assert_eq!(r.code(), 10_013);

    let r = post_json(
        &mock,
        "/oauth/client_token/",
        json!({"client_key": DEFAULT_CLIENT_KEY, "client_secret": DEFAULT_CLIENT_SECRET, "grant_type": "password"}),
    )
    .await;
    assert_eq!(r.code(), 2_100_005);

    // GET is not a token call.
    let req = request(&mock, "GET", "/oauth/client_token/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send(&mock, req).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn custom_credentials_and_lifetimes() {
    let mock = MockDouyin::builder()
        .client_key("k1")
        .client_secret("s1")
        .client_token_lifetime(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    assert_eq!(mock.client_key(), "k1");
    assert_eq!(mock.client_secret(), "s1");
    let r = post_json(
        &mock,
        "/oauth/client_token",
        json!({"client_key": "k1", "client_secret": "s1", "grant_type": "client_credential"}),
    )
    .await;
    assert_eq!(r.code(), 0);
    assert_eq!(r.data()["expires_in"], 60);
    assert_eq!(
        post_json(&mock, "/oauth/client_token/", creds())
            .await
            .code(),
        10_003
    );
}

#[tokio::test(start_paused = true)]
async fn stable_client_token_is_idempotent_until_it_expires() {
    let mock = MockDouyin::start().await.unwrap();
    let (a, exp_a) = stable_token(&mock).await;
    assert_eq!(exp_a, 7200);
    tokio::time::advance(Duration::from_secs(100)).await;
    let (b, exp_b) = stable_token(&mock).await;
    assert_eq!(a, b);
    assert_eq!(exp_b, 7100);

    // Plain client tokens do not rotate the stable one out.
    for _ in 0..3 {
        client_token(&mock).await;
    }
    assert_eq!(stable_token(&mock).await.0, a);
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &a).await), 0);

    // After its lifetime: expired to APIs, and a new one from the endpoint.
    tokio::time::advance(Duration::from_secs(7100)).await;
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &a).await), 2_190_008);
    let (c, exp_c) = stable_token(&mock).await;
    assert_ne!(c, a);
    assert_eq!(exp_c, 7200);

    // Expired by the knob: a new one again.
    mock.expire_all_tokens();
    let (d, _) = stable_token(&mock).await;
    assert_ne!(d, c);
    assert_eq!(mock.counters().stable_client_token_calls, 5);
}

#[tokio::test]
async fn stable_client_token_takes_json_only() {
    let mock = MockDouyin::start().await.unwrap();
    let r = post_form(
        &mock,
        "/oauth/stable_client_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("grant_type", "client_credential"),
        ],
    )
    .await;
    assert_eq!(r.code(), 2_100_005);
}

#[tokio::test(start_paused = true)]
async fn client_token_expires_on_the_paused_clock() {
    let mock = MockDouyin::start().await.unwrap();
    let t = client_token(&mock).await;
    tokio::time::advance(Duration::from_secs(7199)).await;
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &t).await), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &t).await), 2_190_008);
    assert_eq!(mock.counters().api_expired, 1);
}

#[tokio::test]
async fn advance_clock_knob_expires_tokens_without_pausing_tokio() {
    let mock = MockDouyin::start().await.unwrap();
    let t = client_token(&mock).await;
    mock.advance_clock(Duration::from_secs(7200));
    assert_eq!(mock.clock_offset(), Duration::from_secs(7200));
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &t).await), 2_190_008);
}

#[tokio::test(start_paused = true)]
async fn code_exchange_is_single_use_and_short_lived() {
    let mock = MockDouyin::start().await.unwrap();
    let code = mock.authorize("open-1", ["user_info", "video.list.bind"]);
    let r = exchange(&mock, &code).await;
    assert_eq!(r.code(), 0, "{:?}", r.raw);
    let v = r.json();
    assert_eq!(v["message"], "success");
    let d = &v["data"];
    assert!(d["access_token"].as_str().unwrap().starts_with("act."));
    assert!(d["refresh_token"].as_str().unwrap().starts_with("rft."));
    assert_eq!(d["open_id"], "open-1");
    assert_eq!(d["expires_in"], 1_296_000);
    assert_eq!(d["refresh_expires_in"], 2_592_000);
    assert_eq!(d["scope"], "user_info,video.list.bind");
    assert_eq!(d["description"], "");

    // The user token works and carries the open_id.
    let act = d["access_token"].as_str().unwrap();
    let r = api(&mock, "/oauth/userinfo/", act).await;
    assert_eq!(shape1_code(&r), 0);
    assert_eq!(r.data()["open_id"], "open-1");
    assert_eq!(r.data()["token_type"], "user");

    // Used once: gone.
    assert_eq!(exchange(&mock, &code).await.code(), 10_007);
    assert_eq!(exchange(&mock, "code.unknown").await.code(), 10_007);

    // Ten minutes: gone.
    let code = mock.authorize("open-2", ["user_info"]);
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(exchange(&mock, &code).await.code(), 10_007);

    // A new code for the same user kills the previous one.
    let old = mock.authorize("open-3", ["user_info"]);
    let new = mock.authorize("open-3", ["user_info"]);
    assert_eq!(exchange(&mock, &old).await.code(), 10_007);
    assert_eq!(exchange(&mock, &new).await.code(), 0);

    assert_eq!(mock.counters().code_exchanges, 6);
}

#[tokio::test]
async fn code_exchange_checks_secret_and_insists_on_form() {
    let mock = MockDouyin::start().await.unwrap();
    let code = mock.authorize("open-1", ["user_info"]);
    let r = post_json(
        &mock,
        "/oauth/access_token/",
        json!({"client_key": DEFAULT_CLIENT_KEY, "client_secret": DEFAULT_CLIENT_SECRET,
               "code": code, "grant_type": "authorization_code"}),
    )
    .await;
    assert_eq!(r.code(), 2_100_005);
    let r = post_form(
        &mock,
        "/oauth/access_token/",
        &[
            ("client_key", DEFAULT_CLIENT_KEY),
            ("client_secret", "bad"),
            ("code", &code),
            ("grant_type", "authorization_code"),
        ],
    )
    .await;
    assert_eq!(r.code(), 10_013);
    // Neither failure consumed the code.
    assert_eq!(exchange(&mock, &code).await.code(), 0);
}

#[tokio::test(start_paused = true)]
async fn refresh_returns_same_token_until_expiry_and_never_extends_the_refresh_token() {
    let mock = MockDouyin::start().await.unwrap();
    let code = mock.authorize("open-1", ["user_info"]);
    let d = exchange(&mock, &code).await.data();
    let act = d["access_token"].as_str().unwrap().to_owned();
    let rft = d["refresh_token"].as_str().unwrap().to_owned();

    // Not expired: the SAME access token with a later expiry.
    tokio::time::advance(Duration::from_secs(1000)).await;
    let r = refresh(&mock, &rft).await;
    assert_eq!(r.code(), 0, "{:?}", r.raw);
    let d = r.data();
    assert_eq!(d["access_token"], act.as_str());
    assert_eq!(d["expires_in"], 1_296_000);
    assert_eq!(d["refresh_token"], rft.as_str());
    assert_eq!(d["refresh_expires_in"], 2_592_000 - 1000);
    assert_eq!(d["open_id"], "open-1");
    assert_eq!(d["scope"], "user_info");

    // Expired: a NEW access token; the old one is then unknown.
    tokio::time::advance(Duration::from_secs(1_296_000)).await;
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &act).await), 2_190_008);
    let d = refresh(&mock, &rft).await.data();
    let act2 = d["access_token"].as_str().unwrap().to_owned();
    assert_ne!(act2, act);
    assert_eq!(d["refresh_token"], rft.as_str());
    assert_eq!(d["refresh_expires_in"], 2_592_000 - 1000 - 1_296_000);
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &act).await), 2_190_002);
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &act2).await), 0);

    // The refresh token dies on schedule: 10010.
    tokio::time::advance(Duration::from_secs(2_592_000)).await;
    assert_eq!(refresh(&mock, &rft).await.code(), 10_010);
    assert_eq!(refresh(&mock, "rft.unknown").await.code(), 10_010);
    assert_eq!(mock.counters().refresh_calls, 4);
}

#[tokio::test]
async fn refresh_checks_client_key_and_form() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let r = post_form(
        &mock,
        "/oauth/refresh_token/",
        &[
            ("client_key", "other"),
            ("grant_type", "refresh_token"),
            ("refresh_token", &g.refresh_token),
        ],
    )
    .await;
    assert_eq!(r.code(), 10_003);
    let r = post_json(
        &mock,
        "/oauth/refresh_token/",
        json!({"client_key": DEFAULT_CLIENT_KEY, "grant_type": "refresh_token", "refresh_token": g.refresh_token}),
    )
    .await;
    assert_eq!(r.code(), 2_100_005);
    assert_eq!(mock.counters().code_exchanges, 0);
}

#[tokio::test]
async fn renew_kills_the_old_refresh_token_and_stops_after_five() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let mut rft = g.refresh_token.clone();
    for _ in 0..5 {
        let r = renew(&mock, &rft).await;
        assert_eq!(r.code(), 0, "{:?}", r.raw);
        let d = r.data();
        let new = d["refresh_token"].as_str().unwrap().to_owned();
        assert!(new.starts_with("rft."));
        assert_ne!(new, rft);
        assert_eq!(d["expires_in"], 2_592_000);
        // The old one is dead at once, for refresh and renewal alike.
        assert_eq!(refresh(&mock, &rft).await.code(), 10_010);
        assert_eq!(renew(&mock, &rft).await.code(), 10_010);
        rft = new;
    }
    let r = renew(&mock, &rft).await;
    assert_eq!(r.code(), 10_020);
    // The limit does not kill the current refresh token.
    let d = refresh(&mock, &rft).await.data();
    assert_eq!(d["access_token"], g.access_token.as_str());
    let c = mock.counters();
    assert_eq!(c.renew_calls, 11);
    assert_eq!(c.refresh_calls, 6);
}

#[tokio::test]
async fn revoking_a_user_kills_api_access_and_refresh() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    assert_eq!(mock.revoke_user("open-1"), 1);
    assert_eq!(
        shape1_code(&api(&mock, "/data/x/", &g.access_token).await),
        2_190_002
    );
    assert_eq!(refresh(&mock, &g.refresh_token).await.code(), 10_010);

    let g = mock.issue_user_tokens("open-2", ["user_info"]);
    assert!(mock.revoke_token(&g.refresh_token));
    assert!(!mock.revoke_token(&g.refresh_token));
    assert_eq!(
        shape1_code(&api(&mock, "/data/x/", &g.access_token).await),
        2_190_002
    );
}

#[tokio::test]
async fn expire_one_token() {
    let mock = MockDouyin::start().await.unwrap();
    let a = mock.issue_user_tokens("open-1", ["user_info"]);
    let b = mock.issue_user_tokens("open-2", ["user_info"]);
    assert!(mock.expire_token(&a.access_token));
    assert!(!mock.expire_token("act.unknown"));
    assert_eq!(
        shape1_code(&api(&mock, "/data/x/", &a.access_token).await),
        2_190_008
    );
    assert_eq!(
        shape1_code(&api(&mock, "/data/x/", &b.access_token).await),
        0
    );
    // Refresh gives a new access token after the knob expired the old one.
    let d = refresh(&mock, &a.refresh_token).await.data();
    assert_ne!(d["access_token"], a.access_token.as_str());
    // Expiring a refresh token: 10010.
    assert!(mock.expire_token(&b.refresh_token));
    assert_eq!(refresh(&mock, &b.refresh_token).await.code(), 10_010);
    // Expiring a code: 10007.
    let code = mock.authorize("open-3", ["user_info"]);
    assert!(mock.expire_token(&code));
    assert_eq!(exchange(&mock, &code).await.code(), 10_007);
}

#[tokio::test]
async fn expire_all_tokens_expires_client_and_user_tokens_but_not_refresh_tokens() {
    let mock = MockDouyin::start().await.unwrap();
    let clt = client_token(&mock).await;
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    mock.expire_all_tokens();
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &clt).await), 2_190_008);
    assert_eq!(
        shape1_code(&api(&mock, "/data/x/", &g.access_token).await),
        2_190_008
    );
    assert_eq!(refresh(&mock, &g.refresh_token).await.code(), 0);
}

// ----- protected APIs -----

#[tokio::test]
async fn shape1_success_expired_invalid_and_open_id() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["fans.data"]);
    let r = api(
        &mock,
        "/data/external/user/fans/?open_id=open-1",
        &g.access_token,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(shape1_code(&r), 0);
    let d = r.data();
    assert_eq!(d["open_id"], "open-1");
    assert_eq!(d["description"], "");
    assert_eq!(d["path"], "/data/external/user/fans/");

    // open_id of another user: a mismatch, not an expiry.
    let r = api(
        &mock,
        "/data/external/user/fans/?open_id=open-2",
        &g.access_token,
    )
    .await;
    assert_eq!(shape1_code(&r), 2_190_015);

    let r = api(&mock, "/data/external/user/fans/", "act.unknown").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(shape1_code(&r), 2_190_002);

    mock.expire_token(&g.access_token);
    let r = api(&mock, "/data/external/user/fans/", &g.access_token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(shape1_code(&r), 2_190_008);

    // No token at all: invalid.
    let req = request(&mock, "GET", "/data/external/user/fans/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(shape1_code(&send(&mock, req).await), 2_190_002);

    let c = mock.counters();
    assert_eq!(c.api_calls, 5);
    assert_eq!(c.api_expired, 1);
    assert_eq!(c.api_invalid, 2);
}

#[tokio::test]
async fn shape2_goodlife_has_the_code_only_in_extra() {
    let mock = MockDouyin::start().await.unwrap();
    let clt = client_token(&mock).await;
    let r = api(&mock, "/goodlife/v1/shop/poi/query/", &clt).await;
    let v = r.json();
    assert_eq!(v["extra"]["error_code"], 0, "{v}");
    assert!(v["data"].get("error_code").is_none(), "{v}");
    assert_eq!(v["data"]["token_type"], "client");

    let r = api(&mock, "/goodlife/v1/shop/poi/query/", "clt.unknown").await;
    let v = r.json();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(v["extra"]["error_code"], 2_190_002, "{v}");
    assert!(v["extra"]["logid"].is_string());
    assert!(v["data"].get("error_code").is_none(), "{v}");

    mock.expire_all_tokens();
    let v = api(&mock, "/goodlife/v1/shop/poi/query/", &clt)
        .await
        .json();
    assert_eq!(v["extra"]["error_code"], 2_190_008, "{v}");
}

#[tokio::test]
async fn shape3_api_family_uses_err_no() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let v = api(&mock, "/api/douyin/v1/user/info/", &g.access_token)
        .await
        .json();
    assert_eq!(v["err_no"], 0, "{v}");
    assert_eq!(v["err_msg"], "success");
    assert!(v["log_id"].is_string());
    assert_eq!(v["data"]["open_id"], "open-1");

    let r = api(&mock, "/api/douyin/v1/user/info/", "act.unknown").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["err_no"], 28_001_003, "{v}");
    assert!(v["err_msg"].is_string());
    assert_eq!(v["data"], json!({}));

    mock.expire_token(&g.access_token);
    let v = api(&mock, "/api/douyin/v1/user/info/", &g.access_token)
        .await
        .json();
    assert_eq!(v["err_no"], 28_001_008, "{v}");

    let g2 = mock.issue_user_tokens("open-2", ["user_info"]);
    let v = api(
        &mock,
        "/api/douyin/v1/user/info/?open_id=open-9",
        &g2.access_token,
    )
    .await
    .json();
    assert_eq!(v["err_no"], 28_001_015, "{v}");
}

/// Douyin reads the token only where each API family documents it: the mock refuses a valid
/// token anywhere else, as Douyin would (it sees no token).
#[tokio::test]
async fn the_token_counts_only_where_the_family_reads_it() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let with = |path: &str, header: &str, value: String| {
        request(&mock, "POST", path)
            .header(header, value)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"cursor\": 0}")))
            .unwrap()
    };
    // `Authorization: Bearer` is not read by Douyin.
    let r = send(
        &mock,
        with(
            "/data/x/",
            "authorization",
            format!("Bearer {}", g.access_token),
        ),
    )
    .await;
    assert_eq!(shape1_code(&r), 2_190_002);
    // `access-token` is.
    let r = send(
        &mock,
        with("/data/x/", "access-token", g.access_token.clone()),
    )
    .await;
    assert_eq!(shape1_code(&r), 0);
    assert_eq!(r.data()["open_id"], "open-1");
    // `/oauth/userinfo/` also reads the `access_token` header (the official SDK sends it so).
    let r = send(
        &mock,
        with("/oauth/userinfo/", "access_token", g.access_token.clone()),
    )
    .await;
    assert_eq!(shape1_code(&r), 0);
    // The generic `/api/…` family reads only the `access-token` header.
    let r = send(
        &mock,
        with("/api/x/", "access_token", g.access_token.clone()),
    )
    .await;
    assert_eq!(r.json()["err_no"], 28_001_003);

    // The older query parameter, on the APIs documented with it.
    let path = format!(
        "/oauth/userinfo/?access_token={}&open_id=open-1",
        g.access_token
    );
    let req = request(&mock, "GET", &path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&mock, req).await;
    assert_eq!(shape1_code(&r), 0);
    assert_eq!(r.data()["nickname"], "mock user open-1");
    let path = format!("/goodlife/v1/x/?access_token={}", g.access_token);
    let req = request(&mock, "GET", &path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send(&mock, req).await;
    assert_eq!(r.json()["extra"]["error_code"], 2_190_002);

    // And a form-body field on `/oauth/userinfo/`.
    let req = request(&mock, "POST", "/oauth/userinfo/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "open_id=open-1&access_token={}",
            g.access_token
        ))))
        .unwrap();
    assert_eq!(shape1_code(&send(&mock, req).await), 0);
}

/// A user API refuses a client token (and a life-service API a user token), as Douyin does.
#[tokio::test]
async fn user_apis_take_only_user_tokens() {
    let mock = MockDouyin::start().await.unwrap();
    let clt = client_token(&mock).await;
    let g = mock.issue_user_tokens("open-1", ["fans.data"]);
    for path in [
        "/oauth/userinfo/",
        "/data/external/user/fans/?open_id=open-1",
    ] {
        let r = api(&mock, path, &clt).await;
        assert_eq!(shape1_code(&r), 2_190_002, "{path}");
        assert_eq!(shape1_code(&api(&mock, path, &g.access_token).await), 0);
    }
    let r = api(&mock, "/goodlife/v1/shop/poi/query/", &g.access_token).await;
    assert_eq!(r.json()["extra"]["error_code"], 2_190_002);
    let c = mock.counters();
    assert_eq!((c.api_wrong_kind, c.api_invalid), (3, 3));
}

#[tokio::test]
async fn http_401_path_and_knob() {
    let mock = MockDouyin::start().await.unwrap();
    let clt = client_token(&mock).await;
    // The /test/401/ family answers 401 on a bad token, 200 on a good one.
    let r = api(&mock, "/test/401/data/", "clt.unknown").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(shape1_code(&r), 2_190_002);
    let r = api(&mock, "/test/401/data/", &clt).await;
    assert_eq!(r.status, StatusCode::OK);

    // The knob switches every family to 401.
    let r = api(&mock, "/api/x/", "clt.unknown").await;
    assert_eq!(r.status, StatusCode::OK);
    mock.answer_401_on_expiry(true);
    let r = api(&mock, "/api/x/", "clt.unknown").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["err_no"], 28_001_003);
    let r = api(&mock, "/data/x/", &clt).await;
    assert_eq!(r.status, StatusCode::OK);
    mock.answer_401_on_expiry(false);
    assert_eq!(
        api(&mock, "/data/x/", "clt.unknown").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn authorization_page_renders_the_consent_page() {
    let mock = MockDouyin::start().await.unwrap();
    let req = request(
        &mock,
        "GET",
        "/platform/oauth/connect/?client_key=mock_client_key&response_type=code&scope=user_info\
         &redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=xyz",
    )
    .body(Full::new(Bytes::new()))
    .unwrap();
    let r = send(&mock, req).await;
    assert_eq!(r.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&r.raw);
    assert!(
        html.contains("id=\"allow\"") && html.contains("id=\"deny\""),
        "{html}"
    );
    assert!(html.contains("name=\"state\" value=\"xyz\""), "{html}");

    // Without a redirect_uri: Douyin's parameter error, as a page.
    let req = request(
        &mock,
        "GET",
        "/platform/oauth/connect/?client_key=mock_client_key&response_type=code&scope=user_info",
    )
    .body(Full::new(Bytes::new()))
    .unwrap();
    let r = send(&mock, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.raw).contains("data-code=\"2100005\""));
    assert_eq!(mock.counters().api_calls, 0);
}

// ----- failure knobs -----

#[tokio::test]
async fn injected_error_codes_then_recovery() {
    let mock = MockDouyin::start().await.unwrap();
    mock.fail_next_token_calls(2, TokenFailure::Code(2_100_004));
    mock.fail_next_token_calls(1, TokenFailure::Code(10_020));
    let r = post_json(&mock, "/oauth/client_token/", creds()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.code(), 2_100_004);
    assert!(r.json()["extra"]["logid"].is_string());
    assert_eq!(
        post_json(&mock, "/oauth/stable_client_token/", creds())
            .await
            .code(),
        2_100_004
    );
    assert_eq!(
        post_json(&mock, "/oauth/client_token/", creds())
            .await
            .code(),
        10_020
    );
    let t = client_token(&mock).await;
    let c = mock.counters();
    assert_eq!(c.client_token_calls, 3);
    assert_eq!(c.stable_client_token_calls, 1);
    assert_eq!(c.all_client_token_calls(), 4);
    // The failed calls issued nothing: t is the first token, and one more keeps it valid.
    client_token(&mock).await;
    assert_eq!(shape1_code(&api(&mock, "/data/x/", &t).await), 0);
}

#[tokio::test]
async fn injected_http_status_and_malformed_body() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    mock.fail_next_token_calls(
        1,
        TokenFailure::HttpStatus(StatusCode::INTERNAL_SERVER_ERROR),
    );
    mock.fail_next_token_calls(1, TokenFailure::Malformed);
    let r = refresh(&mock, &g.refresh_token).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(serde_json::from_slice::<Value>(&r.raw).is_err());
    let r = renew(&mock, &g.refresh_token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&r.raw).is_err());
    // The malformed renewal did not rotate the refresh token.
    assert_eq!(refresh(&mock, &g.refresh_token).await.code(), 0);

    mock.fail_next_token_calls(3, TokenFailure::Malformed);
    mock.clear_token_failures();
    assert_eq!(refresh(&mock, &g.refresh_token).await.code(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_token_answers_on_the_tokio_clock() {
    let mock = MockDouyin::start().await.unwrap();
    mock.set_token_latency(Duration::from_secs(3));
    let start = tokio::time::Instant::now();
    client_token(&mock).await;
    assert!(start.elapsed() >= Duration::from_secs(3));
    // APIs are not delayed.
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let start = tokio::time::Instant::now();
    api(&mock, "/data/x/", &g.access_token).await;
    assert!(start.elapsed() < Duration::from_secs(3));
    mock.set_token_latency(Duration::ZERO);
    let start = tokio::time::Instant::now();
    client_token(&mock).await;
    assert!(start.elapsed() < Duration::from_secs(3));
}

// ----- handle -----

#[tokio::test]
async fn counters_reset_and_debug_hides_secrets() {
    let mock = MockDouyin::start().await.unwrap();
    let t = client_token(&mock).await;
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    api(&mock, "/data/x/", &t).await;
    assert_eq!(mock.counters().api_calls, 1);
    mock.reset_counters();
    assert_eq!(mock.counters(), Default::default());

    let dbg = format!("{mock:?}");
    assert!(dbg.contains(&mock.addr().to_string()));
    assert!(!dbg.contains(DEFAULT_CLIENT_SECRET), "{dbg}");
    assert!(!dbg.contains(&t), "{dbg}");
    let dbg = format!("{g:?}");
    assert!(
        !dbg.contains(&g.access_token) && !dbg.contains(&g.refresh_token),
        "{dbg}"
    );
    let dbg = format!("{:?}", MockDouyin::builder());
    assert!(!dbg.contains(DEFAULT_CLIENT_SECRET), "{dbg}");
}

#[tokio::test]
async fn base_url_and_shutdown() {
    let mock = MockDouyin::start().await.unwrap();
    let addr = mock.addr();
    assert_eq!(mock.base_url(), format!("http://127.0.0.1:{}", addr.port()));
    mock.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn two_mocks_are_independent() {
    let a = MockDouyin::start().await.unwrap();
    let b = MockDouyin::start().await.unwrap();
    assert_ne!(a.addr(), b.addr());
    let t = client_token(&a).await;
    assert_eq!(shape1_code(&api(&b, "/data/x/", &t).await), 2_190_002);
}

#[tokio::test(start_paused = true)]
async fn client_token_endpoint_is_rate_limited() {
    let mock = MockDouyin::builder()
        .client_token_rate_limit(3, Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        client_token(&mock).await;
    }
    assert_eq!(
        post_json(&mock, "/oauth/client_token/", creds())
            .await
            .code(),
        10_020
    );
    // The stable endpoint is not limited.
    stable_token(&mock).await;
    tokio::time::advance(Duration::from_secs(300)).await;
    client_token(&mock).await;
    assert_eq!(mock.counters().client_token_calls, 5);
}

#[tokio::test]
async fn numbers_as_strings_knob() {
    let mock = MockDouyin::start().await.unwrap();
    mock.answer_numbers_as_strings(true);
    let v = post_json(&mock, "/oauth/client_token/", creds())
        .await
        .json();
    assert_eq!(v["message"], "<nil>");
    assert_eq!(v["data"]["error_code"], "0");
    assert_eq!(v["data"]["expires_in"], "7200");
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    let v = refresh(&mock, &g.refresh_token).await.json();
    assert_eq!(v["data"]["refresh_expires_in"], "2592000");
    mock.answer_numbers_as_strings(false);
    assert_eq!(
        post_json(&mock, "/oauth/client_token/", creds())
            .await
            .code(),
        0
    );
}

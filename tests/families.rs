//! Every token family end to end over loopback HTTP: the family's token source behind the
//! layer, against the embedded mock, which answers in that family's shapes and reads the token
//! only where Douyin reads it for that family.
#![cfg(all(feature = "mock", feature = "https"))]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use douyin_auth::douyin::codes::Family;
use douyin_auth::douyin::{
    BusinessTokens, LoginCode, MiniAppCredentials, MiniGameCredentials, MINI_APP_BASE_URL,
};
use douyin_auth::expiry::DouyinExpiry;
use douyin_auth::mock::MockDouyin;
use douyin_auth::store::{MemoryStore, SharedSource};
use douyin_auth::{BoxError, DouyinAuthLayer, Error, Token, TokenPlacement, TokenSource};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Layer, ServiceExt};

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get_json<S>(svc: S, url: &str) -> Value
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

/// The code of an answer in any of the shapes the mock sends.
fn code(v: &Value) -> i64 {
    ["err_no", "errcode"]
        .iter()
        .find_map(|k| v[k].as_i64())
        .or(v["data"]["error_code"].as_i64())
        .or(v["extra"]["error_code"].as_i64())
        .unwrap_or_else(|| panic!("no code in {v}"))
}

/// `n` concurrent calls to `path`, then every token expires, then `n` more: every call
/// succeeds. Returns the answers of the second round.
async fn two_rounds<S>(mock: &MockDouyin, svc: S, path: &str, n: usize) -> Vec<Value>
where
    S: tower::Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<douyin_auth::ResponseBody<hyper::body::Incoming>>,
            Error = Error,
        > + Clone,
{
    let url = format!("{}{path}", mock.base_url());
    let first = join_all((0..n).map(|_| get_json(svc.clone(), &url))).await;
    for a in &first {
        assert_eq!(code(a), 0, "{a}");
    }
    mock.expire_all_tokens();
    let second = join_all((0..n).map(|_| get_json(svc.clone(), &url))).await;
    for a in &second {
        assert_eq!(code(a), 0, "{a}");
    }
    second
}

// ----- mini-app -----

#[tokio::test]
async fn mini_app_one_fetch_for_many_calls_and_one_refresh_after_expiry() {
    let mock = MockDouyin::start().await.unwrap();
    let app =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let svc = DouyinAuthLayer::builder(app)
        .classifier(DouyinExpiry::for_family(Family::MiniApp))
        .build()
        .layer(http());
    let answers = two_rounds(&mock, svc, "/api/apps/v2/qrcode/create/", 24).await;
    assert_eq!(answers[0]["data"]["token_type"], "mini_app");
    let c = mock.counters();
    assert_eq!(c.mini_app_token_calls, 2, "one fetch, one refresh");
    // The 24 calls of the second round met the expired token once each, in the family's
    // `err_no` shape (28001008), and were sent again.
    assert_eq!(c.api_expired, 24);
    assert_eq!(c.api_calls, 24 * 3);
}

#[tokio::test]
async fn mini_app_old_apis_answer_40002_which_the_family_classifier_reads() {
    let mock = MockDouyin::start().await.unwrap();
    let app =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let svc = DouyinAuthLayer::builder(app)
        .classifier(DouyinExpiry::for_family(Family::MiniApp))
        .build()
        .layer(http());
    let answers = two_rounds(&mock, svc, "/api/apps/qrcode/", 8).await;
    assert_eq!(answers[0]["errcode"], 0);
    assert_eq!(mock.counters().mini_app_token_calls, 2);
}

#[tokio::test]
async fn mini_app_instances_share_one_token_through_a_store() {
    let mock = MockDouyin::start().await.unwrap();
    let store = MemoryStore::new();
    let instance = || {
        let app = MiniAppCredentials::new(mock.client_key(), mock.client_secret())
            .base_url(mock.base_url());
        let shared = SharedSource::new(app, store.clone(), "mini_app_token:test");
        DouyinAuthLayer::new(shared).layer(http())
    };
    let (a, b) = (instance(), instance());
    let url = format!("{}/api/apps/v2/x/", mock.base_url());
    let first = get_json(a.clone(), &url).await;
    let second = get_json(b.clone(), &url).await;
    assert_eq!((code(&first), code(&second)), (0, 0));
    assert_eq!(
        mock.counters().mini_app_token_calls,
        1,
        "the second adopted it"
    );
}

#[tokio::test]
async fn a_new_mini_app_token_cuts_the_old_one_to_five_minutes() {
    let mock = MockDouyin::start().await.unwrap();
    let app =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let old = app.fetch().await.unwrap();
    let _new = app.fetch().await.unwrap();
    let call = |token: String| {
        let url = format!("{}/api/apps/v2/x/", mock.base_url());
        async move {
            let r = reqwest_like_get(&url, "access-token", &token).await;
            code(&r)
        }
    };
    assert_eq!(call(old.secret().to_owned()).await, 0);
    mock.advance_clock(std::time::Duration::from_secs(301));
    assert_eq!(call(old.secret().to_owned()).await, 28_001_008);
}

/// A plain GET with one header, no layer.
async fn reqwest_like_get(url: &str, header: &str, value: &str) -> Value {
    let req = http::Request::get(url)
        .header(header, value)
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = http().request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn mini_app_login() {
    let mock = MockDouyin::start().await.unwrap();
    let app =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let code = mock.login_code("user-7");
    let s = app.code2session(&LoginCode::new(&code)).await.unwrap();
    assert_eq!(s.openid(), Some("user-7"));
    assert_eq!(s.unionid(), Some("union-user-7"));
    assert!(s.session_key().is_some_and(|k| !k.is_empty()));
    // A code works once.
    let e = app.code2session(&LoginCode::new(&code)).await.unwrap_err();
    assert_eq!(e.douyin().map(|d| d.code()), Some(40_018));
    let bad = MiniAppCredentials::new(mock.client_key(), "wrong").base_url(mock.base_url());
    let e = bad
        .code2session(&LoginCode::new(mock.login_code("u")))
        .await
        .unwrap_err();
    assert_eq!(e.douyin().map(|d| d.code()), Some(40_017));
    assert!(!format!("{e} {e:?}").contains("wrong"));
    assert_eq!(MINI_APP_BASE_URL, "https://developer.toutiao.com");
}

// ----- mini-game -----

fn game(mock: &MockDouyin) -> MiniGameCredentials<douyin_auth::douyin::HttpsClient> {
    MiniGameCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url())
}

#[tokio::test]
async fn mini_game_stable_token_one_fetch_and_one_refresh_after_expiry() {
    let mock = MockDouyin::start().await.unwrap();
    let svc = DouyinAuthLayer::builder(game(&mock))
        .placement(TokenPlacement::access_token_underscore())
        .build()
        .layer(http());
    let answers = two_rounds(&mock, svc, "/mgplatform/api/apps/set_user_storage/", 24).await;
    assert_eq!(answers[0]["data"]["token_type"], "mini_game");
    let c = mock.counters();
    assert_eq!(c.mini_game_stable_token_calls, 2, "one fetch, one refresh");
    assert_eq!(
        c.mini_game_force_refreshes, 0,
        "expiry needs no forced refresh"
    );
    assert_eq!(c.mini_game_token_calls, 0);
    // Rejected in the family's `errcode` shape (40004), then sent again.
    assert_eq!(c.api_expired, 24);
}

#[tokio::test]
async fn mini_game_apis_read_the_underscore_header_only() {
    let mock = MockDouyin::start().await.unwrap();
    let svc = DouyinAuthLayer::new(game(&mock)).layer(http());
    let url = format!("{}/mgplatform/api/apps/set_user_storage/", mock.base_url());
    let a = get_json(svc, &url).await;
    assert_eq!(
        a["errcode"], 40_004,
        "the access-token header is not read there: {a}"
    );
}

/// The layer's refresh after a rejection calls `fetch_replacing`: the stable endpoint hands the
/// rejected token back, so the source forces one refresh, and only one.
#[tokio::test]
async fn a_rejected_stable_token_is_force_refreshed_once() {
    let mock = MockDouyin::start().await.unwrap();
    let game = game(&mock);
    let t1 = game.fetch().await.unwrap();
    assert_eq!(game.fetch().await.unwrap(), t1, "stable: the same token");
    let t2 = game.fetch_replacing(&t1).await.unwrap();
    assert_ne!(t2, t1);
    // The forced refresh killed the old token at once.
    let url = format!("{}/mgplatform/api/apps/x/", mock.base_url());
    assert_eq!(
        code(&reqwest_like_get(&url, "access_token", t1.secret()).await),
        40_004
    );
    assert_eq!(
        code(&reqwest_like_get(&url, "access_token", t2.secret()).await),
        0
    );
    // Rejected again at once: not forced again; the rejected token comes back.
    assert_eq!(game.fetch_replacing(&t2).await.unwrap(), t2);
    // Replacing a token the endpoint no longer hands out costs no forced refresh.
    assert_eq!(game.fetch_replacing(&t1).await.unwrap(), t2);
    let c = mock.counters();
    assert_eq!(c.mini_game_force_refreshes, 1);
    assert_eq!(c.mini_game_stable_token_calls, 6);
}

#[tokio::test]
async fn mini_game_classic_token_and_login() {
    let mock = MockDouyin::start().await.unwrap();
    let svc = DouyinAuthLayer::builder(game(&mock).classic())
        .placement(TokenPlacement::access_token_underscore())
        .build()
        .layer(http());
    two_rounds(&mock, svc, "/mgplatform/api/apps/x/", 8).await;
    assert_eq!(mock.counters().mini_game_token_calls, 2);

    let g = game(&mock);
    let s = g
        .code2session(
            &LoginCode::new(mock.login_code("user-1"))
                .with_anonymous_code(mock.anonymous_login_code("anon-1")),
        )
        .await
        .unwrap();
    assert_eq!(
        (s.openid(), s.anonymous_openid()),
        (Some("user-1"), Some("anon-1"))
    );
    let s = g
        .code2session(&LoginCode::anonymous(mock.anonymous_login_code("anon-2")))
        .await
        .unwrap();
    assert_eq!((s.openid(), s.anonymous_openid()), (None, Some("anon-2")));
    assert_eq!(s.session_key(), None);
    assert_eq!(mock.counters().code2session_calls, 2);
}

// ----- live-interactive tools -----

#[tokio::test]
async fn live_tool_card_apis_read_x_token() {
    let mock = MockDouyin::start().await.unwrap();
    let svc = DouyinAuthLayer::builder(game(&mock))
        .placement(TokenPlacement::x_token())
        .classifier(DouyinExpiry::for_family(Family::LiveTools))
        .build()
        .layer(http());
    two_rounds(&mock, svc, "/api/card/default/set/", 8).await;
    let plain = DouyinAuthLayer::new(game(&mock)).layer(http());
    let url = format!("{}/api/card/default/set/", mock.base_url());
    assert_eq!(get_json(plain.clone(), &url).await["errcode"], 40_004);
    // The live-data APIs read the `access-token` header.
    let url = format!("{}/api/live_data/task/start/", mock.base_url());
    assert_eq!(code(&get_json(plain, &url).await), 0);
}

// ----- business tokens -----

#[tokio::test]
async fn business_tokens_are_persisted_before_use_and_refreshed_once() {
    let mock = MockDouyin::start().await.unwrap();
    mock.issue_user_tokens("acct-1", ["data.external.item"]);
    let persisted: Arc<Mutex<Vec<Token>>> = Arc::default();
    let p = persisted.clone();
    let biz = BusinessTokens::new(
        mock.client_key(),
        mock.client_secret(),
        "acct-1",
        "data.external.item",
    )
    .base_url(mock.base_url())
    .on_refresh(move |t: Token| {
        let p = p.clone();
        async move {
            p.lock().unwrap().push(t);
            Ok::<_, BoxError>(())
        }
    });
    // The inner client refuses to send a token that has not been persisted yet.
    let p = persisted.clone();
    let client = http();
    let guarded = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let token = req.headers()["access-token"].to_str().unwrap().to_owned();
        assert!(
            p.lock().unwrap().iter().any(|t| t.secret() == token),
            "a business token was used before it was persisted"
        );
        client.clone().oneshot(req)
    });
    let svc = DouyinAuthLayer::new(biz).layer(guarded);
    let answers = two_rounds(&mock, svc, "/data/external/item/base/?open_id=acct-1", 16).await;
    assert_eq!(answers[0]["data"]["token_type"], "business");
    assert_eq!(answers[0]["data"]["open_id"], "acct-1");
    let c = mock.counters();
    assert_eq!(c.business_token_calls, 1);
    assert_eq!(c.biz_refresh_calls, 1);
    let persisted = persisted.lock().unwrap();
    assert_eq!(persisted.len(), 2);
    assert!(persisted.iter().all(|t| t.refresh_token().is_some()));
    assert_ne!(persisted[0].refresh_token(), persisted[1].refresh_token());
}

#[tokio::test]
async fn a_business_token_needs_the_scope_and_a_persisted_one_is_adopted() {
    let mock = MockDouyin::start().await.unwrap();
    let biz = |scope: &str| {
        BusinessTokens::new(mock.client_key(), mock.client_secret(), "acct-2", scope)
            .base_url(mock.base_url())
    };
    let e = biz("not.granted").fetch_token().await.unwrap_err();
    assert_eq!(e.douyin().map(|d| d.code()), Some(2_190_004));

    mock.issue_user_tokens("acct-2", ["s1"]);
    let first = biz("s1").fetch_token().await.unwrap();
    // A restart with the persisted token: adopted without a call, then refreshed with its
    // refresh token (which the mock rotates).
    let restarted = biz("s1").stored(first.clone());
    assert_eq!(restarted.fetch_token().await.unwrap(), first);
    let refreshed = restarted.fetch_token().await.unwrap();
    assert_ne!(refreshed, first);
    let c = mock.counters();
    assert_eq!((c.business_token_calls, c.biz_refresh_calls), (2, 1));
    // The consumed refresh token is dead: the old source falls back to a new business token.
    let old = biz("s1").stored(
        Token::new(first.secret(), std::time::Duration::from_secs(1)).with_refresh_token(
            first.refresh_token().unwrap(),
            std::time::Duration::from_secs(86_400),
        ),
    );
    assert!(old.fetch_token().await.is_ok());
    let c = mock.counters();
    assert_eq!((c.business_token_calls, c.biz_refresh_calls), (3, 2));
}

// ----- the strict mock -----

#[tokio::test]
async fn app_tokens_are_refused_by_openapi_user_apis_and_client_tokens_by_app_apis() {
    let mock = MockDouyin::start().await.unwrap();
    let t = game(&mock).fetch_token().await.unwrap();
    let url = format!("{}/oauth/userinfo/", mock.base_url());
    let r = reqwest_like_get(&url, "access-token", t.secret()).await;
    assert_eq!(code(&r), 2_190_002);
    let clt = douyin_auth::douyin::ClientCredentials::new(mock.client_key(), mock.client_secret())
        .base_url(mock.base_url())
        .fetch_token()
        .await
        .unwrap();
    let url = format!("{}/api/apps/v2/x/", mock.base_url());
    let r = reqwest_like_get(&url, "access-token", clt.secret()).await;
    assert_eq!(code(&r), 28_001_003);
    assert_eq!(mock.counters().api_wrong_kind, 2);
}

// ----- the per-user layer puts the user's open_id where the API wants it -----

#[tokio::test]
async fn the_user_layer_sends_the_tokens_own_open_id() {
    let mock = MockDouyin::start().await.unwrap();
    let g1 = mock.issue_user_tokens("open-1", ["fans.data"]);
    let g2 = mock.issue_user_tokens("open-2", ["fans.data"]);
    let tokens = Arc::new(std::collections::HashMap::from([
        ("open-1".to_owned(), g1.access_token.clone()),
        ("open-2".to_owned(), g2.access_token.clone()),
    ]));
    let users = move |open_id: &str| {
        let token = tokens.get(open_id).cloned().unwrap_or_default();
        douyin_auth::StaticToken::new(token)
    };
    let call = |layer: douyin_auth::users::UserTokenLayer| {
        let url = format!(
            "{}/data/external/user/fans/?open_id=open-2&cursor=0",
            mock.base_url()
        );
        async move {
            let mut req = http::Request::get(url)
                .body(Full::<Bytes>::default())
                .unwrap();
            req.extensions_mut()
                .insert(douyin_auth::users::OpenId::new("open-1"));
            let res = layer.layer(http()).oneshot(req).await.unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };
    // Without the option the caller's open_id goes out with user 1's token: a mismatch.
    let plain = douyin_auth::users::UserTokenLayer::new(users.clone());
    assert_eq!(code(&call(plain).await), 2_190_015);
    // With it, the request carries the token's own user.
    let placed = douyin_auth::users::UserTokenLayer::builder(users)
        .open_id_query("open_id")
        .build();
    let a = call(placed).await;
    assert_eq!(code(&a), 0, "{a}");
    assert_eq!(a["data"]["open_id"], "open-1");
}

// ----- the mock's caps, and secrets -----

async fn post_json(url: &str, body: Value) -> Value {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = http().request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_mock_allows_twenty_forced_refreshes_a_day() {
    let mock = MockDouyin::start().await.unwrap();
    let url = format!("{}/mgplatform/api/apps/stable_token", mock.base_url());
    let ask = |force: bool| {
        post_json(
            &url,
            serde_json::json!({"appid": mock.client_key(), "secret": mock.client_secret(),
                "grant_type": "client_credential", "force_refresh": force}),
        )
    };
    let mut last = ask(false).await["data"]["access_token"].clone();
    assert_eq!(ask(false).await["data"]["access_token"], last, "idempotent");
    for _ in 0..20 {
        let t = ask(true).await["data"]["access_token"].clone();
        assert_ne!(t, last);
        last = t;
    }
    let refused = ask(true).await;
    assert_eq!(refused["err_no"], 10_020, "{refused}");
    assert_eq!(ask(false).await["data"]["access_token"], last);
    mock.advance_clock(std::time::Duration::from_secs(24 * 3600));
    assert_eq!(ask(true).await["err_no"], 0);
    assert_eq!(mock.counters().mini_game_force_refreshes, 21);
}

#[tokio::test]
async fn no_secret_of_the_new_families_shows() {
    let mock = MockDouyin::start().await.unwrap();
    let app = MiniAppCredentials::new("tt_app", "APP-SECRET-1").base_url(mock.base_url());
    let game = MiniGameCredentials::new("tt_game", "APP-SECRET-2").base_url(mock.base_url());
    let biz = BusinessTokens::new("key", "APP-SECRET-3", "acct", "scope")
        .base_url(mock.base_url())
        .stored(
            Token::new("bzt.SECRET-4", std::time::Duration::from_secs(60))
                .with_refresh_token("bzr.SECRET-5", std::time::Duration::from_secs(60)),
        );
    let code = LoginCode::new("CODE-SECRET-6").with_anonymous_code("CODE-SECRET-7");
    let mut shown = format!("{app:?} {game:?} {biz:?} {code:?}");
    // Failures of each: wrong secrets, a used code.
    for e in [
        app.fetch_token().await.unwrap_err(),
        game.fetch_token().await.unwrap_err(),
        app.code2session(&code).await.unwrap_err(),
        game.code2session(&code).await.unwrap_err(),
        biz.fetch_token().await.unwrap_err(),
    ] {
        shown.push_str(&format!(" {e} {e:?}"));
    }
    // A real session, and its key.
    let ok =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let session = ok
        .code2session(&LoginCode::new(mock.login_code("u")))
        .await
        .unwrap();
    let key = session.session_key().unwrap().to_owned();
    shown.push_str(&format!(" {session:?}"));
    for secret in [
        "APP-SECRET",
        "SECRET-4",
        "SECRET-5",
        "CODE-SECRET",
        key.as_str(),
    ] {
        assert!(!shown.contains(secret), "{secret} shows in: {shown}");
    }
}

#[tokio::test]
async fn every_family_reads_numbers_sent_as_strings() {
    let mock = MockDouyin::start().await.unwrap();
    mock.answer_numbers_as_strings(true);
    mock.issue_user_tokens("acct", ["s"]);
    let app =
        MiniAppCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let t = app.fetch_token().await.unwrap();
    assert_eq!(t.expires_in(), std::time::Duration::from_secs(7200));
    let g = game(&mock);
    assert_eq!(g.fetch_token().await.unwrap().expires_in().as_secs(), 7200);
    let biz = BusinessTokens::new(mock.client_key(), mock.client_secret(), "acct", "s")
        .base_url(mock.base_url());
    let b = biz.fetch_token().await.unwrap();
    assert_eq!(b.expires_in().as_secs(), 2_592_000);
    assert!(b.refresh_expires_in().is_some_and(|d| d.as_secs() > 0));
    let s = g
        .code2session(&LoginCode::new(mock.login_code("u-1")))
        .await
        .unwrap();
    assert_eq!(s.openid(), Some("u-1"));
    // What the mock sent really was strings.
    let url = format!("{}/api/apps/v2/token", mock.base_url());
    let raw = post_json(
        &url,
        serde_json::json!({"appid": mock.client_key(), "secret": mock.client_secret(),
            "grant_type": "client_credential"}),
    )
    .await;
    assert_eq!(raw["err_no"], "0");
    assert_eq!(raw["data"]["expires_in"], "7200");
}

// ----- the form-body placement -----

#[tokio::test]
async fn the_form_placement_rewrites_the_body_and_the_retry_carries_the_new_token() {
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("open-1", ["user_info"]);
    // A source that hands out the mock's token, then (after a rejection) a fresh grant's.
    let fresh = Arc::new(Mutex::new(vec![g.access_token.clone()]));
    let f = fresh.clone();
    let layer = DouyinAuthLayer::builder(douyin_auth::source_fn(move || {
        let t = f.lock().unwrap().last().cloned().unwrap();
        async move { Ok::<_, BoxError>(Token::new(t, std::time::Duration::from_secs(3600))) }
    }))
    .placement(TokenPlacement::form())
    .build();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let client = http();
    let recording = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let s = s.clone();
        let client = client.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            s.lock()
                .unwrap()
                .push(String::from_utf8(bytes.to_vec()).unwrap());
            client
                .request(http::Request::from_parts(parts, Full::new(bytes)))
                .await
        }
    });
    let svc = layer.layer(recording);
    let url = format!("{}/oauth/userinfo/", mock.base_url());
    let form = |body: &'static str| {
        http::Request::post(url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("content-length", body.len())
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let res = svc
        .clone()
        .oneshot(form("open_id=open-1&access_token=forged"))
        .await
        .unwrap();
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(code(&body), 0, "{body}");
    assert_eq!(
        seen.lock().unwrap()[0],
        format!("open_id=open-1&access_token={}", g.access_token)
    );

    // The token is revoked; the source now has another user grant's token.
    mock.revoke_token(&g.access_token);
    let g2 = mock.issue_user_tokens("open-1", ["user_info"]);
    fresh.lock().unwrap().push(g2.access_token.clone());
    let res = svc.clone().oneshot(form("open_id=open-1")).await.unwrap();
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(code(&body), 0, "{body}");
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(seen_now.len(), 3, "sent, rejected, sent once more");
    assert_eq!(
        seen_now[2],
        format!("open_id=open-1&access_token={}", g2.access_token)
    );

    // A body that is not a form, or cannot be read at once, is refused before anything is sent.
    let json = http::Request::post(url.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let err = svc.clone().oneshot(json).await.unwrap_err();
    assert!(matches!(err, Error::Body(_)), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

//! `EncryptedStore` over the real stores: the raw PostgreSQL rows and Redis values hold no
//! secret (read directly), users are refreshed through it as through any store, and a key
//! rotation reads the old entries and writes new ones with the new key.
#![cfg(all(
    feature = "postgres",
    feature = "redis",
    feature = "mock",
    feature = "https"
))]

#[path = "support/postgres.rs"]
mod pg_support;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::time::Duration;

use douyin_auth::douyin::{ClientCredentials, HttpsClient};
use douyin_auth::mock::{MockDouyin, UserGrant};
use douyin_auth::store::{
    EncryptedStore, EncryptionError, PostgresStore, RedisConfig, RedisStore, SharedSource,
    TokenStore,
};
use douyin_auth::users::{OpenId, StoredUsers, UserTokenLayer};
use douyin_auth::{Token, TokenSource};
use support::*;
use tower::{Layer, ServiceExt};

const K1: &[u8; 32] = b"first-key-of-thirty-two-bytes-ok";
const K2: &[u8; 32] = b"second-key-of-thirty-two-bytes!!";

fn user_req(open_id: &str) -> Req {
    let mut r = req("");
    r.extensions_mut().insert(OpenId::new(open_id));
    r
}

fn users<St: TokenStore>(mock: &MockDouyin, store: St) -> StoredUsers<HttpsClient, St> {
    StoredUsers::new(mock.client_key(), mock.client_secret(), store)
        .base_url(mock.base_url())
        .poll_interval(Duration::from_millis(20))
}

/// Serves one request for `open_id` through a new instance over `store`; the token it used.
async fn serve<St: TokenStore>(mock: &MockDouyin, store: St, open_id: &str) -> String {
    let rec = Recorder::new();
    UserTokenLayer::new(users(mock, store))
        .layer(rec.service(|_, _| json("{}")))
        .oneshot(user_req(open_id))
        .await
        .unwrap();
    rec.tokens().pop().unwrap()
}

/// The secrets the test knows of: the grant's tokens, the client secret, a stored pair's.
fn secrets(mock: &MockDouyin, g: &UserGrant, stored: Option<&Token>) -> Vec<String> {
    let mut s = vec![
        g.access_token.clone(),
        g.refresh_token.clone(),
        mock.client_secret().to_owned(),
    ];
    if let Some(t) = stored {
        s.push(t.secret().to_owned());
        s.extend(t.refresh_token().map(str::to_owned));
    }
    s
}

fn assert_no_secret(raw: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!raw.contains(s.as_str()), "a secret in the raw data: {raw}");
    }
}

/// The user's row, its access token used up: the next request refreshes (and writes) it.
async fn use_up_access_token(plain: &PostgresStore) {
    let raw = plain.get("user:u1").await.unwrap().unwrap();
    let used_up = Token::new(raw.secret(), Duration::ZERO)
        .with_open_id("u1")
        .with_refresh_token(
            raw.refresh_token().unwrap(),
            raw.refresh_remaining().unwrap(),
        );
    plain.put("user:u1", &used_up).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_hold_no_secret_and_keys_rotate() {
    let Some(schema) = pg_support::Schema::create("encrypted").await else {
        return;
    };
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    let plain = schema.store().await;
    let store = EncryptedStore::new(schema.store().await, "k1", K1).unwrap();
    users(&mock, store.clone())
        .save(
            &Token::new(g.access_token.clone(), Duration::ZERO)
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    let rows = schema.raw_rows().await.join("\n");
    assert!(rows.contains("enc:v1:k1:"), "{rows}");
    assert_no_secret(&rows, &secrets(&mock, &g, None));

    // Refreshed (and renewed) through the sealed store: the new pair is sealed too.
    let used = serve(&mock, store.clone(), "u1").await;
    let stored = store.get("user:u1").await.unwrap().unwrap();
    assert_eq!(used, stored.secret());
    assert_ne!(stored.refresh_token(), Some(g.refresh_token.as_str()));
    let rows = schema.raw_rows().await.join("\n");
    assert!(rows.contains("u1"), "the open_id is not secret: {rows}");
    assert_no_secret(&rows, &secrets(&mock, &g, Some(&stored)));

    // Without the key the row is an error: never a token, never "no token".
    let raw = plain.get("user:u1").await.unwrap().unwrap();
    assert!(raw.secret().starts_with("enc:v1:k1:"));
    let stranger = EncryptedStore::new(plain.clone(), "k2", K2).unwrap();
    let err = stranger.get("user:u1").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<EncryptionError>(),
        Some(&EncryptionError::UnknownKey("k1".into()))
    );
    // A row tampered with in the database: an error too.
    sqlx::query(&format!(
        "UPDATE \"{}\".douyin_auth_tokens SET refresh_token = refresh_token || 'AA' \
         WHERE key = 'user:u1'",
        schema.name
    ))
    .execute(schema.admin())
    .await
    .unwrap();
    let err = store.get("user:u1").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<EncryptionError>(),
        Some(&EncryptionError::Tampered)
    );
    plain.put("user:u1", &raw).await.unwrap();
    use_up_access_token(&plain).await;
    mock.expire_all_tokens();

    // Rotation: k2 writes, k1 still reads; the next write of the user is sealed with k2.
    let rotated = EncryptedStore::new(schema.store().await, "k2", K2)
        .unwrap()
        .with_previous_key("k1", K1)
        .unwrap();
    assert_eq!(
        rotated.get("user:u1").await.unwrap().unwrap().secret(),
        stored.secret()
    );
    let used = serve(&mock, rotated.clone(), "u1").await;
    let newest = rotated.get("user:u1").await.unwrap().unwrap();
    assert_eq!(used, newest.secret());
    assert_ne!(newest.secret(), stored.secret());
    let rows = schema.raw_rows().await.join("\n");
    assert!(
        rows.contains("enc:v1:k2:") && !rows.contains("enc:v1:k1:"),
        "{rows}"
    );
    assert_no_secret(&rows, &secrets(&mock, &g, Some(&newest)));
    assert_no_secret(&rows, &secrets(&mock, &g, Some(&stored)));
    // The old key alone no longer reads it.
    assert!(store.get("user:u1").await.is_err());
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_values_hold_no_secret() {
    let Some(url) = redis_support::shared_url().await else {
        return;
    };
    let prefix = redis_support::unique_prefix("encrypted");
    let redis = RedisStore::open(RedisConfig::new(url.as_str()).key_prefix(prefix.as_str()))
        .await
        .unwrap();
    let store = EncryptedStore::new(redis, "k1", K1).unwrap();
    let mock = MockDouyin::start().await.unwrap();
    let g = mock.issue_user_tokens("u1", ["user_info"]);
    users(&mock, store.clone())
        .save(
            &Token::new(g.access_token.clone(), Duration::ZERO)
                .with_open_id("u1")
                .with_refresh_token(g.refresh_token.clone(), Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    serve(&mock, store.clone(), "u1").await;
    let stored = store.get("user:u1").await.unwrap().unwrap();

    // The client token shared through the same sealed store.
    let creds =
        ClientCredentials::new(mock.client_key(), mock.client_secret()).base_url(mock.base_url());
    let app = SharedSource::client_token(creds, store.clone())
        .fetch()
        .await
        .unwrap();

    let mut all = secrets(&mock, &g, Some(&stored));
    all.push(app.secret().to_owned());
    let keys = redis_support::keys(&url, &format!("{prefix}*")).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let raw = redis_support::raw_get(&url, key).await.unwrap();
        assert!(raw.contains("enc:v1:k1:"), "{raw}");
        assert_no_secret(&raw, &all);
        assert_no_secret(key, &all);
    }
}

//! The conformance kit (`store::testing`) on every store of the crate: `MemoryStore`,
//! `RedisStore` (the machine's Redis), `PostgresStore` (the machine's PostgreSQL, a schema of the
//! test's own) and `EncryptedStore` over each. Each run uses two handles as two instances would:
//! separate connections (pools) to the same server.
#![cfg(all(feature = "test-util", feature = "redis", feature = "postgres"))]

#[path = "support/postgres.rs"]
mod pg_support;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::Duration;

use douyin_auth::store::testing::{self, Contract};
use douyin_auth::store::{EncryptedStore, MemoryStore, RedisConfig, RedisStore};

const KEY: [u8; 32] = *b"conformance-key-of-32-bytes-long";

fn encrypted<S>(inner: S) -> EncryptedStore<S> {
    EncryptedStore::new(inner, "k1", &KEY).unwrap()
}

async fn redis(url: &str, prefix: &str) -> RedisStore {
    RedisStore::open(
        RedisConfig::new(url)
            .key_prefix(prefix)
            .response_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    let store = MemoryStore::new();
    testing::check_store(store.clone(), store).await.unwrap();
    let store = encrypted(MemoryStore::new());
    testing::check_store(store.clone(), store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store() {
    let Some(url) = redis_support::shared_url().await else {
        return;
    };
    let prefix = redis_support::unique_prefix("conformance");
    testing::check_store(redis(&url, &prefix).await, redis(&url, &prefix).await)
        .await
        .unwrap();
    testing::check_store(
        encrypted(redis(&url, &prefix).await),
        encrypted(redis(&url, &prefix).await),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let Some(schema) = pg_support::Schema::create("conformance").await else {
        return;
    };
    testing::check_store(schema.store().await, schema.store().await)
        .await
        .unwrap();
    Contract::new()
        .contenders(24)
        .check(
            encrypted(schema.store().await),
            encrypted(schema.store().await),
        )
        .await
        .unwrap();
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store() {
    let Some(cluster) = redis_cluster::PrivateCluster::start().await else {
        return;
    };
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let connect = || RedisStore::connect_cluster(&nodes);
    testing::check_store(connect().await.unwrap(), connect().await.unwrap())
        .await
        .unwrap();
    testing::check_store(
        encrypted(connect().await.unwrap()),
        encrypted(connect().await.unwrap()),
    )
    .await
    .unwrap();
}

//! Fetches the app's client token through a store shared by every process that runs it, and
//! prints a fingerprint of it (never the token). Several copies started together make one
//! token call between them: the multi-process test runs it against the mock server.
//!
//! ```text
//! cargo run --example shared_token --features redis -- --base-url URL --redis URL [--prefix P]
//! ```
//!
//! Credentials come from `DOUYIN_CLIENT_KEY` and `DOUYIN_CLIENT_SECRET` (default: the mock
//! server's). Exit status 0 with `token <fingerprint>` on stdout, 1 on failure, 2 on bad usage.

use std::hash::{Hash, Hasher};
use std::process::ExitCode;

use douyin_auth::douyin::ClientCredentials;
use douyin_auth::store::{RedisConfig, RedisStore, SharedSource};
use douyin_auth::TokenSource;

const USAGE: &str = "usage: shared_token --base-url URL --redis URL [--prefix P]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut base_url = None;
    let mut redis = None;
    let mut prefix = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--base-url" => &mut base_url,
            "--redis" => &mut redis,
            "--prefix" => &mut prefix,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        *slot = args.next();
    }
    let (Some(base_url), Some(redis)) = (base_url, redis) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let key = std::env::var("DOUYIN_CLIENT_KEY").unwrap_or_else(|_| "mock_client_key".into());
    let secret =
        std::env::var("DOUYIN_CLIENT_SECRET").unwrap_or_else(|_| "mock_client_secret".into());

    let mut config = RedisConfig::new(redis);
    if let Some(prefix) = prefix {
        config = config.key_prefix(prefix);
    }
    let store = match RedisStore::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("redis: {e}");
            return ExitCode::from(2);
        }
    };
    let source = SharedSource::client_token(
        ClientCredentials::new(key, secret).base_url(base_url),
        store,
    );
    match source.fetch().await {
        Ok(token) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            token.secret().hash(&mut h);
            println!("token {:016x}", h.finish());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetching the token failed: {e}");
            ExitCode::FAILURE
        }
    }
}

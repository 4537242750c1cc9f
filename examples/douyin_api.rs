//! A small command-line client for any Douyin OpenAPI endpoint, with automatic app-token
//! handling: the token is fetched once, attached to every request, refreshed when it turns
//! stale, and a request answered "token expired" is sent once more.
//!
//! ```text
//! cargo run --example douyin_api -- [--credential KIND] [--base-url URL] [--data JSON] [--requests N] [--concurrency C] [--redis URL] METHOD PATH
//! ```
//!
//! - `--credential KIND` chooses the token:
//!   - `stable-client-token` (default): the OpenAPI client token from
//!     `/oauth/stable_client_token/`;
//!   - `client-token`: the same from the classic `/oauth/client_token/`;
//!   - `mini-app`: the mini-app app token (`/api/apps/v2/token`), with the mini-app code table
//!     (40002 counts as a rejected token);
//!   - `mini-game`: the mini-game app token (`/mgplatform/api/apps/stable_token`), sent in the
//!     `access_token` header as the mini-game server APIs read it.
//! - Credentials come from `DOUYIN_CLIENT_KEY` and `DOUYIN_CLIENT_SECRET` (for `mini-app` and
//!   `mini-game`: the app id and the app secret).
//! - `--base-url` defaults to `DOUYIN_BASE_URL`, else the credential kind's host
//!   (`https://open.douyin.com`; `https://developer.toutiao.com` for mini-app,
//!   `https://minigame.zijieapi.com` for mini-game); plain `http://` is accepted for loopback
//!   hosts only.
//! - The request is sent N times (default 1), C at a time (default 1), all through ONE
//!   layered client; each response body is printed on its own line on stdout, a summary on
//!   stderr.
//! - `--redis URL` (feature `redis`): share the client token with every other process that
//!   uses the same Redis (and key prefix, `DOUYIN_REDIS_PREFIX`, default `douyin-auth:`), so
//!   several copies running side by side make one token call between them.
//! - Exit status: 0 when every response was HTTP 2xx without a Douyin error code, 1 otherwise,
//!   2 on bad usage or missing credentials.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use douyin_auth::douyin::codes::Family;
use douyin_auth::douyin::{
    check_answer, ClientCredentials, HttpsClient, MiniAppCredentials, MiniGameCredentials,
    MINI_APP_BASE_URL, MINI_GAME_BASE_URL,
};
use douyin_auth::expiry::DouyinExpiry;
use douyin_auth::{BoxError, DouyinAuthLayer, Error, Token, TokenPlacement, TokenSource};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

#[path = "../src/bin/douyin/base_url.rs"]
mod base_url;
#[path = "../src/bin/douyin/describe.rs"]
mod describe;
use describe::describe;

const USAGE: &str =
    "usage: douyin_api [--credential KIND] [--base-url URL] [--data JSON] [--requests N] [--concurrency C] METHOD PATH
  KIND:        stable-client-token (default), client-token, mini-app, mini-game
  credentials: DOUYIN_CLIENT_KEY and DOUYIN_CLIENT_SECRET (the app id and secret for mini-app, mini-game)
  base URL:    --base-url, else DOUYIN_BASE_URL, else the kind's host (https://open.douyin.com;
               https://developer.toutiao.com for mini-app, https://minigame.zijieapi.com for mini-game)";

/// Which token the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    StableClientToken,
    ClientToken,
    MiniApp,
    MiniGame,
}

impl Credential {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "stable-client-token" => Self::StableClientToken,
            "client-token" => Self::ClientToken,
            "mini-app" => Self::MiniApp,
            "mini-game" => Self::MiniGame,
            _ => {
                return Err(format!(
                    "--credential must be stable-client-token, client-token, mini-app or \
                     mini-game, got {s:?}"
                ))
            }
        })
    }

    /// Where this kind's token endpoint and APIs are, as the `douyin` command has it.
    fn default_base_url(self) -> &'static str {
        match self {
            Self::StableClientToken | Self::ClientToken => "https://open.douyin.com",
            Self::MiniApp => MINI_APP_BASE_URL,
            Self::MiniGame => MINI_GAME_BASE_URL,
        }
    }

    /// The store key prefix of the shared token (`--redis`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn key_prefix(self) -> &'static str {
        match self {
            Self::StableClientToken | Self::ClientToken => "client_token",
            Self::MiniApp => "mini_app_token",
            Self::MiniGame => "mini_game_token",
        }
    }
}

#[derive(Debug)]
struct Args {
    credential: Credential,
    base_url: String,
    data: Option<String>,
    requests: usize,
    concurrency: usize,
    redis: Option<String>,
    method: Method,
    path: String,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut base_url = std::env::var("DOUYIN_BASE_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let mut data = None;
    let mut requests = 1usize;
    let mut concurrency = 1usize;
    let mut redis = None;
    let mut credential = Credential::StableClientToken;
    let mut positional = Vec::new();
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--base-url" => base_url = Some(value("--base-url")?),
            "--credential" => credential = Credential::parse(&value("--credential")?)?,
            "--data" => data = Some(value("--data")?),
            "--requests" => requests = positive(&value("--requests")?, "--requests")?,
            "--concurrency" => concurrency = positive(&value("--concurrency")?, "--concurrency")?,
            "--redis" => redis = Some(value("--redis")?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let [method, path] = <[String; 2]>::try_from(positional)
        .map_err(|p| format!("expected METHOD and PATH, got {} arguments", p.len()))?;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    if !path.starts_with('/') {
        return Err(format!("PATH must start with '/', got {path:?}"));
    }
    if let Some(d) = &data {
        serde_json::from_str::<serde_json::Value>(d)
            .map_err(|e| format!("--data is not valid JSON: {e}"))?;
    }
    let base_url = base_url
        .unwrap_or_else(|| credential.default_base_url().to_owned())
        .trim_end_matches('/')
        .to_owned();
    base_url::check(&base_url)?;
    Ok(Args {
        credential,
        base_url,
        data,
        requests,
        concurrency,
        redis,
        method,
        path,
    })
}

fn positive(s: &str, name: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} must be a positive whole number, got {s:?}")),
    }
}

/// Counts the token fetches, for the summary.
struct Counting<T> {
    inner: T,
    fetches: Arc<AtomicUsize>,
}

impl<T: TokenSource> TokenSource for Counting<T> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch().await
    }

    // Passed on, so that a source told which token was rejected can get another one (the
    // classic endpoint, the mini-game `force_refresh`).
    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch_replacing(rejected).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("douyin_api: {msg}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let key = std::env::var("DOUYIN_CLIENT_KEY").unwrap_or_default();
    let secret = std::env::var("DOUYIN_CLIENT_SECRET").unwrap_or_default();
    let missing: Vec<_> = [
        ("DOUYIN_CLIENT_KEY", key.is_empty()),
        ("DOUYIN_CLIENT_SECRET", secret.is_empty()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "douyin_api: missing credentials: set {} in the environment",
            missing.join(" and ")
        );
        return ExitCode::from(2);
    }
    let base = args.base_url.clone();
    match args.credential {
        Credential::StableClientToken => {
            let source = ClientCredentials::new(key, secret).base_url(&base);
            run(args, source).await
        }
        Credential::ClientToken => {
            let source = ClientCredentials::new(key, secret)
                .classic()
                .base_url(&base);
            run(args, source).await
        }
        Credential::MiniApp => {
            run(args, MiniAppCredentials::new(key, secret).base_url(&base)).await
        }
        Credential::MiniGame => {
            run(args, MiniGameCredentials::new(key, secret).base_url(&base)).await
        }
    }
}

/// A layer over `source` with the options of the credential kind: where its APIs read the
/// token and the code table they use.
fn layer_for<T: TokenSource>(credential: Credential, source: T) -> DouyinAuthLayer {
    let builder = DouyinAuthLayer::builder(source);
    match credential {
        Credential::StableClientToken | Credential::ClientToken => builder.build(),
        Credential::MiniApp => builder
            .classifier(DouyinExpiry::for_family(Family::MiniApp))
            .build(),
        Credential::MiniGame => builder
            .placement(TokenPlacement::access_token_underscore())
            .build(),
    }
}

async fn run<T: TokenSource>(args: Args, inner: T) -> ExitCode {
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        inner,
        fetches: fetches.clone(),
    };
    let layer = match &args.redis {
        None => layer_for(args.credential, source),
        Some(url) => match shared_layer(source, url, args.credential).await {
            Ok(layer) => layer,
            Err(msg) => {
                eprintln!("douyin_api: {msg}");
                return ExitCode::from(2);
            }
        },
    };
    // ONE layered client for every request.
    let client = ServiceBuilder::new()
        .layer(layer)
        .service(HttpsClient::new());
    let url = format!("{}{}", args.base_url, args.path);
    let body = Bytes::from(args.data.clone().unwrap_or_default());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.requests {
        let client = client.clone();
        let semaphore = semaphore.clone();
        let mut req = Request::builder().method(args.method.clone()).uri(&url);
        if args.data.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.clone()));
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let res = client.oneshot(req?).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((status, body))
        });
    }

    let (mut ok, mut failed) = (0usize, 0usize);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(BoxError::from).and_then(|r| r) {
            Ok((status, body)) => {
                println!("{}", String::from_utf8_lossy(&body).trim_end());
                // HTTP 2xx and no Douyin error code, in any shape the crate reads.
                if status.is_success() && !matches!(check_answer(&body), Err(Error::Douyin(_))) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("douyin_api: request failed: {}", describe(&*e));
                failed += 1;
            }
        }
    }
    eprintln!(
        "douyin_api: {} requests, {ok} ok, {failed} failed; {} token fetches",
        args.requests,
        fetches.load(Ordering::Relaxed)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A layer whose client token is shared through Redis with every other process using it.
#[cfg(feature = "redis")]
async fn shared_layer<T: TokenSource>(
    source: T,
    url: &str,
    credential: Credential,
) -> Result<DouyinAuthLayer, String> {
    use douyin_auth::store::{RedisConfig, RedisStore, SharedSource};
    let mut config = RedisConfig::new(url);
    if let Ok(prefix) = std::env::var("DOUYIN_REDIS_PREFIX") {
        config = config.key_prefix(prefix);
    }
    let store = RedisStore::open(config)
        .await
        .map_err(|e| format!("--redis {url:?}: {e}"))?;
    let key = std::env::var("DOUYIN_CLIENT_KEY").unwrap_or_default();
    let prefix = credential.key_prefix();
    let shared = SharedSource::new(source, store, format!("{prefix}:{key}"));
    let layer = layer_for(credential, shared.clone());
    // Pick up a token another process stored before Douyin rejects ours.
    shared
        .reread_every(&layer, std::time::Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    Ok(layer)
}

#[cfg(not(feature = "redis"))]
async fn shared_layer<T: TokenSource>(
    _: T,
    _: &str,
    _: Credential,
) -> Result<DouyinAuthLayer, String> {
    Err("--redis needs the `redis` feature: cargo run --features redis --example douyin_api".into())
}

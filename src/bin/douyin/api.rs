//! `douyin api`: one layered client, N requests C at a time, or one page after another.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use douyin_auth::douyin::{check_answer, HttpsClient};
use douyin_auth::{BoxError, DouyinAuth, DouyinAuthLayer, TokenSource};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tower::{Layer, ServiceExt};

use crate::pages::{next_page, Page};
use crate::{describe, AppArgs, Credential, Failure};

/// The arguments of `douyin api`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  douyin api GET /data/extern/billboard/hot_video/\n  \
douyin api --requests 100 --concurrency 10 GET /data/extern/billboard/hot_video/\n  \
douyin api --paginate GET '/api/douyin/v1/video/video_list/?open_id=OPEN_ID&count=10'\n  \
douyin api --credential mini-game --data '{…}' POST /mgplatform/api/apps/set_user_storage/"
)]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    app: AppArgs,

    /// A JSON request body (sent with `content-type: application/json`).
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    data: Option<String>,

    /// How many times to send the request, all through one client and one token.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,

    /// How many requests to have in flight at once.
    #[arg(long, default_value_t = 1, value_name = "C", value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Share the app's token (of the --credential kind) through this Redis with every other
    /// process using it (needs the `redis` feature); the key prefix is DOUYIN_REDIS_PREFIX,
    /// default `douyin-auth:`.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Follow Douyin's pages: send the answer's `cursor` back (in the query of a GET, in the
    /// JSON body otherwise) while `has_more` says so; one JSON answer a line.
    #[arg(long, conflicts_with_all = ["requests", "concurrency"])]
    paginate: bool,

    /// With --paginate: stop after this many pages.
    #[arg(long, default_value_t = 1000, value_name = "N", requires = "paginate", value_parser = clap::value_parser!(u32).range(1..))]
    max_pages: u32,

    /// The HTTP method: GET, POST, …
    #[arg(value_parser = parse_method)]
    method: Method,

    /// The path and query, from the first `/`.
    #[arg(value_parser = parse_path)]
    path: String,
}

fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("not valid JSON: {e}"))
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{s:?} is not an HTTP method"))
}

fn parse_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_owned())
    } else {
        Err(format!("PATH must start with '/', got {s:?}"))
    }
}

type Client = DouyinAuth<HttpsClient>;

pub(crate) async fn run(args: ApiArgs) -> Result<(), Failure> {
    let source = args.app.source()?;
    let fetches = Arc::clone(&source.fetches);
    let base_url = args.app.base_url()?;
    let credential = args.app.credential;
    let layer = match &args.redis {
        None => credential.layer(source),
        Some(url) => shared_layer(source, url, credential).await?,
    };
    // ONE layered client for every request.
    let client: Client = layer.layer(HttpsClient::new());
    let summary = if args.paginate {
        paginate(&client, &args, &base_url).await
    } else {
        repeat(&client, &args, &base_url).await
    };
    eprintln!(
        "douyin: {}; {} token fetches",
        summary.describe(),
        fetches.load(Ordering::Relaxed)
    );
    if summary.failed == 0 {
        Ok(())
    } else {
        Err(Failure::Failed(String::new()))
    }
}

/// What happened to the requests, for the summary on stderr.
struct Summary {
    what: &'static str,
    sent: u64,
    ok: u64,
    failed: u64,
}

impl Summary {
    fn describe(&self) -> String {
        format!(
            "{} {}, {} ok, {} failed",
            self.sent, self.what, self.ok, self.failed
        )
    }
}

fn request(
    method: &Method,
    url: &str,
    data: Option<&str>,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut req = Request::builder().method(method.clone()).uri(url);
    if data.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let body = Bytes::from(data.unwrap_or_default().to_owned());
    Ok(req.body(Full::new(body))?)
}

async fn send(client: &Client, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), BoxError> {
    let res = client.clone().oneshot(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Whether an answer is a success: HTTP 2xx and no Douyin error code (in any of the shapes
/// the crate reads).
fn succeeded(status: StatusCode, body: &[u8]) -> bool {
    status.is_success() && !matches!(check_answer(body), Err(douyin_auth::Error::Douyin(_)))
}

/// The request N times, C at a time; each body on its own line, in the order they finish.
async fn repeat(client: &Client, args: &ApiArgs, base_url: &str) -> Summary {
    let url = format!("{base_url}{}", args.path);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let progress = progress_bar(u64::from(args.requests));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.requests {
        let client = client.clone();
        let semaphore = Arc::clone(&semaphore);
        let req = request(&args.method, &url, args.data.as_deref());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            send(&client, req?).await
        });
    }
    let mut summary = Summary {
        what: "requests",
        sent: u64::from(args.requests),
        ok: 0,
        failed: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        progress.inc(1);
        match joined.map_err(BoxError::from).and_then(|r| r) {
            Ok((status, body)) => {
                progress.suspend(|| println!("{}", String::from_utf8_lossy(&body).trim_end()));
                if succeeded(status, &body) {
                    summary.ok += 1;
                } else {
                    summary.failed += 1;
                }
            }
            Err(e) => {
                progress.suspend(|| eprintln!("douyin: request failed: {}", describe(&*e)));
                summary.failed += 1;
            }
        }
    }
    progress.finish_and_clear();
    summary
}

/// A bar on stderr when it is a terminal and there is more than one request; else nothing.
fn progress_bar(len: u64) -> ProgressBar {
    if len < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {per_sec}") {
        bar.set_style(style);
    }
    bar
}

/// One page after another, following `cursor` while `has_more`; each answer as one line of
/// JSON. Stops at the first failed page.
async fn paginate(client: &Client, args: &ApiArgs, base_url: &str) -> Summary {
    let mut summary = Summary {
        what: "pages",
        sent: 0,
        ok: 0,
        failed: 0,
    };
    let mut page = Page::first(&args.path, args.data.as_deref(), &args.method);
    loop {
        let url = format!("{base_url}{}", page.path);
        summary.sent += 1;
        let answer = match request(&args.method, &url, page.body.as_deref()) {
            Ok(req) => send(client, req).await,
            Err(e) => Err(e),
        };
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("douyin: request failed: {}", describe(&*e));
                summary.failed += 1;
                return summary;
            }
        };
        let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
        match &json {
            // One JSON value a line, whatever the server's layout.
            Some(value) => println!("{value}"),
            None => println!("{}", String::from_utf8_lossy(&body).trim_end()),
        }
        if !succeeded(status, &body) {
            summary.failed += 1;
            return summary;
        }
        summary.ok += 1;
        let Some(json) = json else {
            return summary;
        };
        match next_page(&page, &json) {
            Ok(Some(next)) if summary.sent < u64::from(args.max_pages) => page = next,
            Ok(Some(_)) => {
                eprintln!(
                    "douyin: stopped after {} pages (--max-pages)",
                    args.max_pages
                );
                return summary;
            }
            Ok(None) => return summary,
            Err(msg) => {
                eprintln!("douyin: {msg}");
                summary.failed += 1;
                return summary;
            }
        }
    }
}

/// A layer whose app token is shared through Redis with every other process using it.
#[cfg(feature = "redis")]
async fn shared_layer<T: TokenSource>(
    source: T,
    url: &str,
    credential: Credential,
) -> Result<DouyinAuthLayer, Failure> {
    use douyin_auth::store::{RedisConfig, RedisStore, SharedSource};
    let mut config = RedisConfig::new(url);
    if let Ok(prefix) = std::env::var("DOUYIN_REDIS_PREFIX") {
        config = config.key_prefix(prefix);
    }
    let store = RedisStore::open(config)
        .await
        .map_err(|e| Failure::Usage(format!("--redis {url:?}: {e}")))?;
    let key = std::env::var("DOUYIN_CLIENT_KEY").unwrap_or_default();
    let prefix = credential.key_prefix();
    let shared = SharedSource::new(source, store, format!("{prefix}:{key}"));
    let layer = credential.layer(shared.clone());
    // Pick up a token another process stored before Douyin rejects ours.
    shared
        .reread_every(&layer, std::time::Duration::from_secs(60))
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(layer)
}

#[cfg(not(feature = "redis"))]
async fn shared_layer<T: TokenSource>(
    _: T,
    _: &str,
    _: Credential,
) -> Result<DouyinAuthLayer, Failure> {
    Err(Failure::Usage(
        "--redis needs the `redis` feature: cargo install douyin-auth --features cli,redis".into(),
    ))
}

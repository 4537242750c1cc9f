//! `douyin`: call any Douyin OpenAPI endpoint from a shell with the token handled, follow its
//! pages, serve the embedded mock, or show how long the app's token has left.
//!
//! Built with the feature `cli`: `cargo install douyin-auth --features cli`. The credentials
//! come from `DOUYIN_CLIENT_KEY` and `DOUYIN_CLIENT_SECRET` (the app id and secret with
//! `--credential mini-app` or `mini-game`), never from the command line (where other users of
//! the machine could read them). Exit status: 0 when every answer was HTTP 2xx
//! without a Douyin error code, 1 otherwise, 2 on bad usage or missing credentials.

mod api;
mod base_url;
mod describe;
mod pages;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use describe::describe;
use douyin_auth::douyin::codes::Family;
use douyin_auth::douyin::{
    ClientCredentials, HttpsClient, MiniAppCredentials, MiniGameCredentials, MINI_APP_BASE_URL,
    MINI_GAME_BASE_URL,
};
use douyin_auth::expiry::DouyinExpiry;
use douyin_auth::{BoxError, DouyinAuthLayer, Token, TokenPlacement, TokenSource};

/// The default base URL of Douyin's OpenAPI (client tokens).
const DOUYIN: &str = douyin_auth::douyin::DEFAULT_BASE_URL;

#[derive(Parser, Debug)]
#[command(
    name = "douyin",
    version,
    about = "Call Douyin OpenAPI endpoints with the token handled for you",
    long_about = "Call Douyin OpenAPI endpoints with the token handled for you: fetched once, \
attached to every request, refreshed when it turns stale, and a request answered \"token \
expired\" sent once more.\n\nThe app's credentials come from the environment: \
DOUYIN_CLIENT_KEY and DOUYIN_CLIENT_SECRET (a mini app's or mini game's app id and secret \
with --credential mini-app or mini-game). Try it without any: `douyin mock` serves a mock \
Douyin on loopback and prints the variables to set.",
    after_help = "Exit status: 0 when every answer was HTTP 2xx without a Douyin error code, \
1 otherwise, 2 on bad usage or missing credentials."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send METHOD PATH to the API (N times, C at a time, or page by page) and print each
    /// answer's body on a line of its own.
    Api(api::ApiArgs),
    /// Fetch the app's token and print its kind and how long it has left (never the token).
    Token {
        #[command(flatten)]
        app: AppArgs,
    },
    /// Serve the embedded mock Douyin on loopback until Ctrl-C, printing its base URL and
    /// credentials as shell variables for the other commands.
    Mock,
}

/// The app's settings every command that talks to Douyin takes.
#[derive(clap::Args, Debug, Clone)]
struct AppArgs {
    /// The API's base URL, default `https://open.douyin.com` (`https://developer.toutiao.com`
    /// for mini-app, `https://minigame.zijieapi.com` for mini-game); plain http:// only for
    /// loopback hosts (a mock).
    #[arg(long, env = "DOUYIN_BASE_URL", value_name = "URL")]
    base_url: Option<String>,

    /// Which token to attach. For mini-app and mini-game, DOUYIN_CLIENT_KEY and
    /// DOUYIN_CLIENT_SECRET are the app id and the app secret.
    #[arg(long, value_enum, default_value_t = Credential::StableClientToken, value_name = "KIND")]
    credential: Credential,
}

/// The token kinds `--credential` names.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    /// The app's client token from `/oauth/stable_client_token/` (the same token for its whole
    /// validity, whoever asks).
    StableClientToken,
    /// The app's client token from the classic `/oauth/client_token/`.
    ClientToken,
    /// A mini app's app token (`/api/apps/v2/token`), in the `access-token` header, with the
    /// mini-app codes (40002 is a rejected token).
    MiniApp,
    /// A mini game's app token (the stable `/mgplatform/api/apps/stable_token`), in the
    /// `access_token` header, where the mini-game server APIs read it.
    MiniGame,
}

impl Credential {
    /// The name `--credential` takes.
    fn name(self) -> &'static str {
        match self {
            Credential::StableClientToken => "stable-client-token",
            Credential::ClientToken => "client-token",
            Credential::MiniApp => "mini-app",
            Credential::MiniGame => "mini-game",
        }
    }

    /// Where this kind's token endpoint and APIs are.
    fn default_base_url(self) -> &'static str {
        match self {
            Credential::StableClientToken | Credential::ClientToken => DOUYIN,
            Credential::MiniApp => MINI_APP_BASE_URL,
            Credential::MiniGame => MINI_GAME_BASE_URL,
        }
    }

    /// The start of the store key of the shared token (`--redis`): one key per kind, so a
    /// mini-app token is never adopted as a client token.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn key_prefix(self) -> &'static str {
        match self {
            Credential::StableClientToken | Credential::ClientToken => "client_token",
            Credential::MiniApp => "mini_app_token",
            Credential::MiniGame => "mini_game_token",
        }
    }

    /// A layer over `source` with this kind's options: where its APIs read the token and
    /// the code table they answer with.
    fn layer<T: TokenSource>(self, source: T) -> DouyinAuthLayer {
        let builder = DouyinAuthLayer::builder(source);
        match self {
            Credential::StableClientToken | Credential::ClientToken => builder.build(),
            Credential::MiniApp => builder
                .classifier(DouyinExpiry::for_family(Family::MiniApp))
                .build(),
            Credential::MiniGame => builder
                .placement(TokenPlacement::access_token_underscore())
                .build(),
        }
    }
}

/// The token source of any `--credential` kind, over the built-in HTTPS client: one type, so
/// `api` and `token` build one client whatever the kind.
enum AppSource {
    Client(ClientCredentials<HttpsClient>),
    MiniApp(MiniAppCredentials<HttpsClient>),
    MiniGame(MiniGameCredentials<HttpsClient>),
}

impl TokenSource for AppSource {
    async fn fetch(&self) -> Result<Token, BoxError> {
        match self {
            AppSource::Client(source) => source.fetch().await,
            AppSource::MiniApp(source) => source.fetch().await,
            AppSource::MiniGame(source) => source.fetch().await,
        }
    }

    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        match self {
            AppSource::Client(source) => source.fetch_replacing(rejected).await,
            AppSource::MiniApp(source) => source.fetch_replacing(rejected).await,
            AppSource::MiniGame(source) => source.fetch_replacing(rejected).await,
        }
    }
}

/// A usage problem (exit status 2) or a failure (1), with what to tell the user.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Failed(String),
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

    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.inner.fetch_replacing(rejected).await
    }
}

impl AppArgs {
    /// The base URL, checked, without a trailing slash.
    fn base_url(&self) -> Result<String, Failure> {
        let url = match &self.base_url {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None => self.credential.default_base_url().to_owned(),
        };
        base_url::check(&url).map_err(Failure::Usage)?;
        Ok(url)
    }

    /// The token source `--credential` names, over the built-in HTTPS client, counting its
    /// fetches.
    fn source(&self) -> Result<Counting<AppSource>, Failure> {
        let (key, secret) = credentials()?;
        let base_url = self.base_url()?;
        let source = match self.credential {
            Credential::StableClientToken => {
                AppSource::Client(ClientCredentials::new(key, secret).base_url(base_url))
            }
            Credential::ClientToken => AppSource::Client(
                ClientCredentials::new(key, secret)
                    .classic()
                    .base_url(base_url),
            ),
            Credential::MiniApp => {
                AppSource::MiniApp(MiniAppCredentials::new(key, secret).base_url(base_url))
            }
            Credential::MiniGame => {
                AppSource::MiniGame(MiniGameCredentials::new(key, secret).base_url(base_url))
            }
        };
        Ok(Counting {
            inner: source,
            fetches: Arc::default(),
        })
    }
}

/// `DOUYIN_CLIENT_KEY` and `DOUYIN_CLIENT_SECRET`, or which of them is missing.
fn credentials() -> Result<(String, String), Failure> {
    let key = std::env::var("DOUYIN_CLIENT_KEY").unwrap_or_default();
    let secret = std::env::var("DOUYIN_CLIENT_SECRET").unwrap_or_default();
    let missing: Vec<_> = [
        ("DOUYIN_CLIENT_KEY", key.is_empty()),
        ("DOUYIN_CLIENT_SECRET", secret.is_empty()),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    if missing.is_empty() {
        Ok((key, secret))
    } else {
        Err(Failure::Usage(format!(
            "missing credentials: set {} in the environment (`douyin mock` prints a mock's)",
            missing.join(" and ")
        )))
    }
}

/// `douyin token`: the token's kind and remaining lifetime.
async fn token(app: AppArgs) -> Result<(), Failure> {
    let source = app.source()?;
    let token = source
        .fetch()
        .await
        .map_err(|e| Failure::Failed(format!("could not get a token: {}", describe(&*e))))?;
    let left = token.remaining();
    println!(
        "{}: expires in {} ({} s)",
        app.credential.name(),
        human(left),
        left.as_secs()
    );
    Ok(())
}

/// `1h 59m 59s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// `douyin mock`: the embedded mock, until Ctrl-C.
async fn mock() -> Result<(), Failure> {
    use std::io::Write;
    let mock = douyin_auth::mock::MockDouyin::start()
        .await
        .map_err(|e| Failure::Failed(format!("could not start the mock: {e}")))?;
    let mut out = std::io::stdout().lock();
    // The mock's own credentials: they open nothing but this mock.
    let shown = writeln!(
        out,
        "# mock Douyin at {url}; Ctrl-C stops it\nexport DOUYIN_BASE_URL={url}\nexport DOUYIN_CLIENT_KEY={key}\nexport DOUYIN_CLIENT_SECRET={secret}",
        url = mock.base_url(),
        key = mock.client_key(),
        secret = mock.client_secret(),
    )
    .and_then(|()| out.flush());
    drop(out);
    shown.map_err(|e| Failure::Failed(format!("writing to stdout failed: {e}")))?;
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::Failed(format!("waiting for Ctrl-C failed: {e}")))?;
    eprintln!("douyin: mock stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version exit 0, usage errors 2.
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Api(args) => api::run(args).await,
        Command::Token { app } => token(app).await,
        Command::Mock => mock().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("douyin: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            if !msg.is_empty() {
                eprintln!("douyin: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

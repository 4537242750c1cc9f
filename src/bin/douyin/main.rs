//! `douyin`: call any Douyin OpenAPI endpoint from a shell with the token handled, follow its
//! pages, serve the embedded mock, or show how long the app's token has left.
//!
//! Built with the feature `cli`: `cargo install douyin-auth --features cli`. The credentials
//! come from `DOUYIN_CLIENT_KEY` and `DOUYIN_CLIENT_SECRET`, never from the command line (where
//! other users of the machine could read them). Exit status: 0 when every answer was HTTP 2xx
//! without a Douyin error code, 1 otherwise, 2 on bad usage or missing credentials.

mod api;
mod pages;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use douyin_auth::douyin::{ClientCredentials, HttpsClient};
use douyin_auth::{BoxError, Token, TokenSource};

/// The default base URL of Douyin's OpenAPI.
const DOUYIN: &str = "https://open.douyin.com";

#[derive(Parser, Debug)]
#[command(
    name = "douyin",
    version,
    about = "Call Douyin OpenAPI endpoints with the token handled for you",
    long_about = "Call Douyin OpenAPI endpoints with the token handled for you: fetched once, \
attached to every request, refreshed when it turns stale, and a request answered \"token \
expired\" sent once more.\n\nThe app's credentials come from the environment: \
DOUYIN_CLIENT_KEY and DOUYIN_CLIENT_SECRET. Try it without any: `douyin mock` serves a mock \
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
    /// The API's base URL; plain http:// only for loopback hosts (a mock).
    #[arg(long, env = "DOUYIN_BASE_URL", default_value = DOUYIN, value_name = "URL")]
    base_url: String,

    /// Which token to attach.
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
    /// A mini app's access token (not supported yet).
    MiniApp,
    /// A mini game's access token (not supported yet).
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
        let url = self.base_url.trim().trim_end_matches('/').to_owned();
        check_base_url(&url).map_err(Failure::Usage)?;
        Ok(url)
    }

    /// The token source `--credential` names, over the built-in HTTPS client.
    fn source(&self) -> Result<Counting<ClientCredentials<HttpsClient>>, Failure> {
        let (key, secret) = credentials()?;
        let base_url = self.base_url()?;
        let source = ClientCredentials::new(key, secret).base_url(base_url);
        let source = match self.credential {
            Credential::StableClientToken => source,
            Credential::ClientToken => source.classic(),
            other @ (Credential::MiniApp | Credential::MiniGame) => {
                return Err(Failure::Usage(format!(
                    "--credential {} is not supported yet; use stable-client-token or client-token",
                    other.name()
                )))
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

fn check_base_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("--base-url {url:?} is not a URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("--base-url {url:?} has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "--base-url {url:?}: plain http:// is accepted for loopback hosts only"
        )),
        _ => Err(format!("--base-url {url:?} must start with https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `douyin token`: the token's kind and remaining lifetime.
async fn token(app: AppArgs) -> Result<(), Failure> {
    let source = app.source()?;
    let token = source
        .fetch()
        .await
        .map_err(|e| Failure::Failed(format!("could not get a token: {e}")))?;
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

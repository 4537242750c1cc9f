//! Redis for the tests: the machine's shared server (`REDIS_URL`) for ordinary cases, and a
//! private `redis-server` on a random loopback port for fault cases (stopped, paused,
//! restarted). The shared server is never stopped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared server's URL, if it answers. Unreachable: a loud failure under `CI=true`, else
/// `None` after printing why (the caller skips).
pub async fn shared_url() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match ping(&url).await {
        Ok(()) => Some(url),
        Err(e) => skip_or_fail(&format!(
            "the shared Redis at REDIS_URL does not answer: {e}"
        )),
    }
}

fn skip_or_fail(reason: &str) -> Option<String> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: Redis must run; .ci/run starts one)");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

pub async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let fut = async {
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_millis(500), fut).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".into()),
    }
}

/// The keys matching `pattern` (KEYS is fine on a test server).
pub async fn keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// The raw value under `key`.
pub async fn raw_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// A unique key prefix, so tests can share the server in parallel.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "douyin-auth-test:{test}:{}:{}:",
        std::process::id(),
        fastrand::u64(..)
    )
}

/// Polls `cond` every 10 ms for at most `limit`; true if it held.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A `redis-server` of this test's own, on a random loopback port, without persistence.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    paused: bool,
}

impl PrivateRedis {
    /// Starts one, or `None` (skip; a failure under `CI=true`) if `redis-server` is missing.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            skip_or_fail("redis-server is not installed")?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Self {
            child: None,
            port,
            paused: false,
        };
        r.spawn().await;
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let url = self.url();
        assert!(
            eventually(Duration::from_secs(5), || {
                let url = url.clone();
                async move { ping(&url).await.is_ok() }
            })
            .await,
            "private redis-server did not come up"
        );
    }

    /// Stops the server (its data is lost).
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// SIGSTOP: the server keeps its connections but answers nothing.
    pub fn pause(&mut self) {
        if let Some(c) = &self.child {
            signal("-STOP", c.id());
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if self.paused {
            if let Some(c) = &self.child {
                signal("-CONT", c.id());
            }
            self.paused = false;
        }
    }
}

fn signal(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

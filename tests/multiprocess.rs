//! Several processes share one client token through Redis: the `shared_token` example, run
//! four times at once against one mock server, makes one token call between them.
//!
//! `cargo test` builds the examples before it runs the tests; the binary is taken from the
//! same target directory. Without it (a filtered build), the test is skipped with a reason,
//! except under `CI=true`, where it fails.
#![cfg(all(feature = "redis", feature = "mock", feature = "https"))]

#[path = "support/redis.rs"]
mod redis_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use douyin_auth::mock::MockDouyin;
use redis_support::*;

fn example_binary() -> Option<PathBuf> {
    // target/<profile>/deps/multiprocess-<hash> → target/<profile>/examples/shared_token
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("examples");
    let path = dir.join(format!("shared_token{}", std::env::consts::EXE_SUFFIX));
    path.exists().then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_make_one_token_call() {
    let Some(url) = shared_url().await else {
        return;
    };
    let Some(bin) = example_binary() else {
        let reason = "the shared_token example is not built (run `cargo test --all-features`)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}");
        }
        eprintln!("SKIPPED: {reason}");
        return;
    };
    let mock = MockDouyin::start().await.unwrap();
    let prefix = unique_prefix("multiprocess");
    let children: Vec<_> = (0..4)
        .map(|_| {
            tokio::process::Command::new(&bin)
                .args(["--base-url", &mock.base_url()])
                .args(["--redis", &url])
                .args(["--prefix", &prefix])
                .env("DOUYIN_CLIENT_KEY", mock.client_key())
                .env("DOUYIN_CLIENT_SECRET", mock.client_secret())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the example starts")
        })
        .collect();
    let mut printed = Vec::new();
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the example finishes")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push(stdout);
    }
    assert!(printed[0].starts_with("token "), "{printed:?}");
    assert!(printed.iter().all(|p| *p == printed[0]), "{printed:?}");
    assert_eq!(mock.counters().all_client_token_calls(), 1);
}

/// The `douyin_api` example with `--redis`: four processes, five requests each, one token call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_douyin_api_processes_share_one_token() {
    let Some(url) = shared_url().await else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("douyin_api{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let reason = "the douyin_api example is not built (run `cargo test --all-features`)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}");
        }
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let mock = MockDouyin::start().await.unwrap();
    let prefix = unique_prefix("douyin-api");
    let children: Vec<_> = (0..4)
        .map(|_| {
            tokio::process::Command::new(&bin)
                .args(["--redis", &url, "--requests", "5", "--concurrency", "5"])
                .args(["GET", "/data/extern/billboard/hot_video/"])
                .env("DOUYIN_BASE_URL", mock.base_url())
                .env("DOUYIN_REDIS_PREFIX", &prefix)
                .env("DOUYIN_CLIENT_KEY", mock.client_key())
                .env("DOUYIN_CLIENT_SECRET", mock.client_secret())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the example starts")
        })
        .collect();
    let mut fetches = 0;
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the example finishes")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
        assert!(!stderr.contains(mock.client_secret()));
        let summary = stderr.lines().last().unwrap_or_default();
        assert!(summary.contains("5 requests, 5 ok, 0 failed"), "{summary}");
        if summary.ends_with("1 token fetches") {
            fetches += 1;
        }
    }
    assert_eq!(
        fetches, 1,
        "one process fetched, the others adopted its token"
    );
    assert_eq!(mock.counters().all_client_token_calls(), 1);
    assert_eq!(mock.counters().api_calls, 20);
}

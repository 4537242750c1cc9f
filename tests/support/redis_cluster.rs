//! A Redis Cluster of three masters of the test's own, on free loopback ports, without
//! persistence, in a temporary directory; stopped (and its directory removed) when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct PrivateCluster {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

/// A port `p` free on loopback whose cluster bus port `p + 10000` is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p > 55_000 || taken.contains(&p) || taken.contains(&(p + 10_000)) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn skip_or_fail(reason: &str) -> Option<PrivateCluster> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: redis-server must be installed; .ci/run installs it)");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

impl PrivateCluster {
    /// Starts three cluster-enabled `redis-server`s and joins them (`redis-cli --cluster
    /// create`), then waits until every node reports `cluster_state:ok`. `None` (skip; a
    /// failure under `CI=true`) if `redis-server` is missing.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return skip_or_fail("redis-server is not installed");
        }
        let dir = std::env::temp_dir().join(format!(
            "douyin-auth-cluster-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let p = free_port_pair(&ports);
            ports.push(p);
        }
        let mut cluster = Self {
            children: Vec::new(),
            ports: ports.clone(),
            dir: dir.clone(),
        };
        for p in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &p.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                .args(["--dir", dir.to_str().unwrap()])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            cluster.children.push(child);
        }
        for url in cluster.urls() {
            assert!(
                super::redis_support::eventually(Duration::from_secs(5), || {
                    let url = url.clone();
                    async move { super::redis_support::ping(&url).await.is_ok() }
                })
                .await,
                "a cluster node did not come up"
            );
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        for url in cluster.urls() {
            assert!(
                super::redis_support::eventually(Duration::from_secs(10), || {
                    let url = url.clone();
                    async move { cluster_info(&url).await.contains("cluster_state:ok") }
                })
                .await,
                "the cluster did not become ready"
            );
        }
        Some(cluster)
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The keys on each node (KEYS is fine on a test server).
    pub async fn keys_per_node(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for url in self.urls() {
            out.push(super::redis_support::keys(&url, "*").await);
        }
        out
    }

    pub fn stop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn cluster_info(url: &str) -> String {
    let Ok(client) = redis::Client::open(url) else {
        return String::new();
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return String::new();
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async::<String>(&mut c)
        .await
        .unwrap_or_default()
}

/// The hash slot of `key`, as the cluster computes it.
pub async fn keyslot(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

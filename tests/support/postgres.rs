//! PostgreSQL for the tests: the machine's server (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in a schema of its own that it drops
//! at the end, so runs in parallel never collide.
#![allow(dead_code)]

use std::time::Duration;

use douyin_auth::store::PostgresStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn skip_or_fail(reason: &str) -> Option<Schema> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: PostgreSQL must run; .ci/run checks it)");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// A schema of this test's own on the server at `DATABASE_URL`.
pub struct Schema {
    pub name: String,
    admin: PgPool,
}

impl Schema {
    /// A new empty schema, or `None` (after printing why) if the server does not answer;
    /// under `CI=true` a failure instead.
    pub async fn create(test: &str) -> Option<Self> {
        let url = database_url();
        let connected = tokio::time::timeout(Duration::from_secs(3), async {
            PgPoolOptions::new().max_connections(2).connect(&url).await
        })
        .await;
        let admin = match connected {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => {
                return skip_or_fail(&format!("PostgreSQL at DATABASE_URL does not answer: {e}"))
            }
            Err(_) => return skip_or_fail("PostgreSQL at DATABASE_URL does not answer: timed out"),
        };
        let name = format!(
            "douyin_auth_test_{test}_{}_{:x}",
            std::process::id(),
            fastrand::u32(..)
        );
        sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
            .execute(&admin)
            .await
            .unwrap();
        Some(Self { name, admin })
    }

    /// `DATABASE_URL` with `options=-c search_path=<schema>`: what a store of this test connects
    /// with (the store's `connect` must honour it).
    pub fn url(&self) -> String {
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{sep}options=-c%20search_path%3D{}&application_name={}",
            self.name,
            self.application_name()
        )
    }

    /// A new store (a pool of its own) in this schema.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url()).await.unwrap()
    }

    /// The admin pool (outside the schema's search path: qualify names).
    pub fn admin(&self) -> &PgPool {
        &self.admin
    }

    /// Every row of the token table as text, as a DBA would read it.
    pub async fn raw_rows(&self) -> Vec<String> {
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT t::text FROM \"{}\".douyin_auth_tokens t ORDER BY key",
            self.name
        ))
        .fetch_all(&self.admin)
        .await
        .unwrap()
    }

    /// Terminates every backend connected to this schema's stores (all but the admin's).
    pub async fn terminate_store_connections(&self) -> u64 {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND application_name = $1) t",
        )
        .bind(self.application_name())
        .fetch_one(&self.admin)
        .await
        .unwrap() as u64
    }

    /// The `application_name` this schema's store connections use.
    pub fn application_name(&self) -> String {
        format!("t{:x}", fastrand_hash(&self.name))
    }

    /// Drops the schema with everything in it.
    pub async fn drop(self) {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.name))
            .execute(&self.admin)
            .await;
        self.admin.close().await;
    }
}

fn fastrand_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// One connection to the server, for checks outside the pools.
pub async fn one_connection() -> PgConnection {
    PgConnection::connect(&database_url()).await.unwrap()
}

/// A PostgreSQL server of this test's own (`initdb` into a temporary directory, run as the
/// `postgres` user with `pg_ctl` on a free loopback port, trust auth, no fsync), for the
/// restart case; stopped and removed when dropped. The machine's server is never restarted.
pub struct PrivatePostgres {
    dir: std::path::PathBuf,
    pub port: u16,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    /// Starts one, or `None` (skip; a failure under `CI=true`) without the server binaries.
    pub async fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            });
        let Some(bin) = bin else {
            skip_or_fail("no PostgreSQL server binaries under /usr/lib/postgresql");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "douyin-auth-pg-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Self { dir, port, bin };
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&pg.dir)
            .status()
            .unwrap();
        assert!(chown.success());
        pg.as_postgres(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let status = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runuser runs");
        assert!(status.success(), "{tool} {args:?} failed");
    }

    fn ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.to_string_lossy()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let data = self.data();
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "20", "-o", &opts];
        args.extend_from_slice(action);
        self.as_postgres("pg_ctl", &args);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl restart -m fast`: every connection is closed, the data stays.
    pub fn restart(&self) {
        self.ctl(&["restart", "-m", "fast"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

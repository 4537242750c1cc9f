//! `RedisStore`: a [`TokenStore`] on Redis, one node or a cluster (feature `redis`), over the
//! `redis` crate's connection manager or cluster connection, which reconnect by themselves.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use serde::{Deserialize, Serialize};

use super::{entry_lifetime, Lease, TokenStore};
use crate::{BoxError, Error, Token};

/// The prefix of every key `RedisStore` writes unless configured otherwise.
pub const DEFAULT_KEY_PREFIX: &str = "douyin-auth:";

/// Reads a token and its remaining lifetime in one step.
const GET: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
";

/// Writes the token only while the caller's lease holds the key.
const PUT_IF_LEASED: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Extends the lease only if it is still the caller's.
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only if it is still the caller's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Options of a [`RedisStore`].
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::store::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .key_prefix("my-app:douyin:")
///     .response_timeout(Duration::from_millis(500));
/// # drop(config);
/// ```
///
/// For a Redis Cluster, name some of its nodes instead of one URL:
///
/// ```
/// use douyin_auth::store::RedisConfig;
///
/// let config = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .key_prefix("my-app:douyin:");
/// # drop(config);
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    cluster: Option<Vec<String>>,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
}

impl RedisConfig {
    /// Options for the server at `url` (`redis://[user:password@]host:port[/db]`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: None,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        }
    }

    /// Options for the Redis Cluster that these nodes belong to (`redis://host:port` each; the
    /// others are found from them).
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = Self::new(String::new());
        config.cluster = Some(nodes.into_iter().map(Into::into).collect());
        config
    }

    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`]), so that several apps or
    /// environments can share one server.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a connection attempt may take. Default: 1 second.
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long Redis may take to answer one command. Default: 1 second.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// The URL may hold a password: it is never shown.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("cluster", &self.cluster.is_some())
            .field("prefix", &self.prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

/// A [`TokenStore`] on Redis (feature `redis`): the fleet's shared client token and users'
/// tokens.
///
/// - Token under `<prefix>{<key>}` as JSON (the access token and how long it had left, the
///   `open_id`, the refresh token and how long it had left, the scopes), with `PX` set to the
///   longer lifetime. A read takes the value and its `PTTL` in one script, so the lifetimes come
///   from Redis's clock and turn into local monotonic deadlines: no host's wall clock matters.
/// - Lease under `<prefix>{<key>}:lease`: `SET NX PX` with 128 random bits, released by a
///   compare-and-delete script, extended by a compare-and-`PEXPIRE` script.
/// - The write under a lease is one script that writes only if the lease is still the
///   writer's, so a late writer never overwrites a newer token.
///
/// The braces around the caller's key are a hash tag: on a Redis Cluster a token and its lease
/// live in one slot, so every script touches one slot (the crate's keys always make a tag; a
/// key of your own that is empty or starts with `}` would not, and its scripts would fail with
/// `CROSSSLOT` on a cluster). Keys hold the prefix and the caller's key
/// (a `client_key` or an `open_id`), never a secret. The values hold tokens: protect the server as you protect the tokens.
///
/// The connection is made lazily and remade by itself after Redis restarts; a command that
/// fails (Redis down, or not answering within the response timeout) returns an error, which
/// [`SharedSource`](super::SharedSource) turns into a fallback. Clones share one connection.
/// Its `Debug` shows the prefix, never the URL (it may hold a password).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: Arc<str>,
    get: Arc<Script>,
    put_if_leased: Arc<Script>,
    extend: Arc<Script>,
    release: Arc<Script>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.conn, Conn::Cluster(_)))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the server at `url` with the default options. It connects lazily, so it
    /// succeeds while Redis is down; it fails only on a malformed URL. Needs a Tokio runtime.
    pub async fn connect(url: impl Into<String>) -> Result<Self, Error> {
        Self::open(RedisConfig::new(url)).await
    }

    /// A store on the Redis Cluster that `nodes` belong to (`redis://host:port` each; the
    /// others are found from them), with the default options. Unlike [`connect`](Self::connect)
    /// it connects at once, to learn the cluster's slots: it fails if no node answers. The
    /// connection follows the cluster's changes (failovers, resharding) by itself.
    ///
    /// A token and its lease hash to one slot (the key is a hash tag), so every script runs on
    /// one node.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, Error> {
        Self::open(RedisConfig::cluster(nodes.iter().copied())).await
    }

    /// A store with `config` (one server, or a [cluster](RedisConfig::cluster)); see
    /// [`connect`](Self::connect) and [`connect_cluster`](Self::connect_cluster).
    pub async fn open(config: RedisConfig) -> Result<Self, Error> {
        let conn = match &config.cluster {
            None => Conn::Single(Self::single(&config)?),
            Some(nodes) => Conn::Cluster(Self::cluster(&config, nodes).await?),
        };
        Ok(Self {
            conn,
            prefix: Arc::from(config.prefix),
            get: Arc::new(Script::new(GET)),
            put_if_leased: Arc::new(Script::new(PUT_IF_LEASED)),
            extend: Arc::new(Script::new(EXTEND)),
            release: Arc::new(Script::new(RELEASE)),
        })
    }

    fn single(config: &RedisConfig) -> Result<ConnectionManager, Error> {
        // The redis crate's messages do not include the URL; the URL is not repeated here.
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Store(format!("invalid Redis URL ({:?})", e.kind()).into()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        client
            .get_connection_manager_lazy(manager_config)
            .map_err(|e| Error::Store(Box::new(e)))
    }

    async fn cluster(config: &RedisConfig, nodes: &[String]) -> Result<ClusterConnection, Error> {
        if nodes.is_empty() {
            return Err(Error::Store(
                "a Redis Cluster needs at least one node".into(),
            ));
        }
        let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .connection_timeout(config.connection_timeout)
            .response_timeout(config.response_timeout)
            .retries(2)
            .build()
            .map_err(|e| {
                Error::Store(format!("invalid Redis Cluster URL ({:?})", e.kind()).into())
            })?;
        client.get_async_connection().await.map_err(|e| {
            Error::Store(format!("connecting to the Redis Cluster failed ({:?})", e.kind()).into())
        })
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>{<key>}`: the braces make the key a hash tag, so that on a cluster a token and
    /// its lease hash to one slot, and no token key (it ends with `}`) is ever a lease key.
    fn token_key(&self, key: &str) -> String {
        format!("{}{{{key}}}", self.prefix)
    }

    /// `<prefix>{<key>}:lease`.
    fn lease_key(&self, key: &str) -> String {
        format!("{}{{{key}}}:lease", self.prefix)
    }
}

/// A connection to one server or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A token as it is stored: lifetimes in milliseconds as they were when it was written, and
/// `life_ms`, the key's `PX` then, so that `life_ms - PTTL` is the time since.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    access_token: String,
    access_ms: u64,
    life_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_ms: Option<u64>,
    #[serde(default)]
    scopes: Vec<String>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The value and the `PX` (at least 1 ms) for `token`.
fn encode(token: &Token) -> Result<(String, u64), BoxError> {
    let life_ms = millis(entry_lifetime(token)).max(1);
    let refresh_ms = token
        .refresh_expires_at()
        .map(|at| millis(at.saturating_duration_since(tokio::time::Instant::now())));
    let stored = Stored {
        v: 1,
        access_token: token.secret().to_owned(),
        access_ms: millis(token.remaining()),
        life_ms,
        open_id: token.open_id().map(str::to_owned),
        refresh_token: token.refresh_token().map(str::to_owned),
        refresh_ms,
        scopes: token.scopes().to_vec(),
    };
    Ok((serde_json::to_string(&stored)?, life_ms))
}

fn decode(value: &str, pttl_ms: i64) -> Result<Token, BoxError> {
    // The message of a serde error could quote the value: it is not passed on.
    let s: Stored = serde_json::from_str(value).map_err(|e| {
        format!(
            "a stored token is not readable (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    // PTTL -1: no expiry set (written by hand); take the lifetimes as they are.
    let elapsed = match u64::try_from(pttl_ms) {
        Ok(left) => s.life_ms.saturating_sub(left),
        Err(_) => 0,
    };
    let left = |ms: u64| Duration::from_millis(ms.saturating_sub(elapsed));
    let mut token = Token::new(s.access_token, left(s.access_ms)).with_scopes(s.scopes);
    if let Some(open_id) = s.open_id {
        token = token.with_open_id(open_id);
    }
    if let Some(rt) = s.refresh_token {
        token = token.with_refresh_token(rt, left(s.refresh_ms.unwrap_or(0)));
    }
    Ok(token)
}

impl TokenStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
        let mut conn = self.conn.clone();
        let found: Option<(String, i64)> = self
            .get
            .key(self.token_key(key))
            .invoke_async(&mut conn)
            .await?;
        match found {
            Some((value, pttl)) => Ok(Some(decode(&value, pttl)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
        let (value, px) = encode(token)?;
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.token_key(key))
            .arg(value)
            .arg("PX")
            .arg(px)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
        let lease = Lease::generate(ttl)?;
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lease_key(key))
            .arg(lease.id())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut conn)
            .await?;
        Ok(set.map(|_| lease))
    }

    async fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> Result<bool, BoxError> {
        let (value, px) = encode(token)?;
        let mut conn = self.conn.clone();
        let written: i64 = self
            .put_if_leased
            .key(self.token_key(key))
            .key(self.lease_key(key))
            .arg(lease.id())
            .arg(value)
            .arg(px)
            .invoke_async(&mut conn)
            .await?;
        Ok(written == 1)
    }

    async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
        let mut conn = self.conn.clone();
        let extended: i64 = self
            .extend
            .key(self.lease_key(key))
            .arg(lease.id())
            .arg(millis(ttl).max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(extended == 1)
    }

    async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .release
            .key(self.lease_key(key))
            .arg(lease.id())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lifetimes_count_from_the_servers_ttl() {
        let token = Token::new("act.x", Duration::from_secs(100))
            .with_open_id("o1")
            .with_refresh_token("rft.y", Duration::from_secs(1000))
            .with_scopes(["user_info"]);
        let (value, px) = encode(&token).unwrap();
        assert_eq!(px, 1_000_000);
        // 30 s later by Redis's clock.
        let back = decode(&value, 970_000).unwrap();
        assert_eq!(back.secret(), "act.x");
        assert_eq!(back.remaining(), Duration::from_secs(70));
        assert_eq!(back.refresh_token(), Some("rft.y"));
        assert_eq!(back.refresh_expires_in(), Some(Duration::from_secs(970)));
        assert_eq!(back.open_id(), Some("o1"));
        assert_eq!(back.scopes(), ["user_info"]);
        let err = decode("{\"access_token\": \"act.secret\"", 1).unwrap_err();
        assert!(!err.to_string().contains("act.secret"));
    }
}

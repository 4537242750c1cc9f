//! `PostgresStore`: a [`TokenStore`] on PostgreSQL (feature `postgres`), over sqlx's pool.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use super::{entry_lifetime, Lease, TokenStore};
use crate::{BoxError, Error, Token};

/// The table `PostgresStore` uses unless told otherwise (in the connection's `search_path`).
pub const DEFAULT_TABLE: &str = "douyin_auth_tokens";

/// About thirty years in milliseconds: the longest lifetime written (as [`Token`] caps them).
const MAX_MS: u64 = 30 * 365 * 24 * 3600 * 1000;

/// The SQL of one table.
struct Queries {
    table: String,
    create: String,
    get: String,
    put: String,
    put_if_leased: String,
    try_lease: String,
    extend: String,
    release_empty: String,
    release: String,
    purge: String,
}

/// `"a"` or `"a"."b"` for `a` or `a.b`, each an identifier of letters, digits and `_`.
fn quoted_table(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.is_empty() || parts.len() > 2 {
        return None;
    }
    let mut out = Vec::new();
    for part in parts {
        let ok = !part.is_empty()
            && part.len() <= 63
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !part.as_bytes()[0].is_ascii_digit();
        if !ok {
            return None;
        }
        out.push(format!("\"{part}\""));
    }
    Some(out.join("."))
}

/// `now() + <param> ms`.
fn later(param: &str) -> String {
    format!("now() + ({param}::float8 * interval '1 millisecond')")
}

/// Milliseconds from `expr` (a timestamptz) to now, at least 0.
fn left_ms(expr: &str) -> String {
    format!("GREATEST(0, floor(extract(epoch FROM {expr} - now()) * 1000))::bigint")
}

impl Queries {
    fn new(name: &str) -> Option<Self> {
        quoted_table(name).map(|t| Self::of_quoted(name, &t))
    }

    fn of_quoted(name: &str, t: &str) -> Self {
        Self {
            table: name.to_owned(),
            create: create_table_sql(t),
            get: format!(
                "SELECT access_token, open_id, refresh_token, scopes, {access} AS access_ms, \
                 CASE WHEN refresh_expires_at IS NULL THEN NULL ELSE {refresh} END AS refresh_ms \
                 FROM {t} WHERE key = $1 AND access_token IS NOT NULL AND expires_at > now()",
                access = left_ms("access_expires_at"),
                refresh = left_ms("refresh_expires_at"),
            ),
            put: format!(
                "INSERT INTO {t} AS t (key, access_token, open_id, refresh_token, scopes, \
                 access_expires_at, refresh_expires_at, expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, {a}, {r}, {e}, now()) \
                 ON CONFLICT (key) DO UPDATE SET access_token = EXCLUDED.access_token, \
                 open_id = EXCLUDED.open_id, refresh_token = EXCLUDED.refresh_token, \
                 scopes = EXCLUDED.scopes, access_expires_at = EXCLUDED.access_expires_at, \
                 refresh_expires_at = EXCLUDED.refresh_expires_at, \
                 expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at",
                a = later("$6"),
                r = later("$7"),
                e = later("$8"),
            ),
            put_if_leased: format!(
                "UPDATE {t} SET access_token = $3, open_id = $4, refresh_token = $5, scopes = $6, \
                 access_expires_at = {a}, refresh_expires_at = {r}, expires_at = {e}, \
                 updated_at = now() \
                 WHERE key = $1 AND lease_id = $2 AND lease_expires_at > now()",
                a = later("$7"),
                r = later("$8"),
                e = later("$9"),
            ),
            // The lease's own id also wins, so that a retry after a lost answer gets it.
            try_lease: format!(
                "INSERT INTO {t} AS t (key, lease_id, lease_expires_at) VALUES ($1, $2, {l}) \
                 ON CONFLICT (key) DO UPDATE SET lease_id = EXCLUDED.lease_id, \
                 lease_expires_at = EXCLUDED.lease_expires_at \
                 WHERE t.lease_id IS NULL OR t.lease_expires_at <= now() \
                 OR t.lease_id = EXCLUDED.lease_id",
                l = later("$3"),
            ),
            extend: format!(
                "UPDATE {t} SET lease_expires_at = {l} \
                 WHERE key = $1 AND lease_id = $2 AND lease_expires_at > now()",
                l = later("$3"),
            ),
            release_empty: format!(
                "DELETE FROM {t} WHERE key = $1 AND lease_id = $2 AND access_token IS NULL"
            ),
            release: format!(
                "UPDATE {t} SET lease_id = NULL, lease_expires_at = NULL \
                 WHERE key = $1 AND lease_id = $2"
            ),
            purge: format!(
                "DELETE FROM {t} WHERE (expires_at IS NULL OR expires_at <= now()) \
                 AND (lease_expires_at IS NULL OR lease_expires_at <= now())"
            ),
        }
    }
}

fn create_table_sql(t: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (\n\
         \x20   key                text PRIMARY KEY,\n\
         \x20   access_token       text,\n\
         \x20   open_id            text,\n\
         \x20   refresh_token      text,\n\
         \x20   scopes             text[] NOT NULL DEFAULT '{{}}',\n\
         \x20   access_expires_at  timestamptz,\n\
         \x20   refresh_expires_at timestamptz,\n\
         \x20   expires_at         timestamptz,\n\
         \x20   lease_id           text,\n\
         \x20   lease_expires_at   timestamptz,\n\
         \x20   updated_at         timestamptz NOT NULL DEFAULT now()\n\
         )"
    )
}

/// A [`TokenStore`] on PostgreSQL (feature `postgres`): durable user tokens, and the fleet's
/// client token, in one table.
///
/// One row per key holds the token (access token, `open_id`, refresh token, scopes, and when
/// each expires) and the key's lease (its holder's random id and when it ends):
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS douyin_auth_tokens (
///     key                text PRIMARY KEY,
///     access_token       text,
///     open_id            text,
///     refresh_token      text,
///     scopes             text[] NOT NULL DEFAULT '{}',
///     access_expires_at  timestamptz,
///     refresh_expires_at timestamptz,
///     expires_at         timestamptz,  -- the later of the two: the row's end
///     lease_id           text,
///     lease_expires_at   timestamptz,
///     updated_at         timestamptz NOT NULL DEFAULT now()
/// )
/// ```
///
/// [`connect`](Self::connect) creates it if it is missing (under an advisory lock, so a fleet
/// starting at once does not race); a DBA may create it instead and grant the app `SELECT`,
/// `INSERT`, `UPDATE` and `DELETE` on it. [`PostgresStore::create_table_sql`] gives the statement
/// for another table name.
///
/// Every time is the **database's clock** (`now()`), never a host's:
/// - a lease is taken by one conditional upsert (`INSERT … ON CONFLICT (key) DO UPDATE … WHERE
///   the lease is free or has ended`), so exactly one of any number of instances gets it, and a
///   dead holder costs at most one lease time;
/// - [`put_if_leased`](TokenStore::put_if_leased) and [`extend`](TokenStore::extend) are single
///   `UPDATE … WHERE key = $1 AND lease_id = $2 AND lease_expires_at > now()` statements;
///   [`release`](TokenStore::release) compares the id too;
/// - a token is written with its expiries as `now() + lifetime` and read with
///   `expiry - now()` left, so after any restart (of the app or of PostgreSQL) a token has the
///   lifetime the database says it has left.
///
/// Rows whose token and lease have both ended are not read; [`purge_expired`](Self::purge_expired)
/// deletes them (run it now and then, e.g. daily). Keys are UTF-8 text without NUL characters.
///
/// A statement that fails because its connection broke (PostgreSQL restarted, the backend
/// terminated) is tried once more on a fresh connection of the pool, so a restart between two
/// statements is not even an error; each statement is safe to repeat. Errors never quote a
/// token, the URL or a row.
///
/// The rows hold tokens: protect the table as you protect the tokens, or wrap the store in
/// [`EncryptedStore`](super::EncryptedStore). Clones share the pool. Its `Debug` shows the
/// table, never the URL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    queries: Arc<Queries>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.queries.table)
            .finish_non_exhaustive()
    }
}

fn store_error(what: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| Error::Store(format!("{what}: {}", describe(&e)).into())
}

/// A description of a sqlx error without the row values a database error's detail may hold.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => format!(
            "PostgreSQL answered {}: {}",
            db.code().as_deref().unwrap_or("an error"),
            db.message()
        ),
        sqlx::Error::Io(io) => format!("the connection to PostgreSQL failed: {io}"),
        sqlx::Error::Tls(_) => "the TLS connection to PostgreSQL failed".to_owned(),
        sqlx::Error::Configuration(_) => "invalid PostgreSQL connection options".to_owned(),
        sqlx::Error::PoolTimedOut => {
            "no PostgreSQL connection within the pool's timeout".to_owned()
        }
        sqlx::Error::PoolClosed => "the PostgreSQL pool is closed".to_owned(),
        sqlx::Error::ColumnNotFound(c) => format!("the table has no column {c:?}"),
        sqlx::Error::ColumnDecode { index, .. } => format!("a column ({index}) is not readable"),
        other => format!("PostgreSQL failed ({})", kind(other)),
    }
}

fn kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Protocol(_) => "protocol error",
        sqlx::Error::RowNotFound => "no row",
        sqlx::Error::WorkerCrashed => "the connection's worker crashed",
        _ => "unexpected error",
    }
}

/// A connection that broke: the statement did not run, or its answer was lost.
fn is_broken_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01..03: admin or crash shutdown, cannot connect now.
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Runs `op`, once more if the connection broke under it.
async fn retrying<T, F, Fut>(op: F) -> Result<T, BoxError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match op().await {
        Ok(v) => Ok(v),
        Err(e) if is_broken_connection(&e) => op().await.map_err(|e| describe(&e).into()),
        Err(e) => Err(describe(&e).into()),
    }
}

fn millis(d: Duration) -> f64 {
    // Exact: the value is below 2^53.
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(MAX_MS) as f64
}

/// The values bound for a token: secrets, open_id, scopes, and the three lifetimes in ms.
struct Bound {
    access: String,
    open_id: Option<String>,
    refresh: Option<String>,
    scopes: Vec<String>,
    access_ms: f64,
    refresh_ms: Option<f64>,
    life_ms: f64,
}

impl Bound {
    fn of(token: &Token) -> Self {
        Self {
            access: token.secret().to_owned(),
            open_id: token.open_id().map(str::to_owned),
            refresh: token.refresh_token().map(str::to_owned),
            scopes: token.scopes().to_vec(),
            access_ms: millis(token.remaining()),
            refresh_ms: token.refresh_remaining().map(millis),
            life_ms: millis(entry_lifetime(token)).max(1.0),
        }
    }
}

fn decode(row: &PgRow) -> Result<Token, sqlx::Error> {
    let access: String = row.try_get("access_token")?;
    let open_id: Option<String> = row.try_get("open_id")?;
    let refresh: Option<String> = row.try_get("refresh_token")?;
    let scopes: Vec<String> = row.try_get("scopes")?;
    let access_ms: i64 = row.try_get("access_ms")?;
    let refresh_ms: Option<i64> = row.try_get("refresh_ms")?;
    let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let mut token = Token::new(access, ms(access_ms)).with_scopes(scopes);
    if let Some(open_id) = open_id {
        token = token.with_open_id(open_id);
    }
    if let Some(refresh) = refresh {
        token = token.with_refresh_token(refresh, ms(refresh_ms.unwrap_or(0)));
    }
    Ok(token)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`,
    /// with any of libpq's URL parameters sqlx knows, e.g.
    /// `?options=-c%20search_path%3Dmy_schema` or `sslmode`), with a pool of up to 4
    /// connections that waits at most 2 seconds for one, and creates the table
    /// [`DEFAULT_TABLE`] if it is missing. Fails if the database cannot be reached.
    ///
    /// The crate builds sqlx without TLS: use a local or tunnelled connection, or build the
    /// pool yourself (with sqlx's TLS features) and use [`from_pool`](Self::from_pool).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| Error::Store("invalid PostgreSQL URL".into()))?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(store_error("connecting to PostgreSQL failed"))?;
        let store = Self::from_pool(pool);
        store.create_table().await?;
        Ok(store)
    }

    /// A store on the application's own pool, with the table [`DEFAULT_TABLE`]. It creates
    /// nothing: call [`create_table`](Self::create_table), or have the table created by a
    /// migration (see [`create_table_sql`](Self::create_table_sql)).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            queries: Arc::new(Queries::of_quoted(
                DEFAULT_TABLE,
                &format!("\"{DEFAULT_TABLE}\""),
            )),
        }
    }

    /// The same store on the table `name` (`table` or `schema.table`; letters, digits and `_`).
    pub fn with_table(self, name: &str) -> Result<Self, Error> {
        let queries = Queries::new(name)
            .ok_or_else(|| Error::Store(format!("invalid table name {name:?}").into()))?;
        Ok(Self {
            pool: self.pool,
            queries: Arc::new(queries),
        })
    }

    /// The `CREATE TABLE IF NOT EXISTS` statement for the table `name`, for a migration; `None`
    /// if `name` is not a valid table name.
    pub fn create_table_sql(name: &str) -> Option<String> {
        quoted_table(name).map(|t| create_table_sql(&t))
    }

    /// Creates the store's table if it is missing (one instance at a time: an advisory lock).
    pub async fn create_table(&self) -> Result<(), Error> {
        const FAILED: &str = "creating the token table failed";
        let mut tx = self.pool.begin().await.map_err(store_error(FAILED))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("douyin-auth:{}", self.queries.table))
            .execute(&mut *tx)
            .await
            .map_err(store_error(FAILED))?;
        sqlx::query(&self.queries.create)
            .execute(&mut *tx)
            .await
            .map_err(store_error(FAILED))?;
        tx.commit().await.map_err(store_error(FAILED))
    }

    /// Deletes the rows whose token and lease have both ended; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let q = &self.queries.purge;
        retrying(|| sqlx::query(q).execute(&self.pool))
            .await
            .map(|r| r.rows_affected())
            .map_err(Error::Store)
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table's name as given.
    pub fn table(&self) -> &str {
        &self.queries.table
    }
}

impl TokenStore for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
        let q = &self.queries.get;
        let row = retrying(|| sqlx::query(q).bind(key).fetch_optional(&self.pool)).await?;
        match row {
            Some(row) => Ok(Some(decode(&row).map_err(|e| describe(&e))?)),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
        let b = Bound::of(token);
        let q = &self.queries.put;
        retrying(|| {
            sqlx::query(q)
                .bind(key)
                .bind(&b.access)
                .bind(&b.open_id)
                .bind(&b.refresh)
                .bind(&b.scopes)
                .bind(b.access_ms)
                .bind(b.refresh_ms)
                .bind(b.life_ms)
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn try_lease(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
        let lease = Lease::generate(ttl)?;
        let q = &self.queries.try_lease;
        let ms = millis(ttl).max(1.0);
        let done = retrying(|| {
            sqlx::query(q)
                .bind(key)
                .bind(lease.id())
                .bind(ms)
                .execute(&self.pool)
        })
        .await?;
        Ok((done.rows_affected() == 1).then_some(lease))
    }

    async fn put_if_leased(
        &self,
        key: &str,
        lease: &Lease,
        token: &Token,
    ) -> Result<bool, BoxError> {
        let b = Bound::of(token);
        let q = &self.queries.put_if_leased;
        let done = retrying(|| {
            sqlx::query(q)
                .bind(key)
                .bind(lease.id())
                .bind(&b.access)
                .bind(&b.open_id)
                .bind(&b.refresh)
                .bind(&b.scopes)
                .bind(b.access_ms)
                .bind(b.refresh_ms)
                .bind(b.life_ms)
                .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn extend(&self, key: &str, lease: &Lease, ttl: Duration) -> Result<bool, BoxError> {
        let q = &self.queries.extend;
        let ms = millis(ttl).max(1.0);
        let done = retrying(|| {
            sqlx::query(q)
                .bind(key)
                .bind(lease.id())
                .bind(ms)
                .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, key: &str, lease: &Lease) -> Result<(), BoxError> {
        let (empty, q) = (&self.queries.release_empty, &self.queries.release);
        retrying(|| {
            sqlx::query(empty)
                .bind(key)
                .bind(lease.id())
                .execute(&self.pool)
        })
        .await?;
        retrying(|| {
            sqlx::query(q)
                .bind(key)
                .bind(lease.id())
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers_and_quoted() {
        assert_eq!(
            quoted_table("douyin_auth_tokens").as_deref(),
            Some("\"douyin_auth_tokens\"")
        );
        assert_eq!(
            quoted_table("app.tokens").as_deref(),
            Some("\"app\".\"tokens\"")
        );
        for bad in [
            "",
            "a.b.c",
            "a;drop",
            "t\"x",
            "1abc",
            "a.",
            "with space",
            &"x".repeat(64),
        ] {
            assert_eq!(quoted_table(bad), None, "{bad}");
        }
        let sql = PostgresStore::create_table_sql("app.tokens").unwrap();
        assert!(
            sql.starts_with("CREATE TABLE IF NOT EXISTS \"app\".\"tokens\" ("),
            "{sql}"
        );
        assert!(sql.contains("DEFAULT '{}'"), "{sql}");
    }

    #[test]
    fn lifetimes_are_capped_and_exact_in_milliseconds() {
        assert_eq!(millis(Duration::MAX), MAX_MS as f64);
        assert_eq!(millis(Duration::from_millis(1234)), 1234.0);
    }
}

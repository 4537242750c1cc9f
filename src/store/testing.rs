//! The conformance kit (feature `test-util`): the whole [`TokenStore`] contract, run against a
//! store you build.
//!
//! The crate runs these checks on [`MemoryStore`](super::MemoryStore), `RedisStore`,
//! `PostgresStore` and [`EncryptedStore`](super::EncryptedStore) over each; run them on your own
//! store the same way:
//!
//! ```
//! use douyin_auth::store::{testing, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), testing::Failure> {
//! // Two handles on the same store, as two instances of the app would hold: for a database
//! // store, two separate connections (pools) to the same database.
//! let store = MemoryStore::new();
//! testing::check_store(store.clone(), store).await?;
//! # Ok(())
//! # }
//! ```
//!
//! What is checked, each under keys of its own (`conformance:<random>:…`, so runs may share a
//! store and run in parallel):
//! - **round trip**: a user token (access token, `open_id`, refresh token, scopes) and a client
//!   token read back through the other handle with their lifetimes (within a second or two); a
//!   user token whose access token is used up but whose refresh token lives is still stored; an
//!   entry whose tokens have expired is gone; `put` overwrites;
//! - **one holder**: while one handle holds a key's lease, neither handle gets it;
//! - **lease expiry**: a lease ends by itself after its lifetime (and not long before);
//! - **late writer**: a holder whose lease ended cannot write, nor can a lease never taken;
//!   the new holder can;
//! - **extend**: the holder's extended lease outlives an unextended one; nobody else can extend
//!   it, and nobody can once it has ended;
//! - **release**: only the holder ends its lease; releasing leaves the token alone;
//! - **odd keys**: keys with spaces, control characters, quotes, `%`, `_`, `*`, braces,
//!   non-ASCII text, a long key, and a key that is another key plus `:lease` are all
//!   distinct and round-trip;
//! - **contention**: many tasks on both handles ask for one lease at once: exactly one wins.
//!
//! Leases in the checks last [`lease_ttl`](Contract::lease_ttl) (300 ms by default), so the
//! checks take a few seconds of real time: waits for an expiry poll the store every 10 ms, and
//! give up (a failure) after twenty lease times.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Lease, TokenStore};
use crate::{BoxError, Token};

/// Runs the whole contract with the default settings; see the [module docs](self).
///
/// `first` and `second` are two handles on the same store (for a networked store, two separate
/// connections or pools), as two instances of an app would hold.
pub async fn check_store<S>(first: S, second: S) -> Result<(), Failure>
where
    S: TokenStore + Clone,
{
    Contract::new().check(first, second).await
}

/// Settings of a run of the contract; see the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::store::testing::Contract;
///
/// let contract = Contract::new()
///     .lease_ttl(Duration::from_millis(500))
///     .contenders(32);
/// # drop(contract);
/// ```
#[derive(Clone, Debug)]
pub struct Contract {
    lease_ttl: Duration,
    contenders: usize,
    slack: Duration,
}

impl Default for Contract {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a store does not meet the contract: the check that failed and what was seen.
///
/// The tokens in the checks are made up by the kit; no real secret ever appears here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    check: &'static str,
    detail: String,
}

impl Failure {
    fn new(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            detail: detail.into(),
        }
    }

    /// The name of the failed check (`round trip`, `one holder`, `lease expiry`, …).
    pub fn check(&self) -> &str {
        self.check
    }

    /// What the check saw.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store breaks the TokenStore contract ({}): {}",
            self.check, self.detail
        )
    }
}

impl std::error::Error for Failure {}

macro_rules! ensure {
    ($check:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Failure::new($check, format!($($msg)+)));
        }
    };
}

/// A store call that must not fail.
async fn ok<T>(
    check: &'static str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, BoxError>>,
) -> Result<T, Failure> {
    fut.await
        .map_err(|e| Failure::new(check, format!("{what} failed: {e}")))
}

impl Contract {
    /// The default settings: leases of 300 ms, 16 contenders, a lifetime tolerance of 2 s.
    pub fn new() -> Self {
        Self {
            lease_ttl: Duration::from_millis(300),
            contenders: 16,
            slack: Duration::from_secs(2),
        }
    }

    /// How long the leases (and the short-lived tokens) of the checks last. Longer for a store
    /// whose clock is coarse or far away; each check waits for a few of them.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// How many tasks ask for one lease at once in the contention check (at least 2).
    #[must_use]
    pub fn contenders(mut self, n: usize) -> Self {
        self.contenders = n.max(2);
        self
    }

    /// How far a lifetime read back may be below the one written (default 2 s): the time the
    /// round trip takes, and the store's clock resolution.
    #[must_use]
    pub fn lifetime_tolerance(mut self, slack: Duration) -> Self {
        self.slack = slack;
        self
    }

    /// Runs every check; the first that fails is the error. See [`check_store`].
    pub async fn check<S>(&self, first: S, second: S) -> Result<(), Failure>
    where
        S: TokenStore + Clone,
    {
        let run = Run::new(self)?;
        run.round_trip(&first, &second).await?;
        run.one_holder(&first, &second).await?;
        run.lease_expiry(&first, &second).await?;
        run.late_writer(&first, &second).await?;
        run.extend(&first, &second).await?;
        run.release(&first, &second).await?;
        run.odd_keys(&first, &second).await?;
        run.contention(&first, &second).await?;
        Ok(())
    }
}

struct Run {
    id: String,
    ttl: Duration,
    long: Duration,
    contenders: usize,
    slack: Duration,
}

impl Run {
    fn new(c: &Contract) -> Result<Self, Failure> {
        let lease = Lease::generate(Duration::ZERO)
            .map_err(|e| Failure::new("setup", format!("no random id: {e}")))?;
        Ok(Self {
            id: lease.id().chars().take(12).collect(),
            ttl: c.lease_ttl,
            long: Duration::from_secs(60),
            contenders: c.contenders,
            slack: c.slack,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("conformance:{}:{name}", self.id)
    }

    fn secret(&self, name: &str) -> String {
        format!("act.conformance.{}.{name}", self.id)
    }

    /// Twenty lease times, and at least two seconds: the longest wait for an expiry.
    fn patience(&self) -> Duration {
        (self.ttl * 20).max(Duration::from_secs(2))
    }

    fn near(
        &self,
        check: &'static str,
        what: &str,
        got: Duration,
        want: Duration,
    ) -> Result<(), Failure> {
        ensure!(
            check,
            got <= want && got + self.slack >= want,
            "{what}: {got:?} left, written with {want:?}"
        );
        Ok(())
    }

    /// Polls `try_lease` on `store` until it gives a lease; `None` after [`patience`].
    async fn wait_for_lease<S: TokenStore>(
        &self,
        check: &'static str,
        store: &S,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, Failure> {
        let end = Instant::now() + self.patience();
        loop {
            if let Some(lease) = ok(check, "try_lease", store.try_lease(key, ttl)).await? {
                return Ok(Some(lease));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn round_trip<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "round trip";
        let user_key = self.key("user");
        ensure!(
            C,
            ok(C, "get", b.get(&user_key)).await?.is_none(),
            "a key never written reads as a token"
        );
        let access = Duration::from_secs(100);
        let refresh = Duration::from_secs(1000);
        let user = Token::new(self.secret("user"), access)
            .with_open_id(format!("open-id-{}", self.id))
            .with_refresh_token(format!("rft.conformance.{}", self.id), refresh)
            .with_scopes(["user_info", "video.list.bind"]);
        ok(C, "put", a.put(&user_key, &user)).await?;
        let Some(back) = ok(C, "get", b.get(&user_key)).await? else {
            return Err(Failure::new(C, "a token written is not read back"));
        };
        ensure!(
            C,
            back.secret() == user.secret(),
            "the access token changed"
        );
        ensure!(C, back.open_id() == user.open_id(), "the open_id changed");
        ensure!(
            C,
            back.refresh_token() == user.refresh_token(),
            "the refresh token changed"
        );
        ensure!(
            C,
            back.scopes() == user.scopes(),
            "the scopes changed: {:?}",
            back.scopes()
        );
        self.near(C, "the access token", back.remaining(), access)?;
        let Some(refresh_left) = back.refresh_remaining() else {
            return Err(Failure::new(C, "the refresh token lost its lifetime"));
        };
        self.near(C, "the refresh token", refresh_left, refresh)?;

        // A client token: no refresh token, no open_id.
        let client_key = self.key("client");
        let client = Token::new(self.secret("client"), Duration::from_secs(7200));
        ok(C, "put", b.put(&client_key, &client)).await?;
        let Some(back) = ok(C, "get", a.get(&client_key)).await? else {
            return Err(Failure::new(C, "a client token written is not read back"));
        };
        ensure!(
            C,
            back.secret() == client.secret(),
            "the client token changed"
        );
        ensure!(
            C,
            back.refresh_token().is_none() && back.open_id().is_none(),
            "a client token came back with a refresh token or an open_id"
        );
        self.near(
            C,
            "the client token",
            back.remaining(),
            Duration::from_secs(7200),
        )?;

        // Overwritten by put.
        let newer = Token::new(self.secret("client2"), Duration::from_secs(3600));
        ok(C, "put", a.put(&client_key, &newer)).await?;
        let back = ok(C, "get", b.get(&client_key)).await?;
        ensure!(
            C,
            back.as_ref().map(Token::secret) == Some(newer.secret()),
            "put did not overwrite the older token"
        );

        // A used-up access token with a living refresh token stays stored.
        let used_key = self.key("used-up");
        let used = Token::new(self.secret("used-up"), Duration::ZERO)
            .with_open_id("open-id-used-up")
            .with_refresh_token(format!("rft.conformance.{}.used-up", self.id), refresh);
        ok(C, "put", a.put(&used_key, &used)).await?;
        let Some(back) = ok(C, "get", b.get(&used_key)).await? else {
            return Err(Failure::new(
                C,
                "a token whose access token expired but whose refresh token lives was dropped",
            ));
        };
        ensure!(
            C,
            back.remaining() == Duration::ZERO,
            "an expired access token came back with {:?} left",
            back.remaining()
        );
        ensure!(
            C,
            back.refresh_token() == used.refresh_token(),
            "the refresh token changed"
        );

        // An entry ends with its tokens.
        let short_key = self.key("short");
        let short = Token::new(self.secret("short"), self.ttl);
        let written = Instant::now();
        ok(C, "put", a.put(&short_key, &short)).await?;
        let first = ok(C, "get", b.get(&short_key)).await?;
        if written.elapsed() < self.ttl / 2 {
            ensure!(
                C,
                first.is_some(),
                "a token with {:?} to live was gone at once",
                self.ttl
            );
        }
        let end = Instant::now() + self.patience();
        loop {
            match ok(C, "get", b.get(&short_key)).await? {
                None => break,
                Some(t) if Instant::now() >= end => {
                    return Err(Failure::new(
                        C,
                        format!(
                        "a token written with {:?} to live is still there after {:?} ({:?} left)",
                        self.ttl,
                        written.elapsed(),
                        t.remaining()
                    ),
                    ))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        Ok(())
    }

    async fn one_holder<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "one holder";
        let key = self.key("one-holder");
        let Some(lease) = ok(C, "try_lease", a.try_lease(&key, self.long)).await? else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        ensure!(
            C,
            ok(C, "try_lease", b.try_lease(&key, self.long))
                .await?
                .is_none(),
            "the other handle got a lease that is held"
        );
        ensure!(
            C,
            ok(C, "try_lease", a.try_lease(&key, self.long))
                .await?
                .is_none(),
            "the same handle got a lease that is held a second time"
        );
        ok(C, "release", a.release(&key, &lease)).await?;
        Ok(())
    }

    async fn lease_expiry<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "lease expiry";
        let key = self.key("expiry");
        let taken = Instant::now();
        if ok(C, "try_lease", a.try_lease(&key, self.ttl))
            .await?
            .is_none()
        {
            return Err(Failure::new(C, "a free key's lease was refused"));
        }
        let early = ok(C, "try_lease", b.try_lease(&key, self.ttl)).await?;
        if taken.elapsed() < self.ttl / 2 {
            ensure!(
                C,
                early.is_none(),
                "a lease of {:?} ended within {:?}",
                self.ttl,
                taken.elapsed()
            );
        }
        ensure!(
            C,
            self.wait_for_lease(C, b, &key, self.ttl).await?.is_some(),
            "a lease of {:?} has not ended by itself after {:?}",
            self.ttl,
            taken.elapsed()
        );
        Ok(())
    }

    async fn late_writer<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "late writer";
        let key = self.key("late-writer");
        // A lease never taken writes nothing.
        let stranger = Lease::generate(self.long)
            .map_err(|e| Failure::new(C, format!("no random id: {e}")))?;
        let forged = Token::new(self.secret("forged"), self.long);
        ensure!(
            C,
            !ok(
                C,
                "put_if_leased",
                a.put_if_leased(&key, &stranger, &forged)
            )
            .await?,
            "a lease that was never taken wrote a token"
        );
        ensure!(
            C,
            ok(C, "get", b.get(&key)).await?.is_none(),
            "put_if_leased said no but wrote a token"
        );

        let Some(old) = ok(C, "try_lease", a.try_lease(&key, self.ttl)).await? else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        let first = Token::new(self.secret("first"), self.long);
        ensure!(
            C,
            ok(C, "put_if_leased", a.put_if_leased(&key, &old, &first)).await?,
            "the holder could not write"
        );
        // The holder stalls; its lease ends and the other handle takes it.
        let Some(new) = self.wait_for_lease(C, b, &key, self.long).await? else {
            return Err(Failure::new(C, "the stalled holder's lease never ended"));
        };
        let late = Token::new(self.secret("late"), self.long);
        ensure!(
            C,
            !ok(C, "put_if_leased", a.put_if_leased(&key, &old, &late)).await?,
            "a holder whose lease had ended wrote over the new holder"
        );
        let fresh = Token::new(self.secret("fresh"), self.long);
        ensure!(
            C,
            ok(C, "put_if_leased", b.put_if_leased(&key, &new, &fresh)).await?,
            "the new holder could not write"
        );
        // Writing does not end the lease.
        ensure!(
            C,
            ok(C, "try_lease", a.try_lease(&key, self.long))
                .await?
                .is_none(),
            "a write under the lease ended the lease"
        );
        let stored = ok(C, "get", a.get(&key)).await?;
        ensure!(
            C,
            stored.as_ref().map(Token::secret) == Some(fresh.secret()),
            "the stored token is not the new holder's"
        );
        ok(C, "release", b.release(&key, &new)).await?;
        Ok(())
    }

    async fn extend<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "extend";
        let extended_key = self.key("extended");
        let control_key = self.key("control");
        let foreign_key = self.key("foreign");
        let (Some(held), Some(_control), Some(_foreign)) = (
            ok(C, "try_lease", a.try_lease(&extended_key, self.ttl)).await?,
            ok(C, "try_lease", a.try_lease(&control_key, self.ttl)).await?,
            ok(C, "try_lease", a.try_lease(&foreign_key, self.ttl)).await?,
        ) else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        ensure!(
            C,
            ok(C, "extend", a.extend(&extended_key, &held, self.long)).await?,
            "the holder could not extend its lease"
        );
        // Somebody else's lease cannot extend the foreign key's lease.
        ensure!(
            C,
            !ok(C, "extend", b.extend(&foreign_key, &held, self.long)).await?,
            "a lease extended a key it does not hold"
        );
        // The control lease (and the foreign one) end by themselves; the extended one does not.
        if self
            .wait_for_lease(C, b, &control_key, self.long)
            .await?
            .is_none()
        {
            return Err(Failure::new(C, "an unextended lease never ended"));
        }
        ensure!(
            C,
            ok(C, "try_lease", b.try_lease(&extended_key, self.long))
                .await?
                .is_none(),
            "an extended lease ended with its first lifetime"
        );
        ensure!(
            C,
            self.wait_for_lease(C, b, &foreign_key, self.long)
                .await?
                .is_some(),
            "a refused extend kept the lease alive"
        );
        // Once it has ended, nobody extends it.
        let Some(short) = ok(C, "try_lease", a.try_lease(&self.key("ended"), self.ttl)).await?
        else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        if self
            .wait_for_lease(C, b, &self.key("ended"), self.long)
            .await?
            .is_none()
        {
            return Err(Failure::new(C, "a lease never ended"));
        }
        ensure!(
            C,
            !ok(C, "extend", a.extend(&self.key("ended"), &short, self.long)).await?,
            "a lease that had ended (and was taken by another) was extended"
        );
        ok(C, "release", a.release(&extended_key, &held)).await?;
        Ok(())
    }

    async fn release<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "release";
        let key = self.key("release");
        let token = Token::new(self.secret("release"), self.long);
        ok(C, "put", a.put(&key, &token)).await?;
        let Some(held) = ok(C, "try_lease", a.try_lease(&key, self.long)).await? else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        let stranger = Lease::generate(self.long)
            .map_err(|e| Failure::new(C, format!("no random id: {e}")))?;
        ok(C, "release", b.release(&key, &stranger)).await?;
        ensure!(
            C,
            ok(C, "try_lease", b.try_lease(&key, self.long))
                .await?
                .is_none(),
            "another lease ended the holder's lease"
        );
        ensure!(
            C,
            ok(C, "put_if_leased", a.put_if_leased(&key, &held, &token)).await?,
            "the holder lost its lease to another's release"
        );
        ok(C, "release", a.release(&key, &held)).await?;
        let Some(next) = ok(C, "try_lease", b.try_lease(&key, self.long)).await? else {
            return Err(Failure::new(
                C,
                "the holder's release did not end its lease",
            ));
        };
        // The old holder's release, late, leaves the new holder's lease alone.
        ok(C, "release", a.release(&key, &held)).await?;
        ensure!(
            C,
            ok(C, "try_lease", a.try_lease(&key, self.long))
                .await?
                .is_none(),
            "a late release ended the next holder's lease"
        );
        ok(C, "release", b.release(&key, &next)).await?;
        let stored = ok(C, "get", b.get(&key)).await?;
        ensure!(
            C,
            stored.as_ref().map(Token::secret) == Some(token.secret()),
            "leasing and releasing lost the token"
        );
        Ok(())
    }

    async fn odd_keys<S: TokenStore>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "odd keys";
        let names = [
            "user:plain",
            "user:plain:lease",
            "user:with space\tand\ttabs\nand a newline",
            "user:'quotes\" and \\backslashes\\",
            "user:%_*?[]^$.|+() like and glob",
            "user:{hash}{tags}",
            "user:ünïcødé 抖音 ✓",
            "user:plain2",
            "USER:PLAIN",
        ];
        let long = format!("user:{}", "x".repeat(300));
        let mut keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        keys.push(self.key(&long));
        for (i, key) in keys.iter().enumerate() {
            let t = Token::new(self.secret(&format!("odd{i}")), self.long)
                .with_open_id(format!("o{i}"));
            ok(C, "put", a.put(key, &t)).await?;
        }
        for (i, key) in keys.iter().enumerate() {
            let got = ok(C, "get", b.get(key)).await?;
            ensure!(
                C,
                got.as_ref().map(Token::secret) == Some(self.secret(&format!("odd{i}")).as_str()),
                "the key {key:?} did not read back its own token"
            );
        }
        // A lease on a key and the token of "<key>:lease" are unrelated.
        let (plain, lease_lookalike) = (self.key(names[0]), self.key(names[1]));
        let (plain, lease_lookalike) = (&plain, &lease_lookalike);
        let Some(lease) = ok(C, "try_lease", a.try_lease(plain, self.long)).await? else {
            return Err(Failure::new(C, "a free key's lease was refused"));
        };
        let again = Token::new(self.secret("lookalike"), self.long);
        ok(C, "put", b.put(lease_lookalike, &again)).await?;
        ensure!(
            C,
            ok(C, "try_lease", b.try_lease(plain, self.long))
                .await?
                .is_none(),
            "writing the token of {lease_lookalike:?} ended the lease of {plain:?}"
        );
        ensure!(
            C,
            ok(C, "put_if_leased", a.put_if_leased(plain, &lease, &again)).await?,
            "writing the token of {lease_lookalike:?} took the lease of {plain:?}"
        );
        let Some(lookalike_lease) =
            ok(C, "try_lease", b.try_lease(lease_lookalike, self.long)).await?
        else {
            return Err(Failure::new(
                C,
                format!("the lease of {plain:?} holds {lease_lookalike:?} too"),
            ));
        };
        ok(C, "release", a.release(plain, &lease)).await?;
        ok(C, "release", b.release(lease_lookalike, &lookalike_lease)).await?;
        Ok(())
    }

    async fn contention<S: TokenStore + Clone>(&self, a: &S, b: &S) -> Result<(), Failure> {
        const C: &str = "contention";
        let key = Arc::new(self.key("contention"));
        let barrier = Arc::new(Barrier::new(self.contenders));
        let mut tasks = JoinSet::new();
        for i in 0..self.contenders {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (key, barrier, ttl) = (key.clone(), barrier.clone(), self.long);
            tasks.spawn(async move {
                barrier.wait().await;
                store.try_lease(&key, ttl).await.map(|l| l.is_some())
            });
        }
        let mut winners = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(won)) => winners += usize::from(won),
                Ok(Err(e)) => return Err(Failure::new(C, format!("try_lease failed: {e}"))),
                Err(e) => return Err(Failure::new(C, format!("a contender panicked: {e}"))),
            }
        }
        ensure!(
            C,
            winners == 1,
            "{winners} of {} tasks asking at once got the lease",
            self.contenders
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        let store = MemoryStore::new();
        check_store(store.clone(), store).await.unwrap();
    }

    /// A store that lets a second lease through: the kit must catch it.
    #[derive(Clone, Default)]
    struct TwoHolders(MemoryStore);

    impl TokenStore for TwoHolders {
        async fn get(&self, key: &str) -> Result<Option<Token>, BoxError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, token: &Token) -> Result<(), BoxError> {
            self.0.put(key, token).await
        }
        async fn try_lease(&self, _key: &str, ttl: Duration) -> Result<Option<Lease>, BoxError> {
            Ok(Some(Lease::generate(ttl)?))
        }
        async fn put_if_leased(
            &self,
            key: &str,
            _: &Lease,
            token: &Token,
        ) -> Result<bool, BoxError> {
            self.0.put(key, token).await.map(|()| true)
        }
        async fn extend(&self, _: &str, _: &Lease, _: Duration) -> Result<bool, BoxError> {
            Ok(true)
        }
        async fn release(&self, _: &str, _: &Lease) -> Result<(), BoxError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_store_that_hands_out_two_leases_fails() {
        let store = TwoHolders::default();
        let failure = check_store(store.clone(), store).await.unwrap_err();
        assert_eq!(failure.check(), "one holder", "{failure}");
    }
}

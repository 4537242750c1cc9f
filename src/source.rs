//! [`TokenSource`]: where tokens come from, and the ready-made sources.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::BoxError;

use crate::token::Token;

/// Fetches a new token. The cache calls it, one call at a time per cache, when its token is
/// missing, stale or reported expired.
///
/// Implement it for your own source (a secret store, another service, a mini-app token
/// endpoint), or use the ready-made ones: [`ClientCredentials`](crate::douyin::ClientCredentials)
/// for the app's client token, [`UserTokens`](crate::douyin::UserTokens) for a user's stored
/// tokens, [`source_fn`] for a closure and [`StaticToken`] for a fixed token.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::{BoxError, Token, TokenSource};
///
/// struct FromVault;
///
/// impl TokenSource for FromVault {
///     async fn fetch(&self) -> Result<Token, BoxError> {
///         // read the token from wherever it lives
///         Ok(Token::new("clt.from-vault", Duration::from_secs(7200)))
///     }
/// }
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token.
    fn fetch(&self) -> impl Future<Output = Result<Token, BoxError>> + Send;

    /// Fetches a token to replace `rejected`, which the server just refused (an "expired" or
    /// "invalid" answer). The layer calls it instead of [`fetch`](Self::fetch) for the refresh
    /// such an answer starts, so a source that would hand `rejected` straight back (a stable
    /// endpoint that returns the same token while it is valid) can get another one.
    ///
    /// The default is [`fetch`](Self::fetch). If the token returned is `rejected` again, the
    /// layer does not retry the request with it: the caller gets the server's answer.
    fn fetch_replacing(
        &self,
        rejected: &Token,
    ) -> impl Future<Output = Result<Token, BoxError>> + Send {
        let _ = rejected;
        self.fetch()
    }
}

impl<T: TokenSource> TokenSource for Arc<T> {
    fn fetch(&self) -> impl Future<Output = Result<Token, BoxError>> + Send {
        (**self).fetch()
    }

    fn fetch_replacing(
        &self,
        rejected: &Token,
    ) -> impl Future<Output = Result<Token, BoxError>> + Send {
        (**self).fetch_replacing(rejected)
    }
}

impl<T: TokenSource> TokenSource for Box<T> {
    fn fetch(&self) -> impl Future<Output = Result<Token, BoxError>> + Send {
        (**self).fetch()
    }

    fn fetch_replacing(
        &self,
        rejected: &Token,
    ) -> impl Future<Output = Result<Token, BoxError>> + Send {
        (**self).fetch_replacing(rejected)
    }
}

/// A [`TokenSource`] made from a closure; see [`source_fn`].
#[derive(Clone)]
pub struct FnSource<F> {
    f: F,
}

/// Makes a [`TokenSource`] from a closure returning a future of a token.
///
/// ```
/// use std::time::Duration;
/// use douyin_auth::{source_fn, BoxError, DouyinAuthLayer, Token};
///
/// let layer = DouyinAuthLayer::new(source_fn(|| async {
///     Ok::<_, BoxError>(Token::new("clt.from-closure", Duration::from_secs(7200)))
/// }));
/// # drop(layer);
/// ```
pub fn source_fn<F, Fut>(f: F) -> FnSource<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, BoxError>> + Send,
{
    FnSource { f }
}

impl<F, Fut> TokenSource for FnSource<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, BoxError>> + Send,
{
    fn fetch(&self) -> impl Future<Output = Result<Token, BoxError>> + Send {
        (self.f)()
    }
}

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSource")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A [`TokenSource`] that always hands out the same token, which never expires.
///
/// ```
/// use douyin_auth::{DouyinAuthLayer, StaticToken};
///
/// let layer = DouyinAuthLayer::new(StaticToken::new("clt.fixed"));
/// # drop(layer);
/// ```
#[derive(Clone, Debug)]
pub struct StaticToken {
    token: Token,
}

impl StaticToken {
    /// A source of one fixed token that never expires.
    pub fn new(access_token: impl Into<String>) -> Self {
        Self {
            token: Token::never_expiring(access_token),
        }
    }
}

impl From<Token> for StaticToken {
    /// A source that always hands out `token` (with the expiry it has).
    fn from(token: Token) -> Self {
        Self { token }
    }
}

impl TokenSource for StaticToken {
    async fn fetch(&self) -> Result<Token, BoxError> {
        Ok(self.token.clone())
    }
}

/// The object-safe form the cache keeps its source in (the refresh path may allocate).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) trait DynTokenSource: Send + Sync + 'static {
    fn fetch_boxed(&self) -> BoxFuture<'_, Result<Token, BoxError>>;
    fn fetch_replacing_boxed<'a>(
        &'a self,
        rejected: &'a Token,
    ) -> BoxFuture<'a, Result<Token, BoxError>>;
    fn type_name(&self) -> &'static str;
    /// The full type name, with its path and generic parameters (for the metrics' `family`).
    fn full_type_name(&self) -> &'static str;
    /// The user whose tokens this source fetches, when the per-user layer knows it (for the
    /// refresh logs; never a metric label).
    fn open_id(&self) -> Option<&str>;
}

impl<T: TokenSource> DynTokenSource for T {
    fn fetch_boxed(&self) -> BoxFuture<'_, Result<Token, BoxError>> {
        Box::pin(self.fetch())
    }

    fn fetch_replacing_boxed<'a>(
        &'a self,
        rejected: &'a Token,
    ) -> BoxFuture<'a, Result<Token, BoxError>> {
        Box::pin(self.fetch_replacing(rejected))
    }

    fn type_name(&self) -> &'static str {
        short_type_name(std::any::type_name::<T>())
    }

    fn full_type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn open_id(&self) -> Option<&str> {
        None
    }
}

/// A type's name without its module path and generic parameters, for logs and `Debug`:
/// `ClientCredentials` for `douyin_auth::douyin::client_credentials::ClientCredentials<…>`.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names_drop_the_path_and_the_generics() {
        assert_eq!(
            short_type_name(
                "douyin_auth::store::shared::SharedSource<douyin_auth::douyin::client_credentials::ClientCredentials<douyin_auth::douyin::http::https::HttpsClient>, douyin_auth::store::redis::RedisStore>"
            ),
            "SharedSource"
        );
        assert_eq!(short_type_name("ClientCredentials"), "ClientCredentials");
        assert_eq!(short_type_name("my_app::Vault<T>"), "Vault");
        assert_eq!(short_type_name("&str"), "&str");
        assert_eq!(short_type_name("a::"), "a::");
    }
}

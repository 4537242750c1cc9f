//! [`DouyinLogin`] and its builder: the login's settings and its router.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::Uri;

use super::error::{LoginConfigError, LoginError};
use super::hooks::{default_error_hook, error_hook, login_hook, ErrorHook, LoggedIn, LoginHook};
use super::key::LoginKey;
use super::routes;
use super::used::UsedStates;
use crate::douyin::{HttpClient, OAuthClient};
use crate::store::{TokenStore, DEFAULT_STORE_TIMEOUT};

/// How long a login may take from `GET /login` to the callback by default: 10 minutes, the
/// lifetime of Douyin's authorization codes.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(600);

/// The default path of the route that starts a login.
pub const DEFAULT_LOGIN_PATH: &str = "/login";

/// The default path of the route Douyin sends the user back to.
pub const DEFAULT_CALLBACK_PATH: &str = "/callback";

pub(super) struct Inner<C, St> {
    pub(super) oauth: OAuthClient<C>,
    pub(super) store: St,
    pub(super) redirect_uri: String,
    pub(super) scopes: Vec<String>,
    pub(super) key: LoginKey,
    pub(super) state_ttl: Duration,
    pub(super) login_path: String,
    pub(super) callback_path: String,
    /// The public path of the callback (the redirect URI's): the state cookie's `Path`.
    pub(super) cookie_path: String,
    /// Whether the state cookie is `Secure`: everywhere but plain HTTP on loopback.
    pub(super) secure: bool,
    pub(super) store_timeout: Duration,
    pub(super) used: UsedStates,
    pub(super) on_login: LoginHook,
    pub(super) on_error: ErrorHook,
}

/// A drop-in "log in with Douyin" for axum: `GET /login` sends the browser to Douyin's
/// authorization page, `GET /callback` checks what comes back, exchanges the code, writes the
/// user's tokens to the store and hands over to your `on_login` hook, which starts your app's
/// session. See the [module docs](super) for the flow and an example.
///
/// Clones share the settings, the key and the memory of used states.
pub struct DouyinLogin<C, St> {
    inner: Arc<Inner<C, St>>,
}

impl<C, St> Clone for DouyinLogin<C, St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, St> fmt::Debug for DouyinLogin<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("DouyinLogin")
            .field("oauth", &i.oauth)
            .field("store", &std::any::type_name::<St>())
            .field("redirect_uri", &i.redirect_uri)
            .field("scopes", &i.scopes)
            .field("key", &i.key)
            .field("state_ttl", &i.state_ttl)
            .field("login_path", &i.login_path)
            .field("callback_path", &i.callback_path)
            .field("secure_cookie", &i.secure)
            .finish_non_exhaustive()
    }
}

impl<C, St> DouyinLogin<C, St>
where
    C: HttpClient,
    St: TokenStore,
{
    /// A builder of a login for the app of `oauth` that writes the users' tokens to `store`
    /// (under [`StoredUsers::key_for`](crate::users::StoredUsers::key_for), so a
    /// [`StoredUsers`](crate::users::StoredUsers) over the same store acts for the
    /// user as soon as the hook runs).
    pub fn builder(oauth: OAuthClient<C>, store: St) -> DouyinLoginBuilder<C, St> {
        DouyinLoginBuilder {
            oauth,
            store,
            redirect_uri: None,
            scopes: Vec::new(),
            key: None,
            state_ttl: DEFAULT_STATE_TTL,
            login_path: DEFAULT_LOGIN_PATH.into(),
            callback_path: DEFAULT_CALLBACK_PATH.into(),
            store_timeout: DEFAULT_STORE_TIMEOUT,
            on_login: None,
            on_error: None,
        }
    }

    /// The router: `GET` on the login path and on the callback path (`/login` and
    /// `/callback` by default). Merge or nest it into your app's router; it works with any
    /// app state.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let i = &self.inner;
        Router::new()
            .route(&i.login_path, get(routes::start::<C, St>))
            .route(&i.callback_path, get(routes::callback::<C, St>))
            .with_state(Arc::clone(&self.inner))
    }
}

impl<C, St> DouyinLogin<C, St> {
    /// The redirect URI sent to Douyin.
    pub fn redirect_uri(&self) -> &str {
        &self.inner.redirect_uri
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// Whether the state cookie carries `Secure` (everywhere but plain HTTP on loopback).
    pub fn secure_cookie(&self) -> bool {
        self.inner.secure
    }
}

/// Configures a [`DouyinLogin`]; see [`DouyinLogin::builder`].
pub struct DouyinLoginBuilder<C, St> {
    oauth: OAuthClient<C>,
    store: St,
    redirect_uri: Option<String>,
    scopes: Vec<String>,
    key: Option<LoginKey>,
    state_ttl: Duration,
    login_path: String,
    callback_path: String,
    store_timeout: Duration,
    on_login: Option<LoginHook>,
    on_error: Option<ErrorHook>,
}

impl<C, St> fmt::Debug for DouyinLoginBuilder<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinLoginBuilder")
            .field("oauth", &self.oauth)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("key", &self.key)
            .field("state_ttl", &self.state_ttl)
            .field("login_path", &self.login_path)
            .field("callback_path", &self.callback_path)
            .field("on_login", &self.on_login.is_some())
            .field("on_error", &self.on_error.is_some())
            .finish_non_exhaustive()
    }
}

impl<C, St> DouyinLoginBuilder<C, St>
where
    C: HttpClient,
    St: TokenStore,
{
    /// The public URL of the callback route, registered with Douyin: `https://`, or
    /// `http://` on a loopback host (`127.0.0.1`, `[::1]`, `localhost`) for development and
    /// the mock. Required.
    #[must_use]
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Asks for one more scope (at least one is required; `user_info` for a login).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Asks for several more scopes.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Signs the state cookie with `key` (default: a random key made by
    /// [`build`](Self::build)). Give every instance of a fleet the same key.
    #[must_use]
    pub fn key(mut self, key: LoginKey) -> Self {
        self.key = Some(key);
        self
    }

    /// How long a login may take from the login route to the callback (default
    /// [`DEFAULT_STATE_TTL`], 10 minutes; at least one second). The state cookie's `Max-Age`.
    #[must_use]
    pub fn state_ttl(mut self, ttl: Duration) -> Self {
        self.state_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The path of the login route in the router (default [`DEFAULT_LOGIN_PATH`]).
    #[must_use]
    pub fn login_path(mut self, path: impl Into<String>) -> Self {
        self.login_path = path.into();
        self
    }

    /// The path of the callback route in the router (default [`DEFAULT_CALLBACK_PATH`]). The
    /// redirect URI must reach it: with the router nested under `/auth`, the redirect URI ends
    /// in `/auth/callback`.
    #[must_use]
    pub fn callback_path(mut self, path: impl Into<String>) -> Self {
        self.callback_path = path.into();
        self
    }

    /// How long writing the user's tokens may take (default [`DEFAULT_STORE_TIMEOUT`]).
    #[must_use]
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// The hook that runs once the user's tokens are in the store: start the app's session
    /// (set its cookie) and answer, typically with a redirect. Required.
    ///
    /// The router adds a `Set-Cookie` that deletes the state cookie to whatever the hook
    /// answers (appended: the hook's own cookies stay).
    #[must_use]
    pub fn on_login<F, Fut, R>(mut self, hook: F) -> Self
    where
        F: Fn(LoggedIn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.on_login = Some(login_hook(hook));
        self
    }

    /// The hook that answers a failed login (default: [`LoginError::into_response`], a small
    /// HTML page). Like the login hook's, its answer gets the `Set-Cookie` that deletes the
    /// state cookie.
    #[must_use]
    pub fn on_error<F, Fut, R>(mut self, hook: F) -> Self
    where
        F: Fn(LoginError) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.on_error = Some(error_hook(hook));
        self
    }

    /// The login, or what is wrong with its settings.
    pub fn build(self) -> Result<DouyinLogin<C, St>, LoginConfigError> {
        let redirect_uri = self
            .redirect_uri
            .ok_or(LoginConfigError::MissingRedirectUri)?;
        let (cookie_path, secure) = check_redirect_uri(&redirect_uri)?;
        if self.scopes.iter().all(|s| s.trim().is_empty()) {
            return Err(LoginConfigError::NoScopes);
        }
        for path in [&self.login_path, &self.callback_path] {
            if !path.starts_with('/') {
                return Err(LoginConfigError::InvalidPath(path.clone()));
            }
        }
        let on_login = self.on_login.ok_or(LoginConfigError::MissingLoginHook)?;
        let key = match self.key {
            Some(key) => key,
            None => LoginKey::generate().map_err(|e| LoginConfigError::Random(e.to_string()))?,
        };
        Ok(DouyinLogin {
            inner: Arc::new(Inner {
                oauth: self.oauth,
                store: self.store,
                redirect_uri,
                scopes: self.scopes,
                key,
                state_ttl: self.state_ttl,
                login_path: self.login_path,
                callback_path: self.callback_path,
                cookie_path,
                secure,
                store_timeout: self.store_timeout,
                used: UsedStates::default(),
                on_login,
                on_error: self.on_error.unwrap_or_else(default_error_hook),
            }),
        })
    }
}

/// The cookie path and whether the cookie is `Secure`, or why the redirect URI is refused.
fn check_redirect_uri(uri: &str) -> Result<(String, bool), LoginConfigError> {
    let refuse = |why| LoginConfigError::InvalidRedirectUri {
        uri: uri.to_owned(),
        why,
    };
    let parsed: Uri = uri.parse().map_err(|_| refuse("it is not a valid URI"))?;
    let host = parsed.host().ok_or_else(|| refuse("it has no host"))?;
    let secure = match parsed.scheme_str() {
        Some("https") => true,
        Some("http") if crate::net::is_loopback(host) => false,
        Some("http") => return Err(refuse("plain http is allowed on loopback hosts only")),
        _ => return Err(refuse("it must be an absolute https:// URL")),
    };
    let path = match parsed.path() {
        "" => "/",
        p => p,
    };
    if path.contains([';', ',']) {
        // The path becomes the cookie's `Path` attribute, where these would end it.
        return Err(refuse("its path must not contain ';' or ','"));
    }
    Ok((path.to_owned(), secure))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, Request};
    use http_body_util::Full;

    use super::*;
    use crate::store::MemoryStore;
    use crate::{BoxError, Token};

    /// A client the settings tests never call.
    fn unused() -> impl HttpClient {
        tower::service_fn(|_: Request<Full<Bytes>>| async {
            Err::<http::Response<Full<Bytes>>, BoxError>("not called".into())
        })
    }

    #[test]
    fn settings_are_checked() {
        let build = |uri: Option<&str>, scopes: &[&str], hook: bool| {
            let client = unused();
            let mut b = DouyinLogin::builder(
                OAuthClient::with_client("k", "s", client),
                MemoryStore::new(),
            )
            .scopes(scopes.iter().copied());
            if let Some(uri) = uri {
                b = b.redirect_uri(uri);
            }
            if hook {
                b = b.on_login(|_: LoggedIn| async { "in" });
            }
            b.build().map(|l| l.secure_cookie())
        };
        let ok = ["user_info"];
        assert_eq!(build(Some("https://a.example/cb"), &ok, true), Ok(true));
        assert_eq!(
            build(Some("http://localhost:8080/cb"), &ok, true),
            Ok(false)
        );
        assert_eq!(build(Some("http://[::1]:8080/cb"), &ok, true), Ok(false));
        assert_eq!(build(Some("http://127.0.0.2/cb"), &ok, true), Ok(false));
        assert_eq!(
            build(None, &ok, true),
            Err(LoginConfigError::MissingRedirectUri)
        );
        for bad in [
            "http://a.example/cb",
            "/cb",
            "ftp://a.example/cb",
            "https://a.example/cb;Domain=evil.example",
            "not a uri",
        ] {
            assert!(
                matches!(
                    build(Some(bad), &ok, true),
                    Err(LoginConfigError::InvalidRedirectUri { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            build(Some("https://a.example/cb"), &[], true),
            Err(LoginConfigError::NoScopes)
        );
        assert_eq!(
            build(Some("https://a.example/cb"), &ok, false),
            Err(LoginConfigError::MissingLoginHook)
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let client = unused();
        let login = DouyinLogin::builder(
            OAuthClient::with_client("k", "SECRET", client),
            MemoryStore::new(),
        )
        .redirect_uri("https://a.example/cb")
        .scope("user_info")
        .key(LoginKey::from_bytes(b"KEYKEYKEYKEYKEYKEYKEYKEYKEYKEYKEY").unwrap())
        .on_login(|_: LoggedIn| async { "in" })
        .build()
        .unwrap();
        let dbg = format!("{login:?}");
        assert!(
            dbg.contains("a.example") && !dbg.contains("SECRET") && !dbg.contains("KEYKEY"),
            "{dbg}"
        );
        let user = LoggedIn {
            open_id: "o".into(),
            token: Token::new("act.SECRET", Duration::from_secs(9)),
            headers: HeaderMap::new(),
        };
        assert!(!format!("{user:?}").contains("act.SECRET"));
    }
}

//! The app's hooks: [`LoggedIn`], what `on_login` gets, and the boxed hook types.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::error::LoginError;
use crate::token::Token;

/// A completed login, handed to the [`on_login`](super::DouyinLoginBuilder::on_login) hook
/// after the user's tokens were written to the store.
///
/// Its `Debug` shows the `open_id` and scopes, never a token.
pub struct LoggedIn {
    pub(crate) open_id: String,
    pub(crate) token: Token,
    pub(crate) headers: HeaderMap,
}

impl LoggedIn {
    /// The user's `open_id`: what to keep in the app's session.
    pub fn open_id(&self) -> &str {
        &self.open_id
    }

    /// The scopes the user granted.
    pub fn scopes(&self) -> &[String] {
        self.token.scopes()
    }

    /// The user's tokens as the code exchange returned them (already in the store under
    /// [`StoredUsers::key_for`](crate::users::StoredUsers::key_for)). Handle with care.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The headers of the callback request (the app's own cookies, the user agent).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedIn")
            .field("open_id", &self.open_id)
            .field("scopes", &self.token.scopes())
            .finish_non_exhaustive()
    }
}

pub(crate) type BoxResponse = Pin<Box<dyn Future<Output = Response> + Send>>;
pub(crate) type LoginHook = Arc<dyn Fn(LoggedIn) -> BoxResponse + Send + Sync>;
pub(crate) type ErrorHook = Arc<dyn Fn(LoginError) -> BoxResponse + Send + Sync>;

pub(crate) fn login_hook<F, Fut, R>(f: F) -> LoginHook
where
    F: Fn(LoggedIn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Arc::new(move |user| {
        let fut = f(user);
        Box::pin(async move { fut.await.into_response() })
    })
}

pub(crate) fn error_hook<F, Fut, R>(f: F) -> ErrorHook
where
    F: Fn(LoginError) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Arc::new(move |err| {
        let fut = f(err);
        Box::pin(async move { fut.await.into_response() })
    })
}

pub(crate) fn default_error_hook() -> ErrorHook {
    Arc::new(|err: LoginError| Box::pin(async move { err.into_response() }))
}

//! douyin-auth: hands-off Douyin Open Platform authentication for tower clients.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cache;
pub mod douyin;
mod error;
pub mod expiry;
mod layer;
#[cfg(feature = "reqwest-middleware")]
mod middleware;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
mod service;
mod source;
mod token;

pub use body::{ReplayBody, ResponseBody};
pub use error::{DouyinError, Error, SharedError};
pub use layer::{
    DouyinAuthLayer, DouyinAuthLayerBuilder, TokenPlacement, ACCESS_TOKEN_HEADER, DEFAULT_HOSTS,
    DEFAULT_PEEK_LIMIT, DEFAULT_REPLAY_LIMIT,
};
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use middleware::DouyinAuthMiddleware;
pub use service::{DouyinAuth, NoRetry};

/// The response future of [`DouyinAuth`].
pub mod future {
    pub use crate::service::ResponseFuture;
}
pub use source::{source_fn, FnSource, StaticToken, TokenSource};
pub use token::Token;

/// A boxed error, as token sources and inner services return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

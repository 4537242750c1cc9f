//! The tower front end: [`DouyinAuthLayer`], the [`DouyinAuth`] service it makes, and the
//! response future that attaches the token, classifies the answer and retries once.
//!
//! Data flows one way: [`layer`] builds the [`options`] the services share; [`service`] starts
//! each request's [`future`], which reads the token from the cache, puts it where
//! [`placement`] says (on a [`targets`]-allowed request), keeps a [`replay`] copy, and [`peek`]s
//! at JSON answers for the classifier.

pub(crate) mod future;
pub(crate) mod layer;
pub(crate) mod options;
pub(crate) mod peek;
pub(crate) mod placement;
pub(crate) mod replay;
pub(crate) mod service;
pub(crate) mod targets;

pub use self::future::ResponseFuture;
pub use self::layer::{DouyinAuthLayer, DouyinAuthLayerBuilder};
pub use self::options::{DEFAULT_PEEK_LIMIT, DEFAULT_PEEK_TIMEOUT, DEFAULT_REPLAY_LIMIT};
pub use self::placement::{
    TokenPlacement, ACCESS_TOKEN_HEADER, ACCESS_TOKEN_UNDERSCORE_HEADER, X_TOKEN_HEADER,
};
pub use self::service::{DouyinAuth, NoRetry};
pub use self::targets::DEFAULT_HOSTS;

//! [`DouyinAuthMiddleware`]: the reqwest-middleware front end of the same token cache and
//! expiry classifier the tower layer uses (feature `reqwest-middleware`).

use std::fmt;
use std::sync::Arc;

use http::Extensions;
use reqwest::{Request, Response, ResponseBuilderExt};
use reqwest_middleware::{Middleware, Next};

use crate::auth::options::Shared;
use crate::auth::peek::Peek;
use crate::auth::placement::TokenPlacement;
use crate::auth::targets::Targets;
use crate::auth::{DouyinAuthLayer, NoRetry};
use crate::body::{contiguous, ResponseBody};
use crate::cache::{AfterRejection, Ready};
use crate::error::Error;
use crate::expiry::{ClassifyExpiry, DouyinExpiry, HeadVerdict, Rejection};
use crate::source::TokenSource;

/// A [`reqwest_middleware::Middleware`] that attaches a Douyin token to every request, keeps
/// it fresh and, when the answer says the token expired, refreshes it and sends the request
/// once more, exactly as [`DouyinAuthLayer`] does for tower clients.
///
/// It is a second front end of the same core: the token cache (one refresh at a time, stale
/// tokens served during a background refresh), the classifier ([`DouyinExpiry`] by default:
/// HTTP 401 or one of Douyin's codes in a JSON body read up to the peek limit), the allowed
/// hosts and the token placement all come from a layer. [`new`](Self::new) builds one with the
/// default options; [`from_layer`](Self::from_layer) shares the cache and options of a layer
/// you built, so a tower client and a reqwest client of one app use one token and one refresh.
/// Clones share the cache too.
///
/// # Retry semantics
///
/// A request is sent at most twice. It is sent again only when the first answer means
/// "expired or invalid token", retries are on for the layer, the middleware `Extensions` hold
/// no [`NoRetry`], and [`reqwest::Request::try_clone`] succeeds (any body but a stream; the
/// replay limit does not apply, since reqwest keeps such bodies in memory already). Otherwise
/// the expired answer reaches the caller as it came; the rejected token is dropped from the
/// cache either way. A response body read to classify it is handed back byte for byte.
///
/// With [`TokenPlacement::Query`], errors are stripped of their URL (which would hold the
/// token), but `Response::url()` still shows it: prefer the default header placement.
///
/// reqwest follows redirects and keeps custom headers such as `access-token` on them; Douyin's
/// APIs do not redirect, but a client that talks to other hosts too may want
/// `reqwest::redirect::Policy::none()`.
///
/// ```no_run
/// use douyin_auth::douyin::ClientCredentials;
/// use douyin_auth::DouyinAuthMiddleware;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let source = ClientCredentials::new("my_client_key", "my_client_secret");
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(DouyinAuthMiddleware::new(source))
///     .build();
/// let answer = client
///     .get("https://open.douyin.com/data/external/user/fans/?open_id=OPEN_ID")
///     .send()
///     .await?;
/// println!("{}", answer.status());
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub struct DouyinAuthMiddleware<C = DouyinExpiry> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for DouyinAuthMiddleware<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C> fmt::Debug for DouyinAuthMiddleware<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DouyinAuthMiddleware")
            .field("shared", &self.shared)
            .finish()
    }
}

impl DouyinAuthMiddleware {
    /// A middleware with the layer's default options, fetching tokens from `source`.
    ///
    /// For other options build a layer with [`DouyinAuthLayer::builder`] and use
    /// [`from_layer`](Self::from_layer).
    pub fn new<T: TokenSource>(source: T) -> Self {
        Self::from_layer(&DouyinAuthLayer::new(source))
    }
}

impl<C> DouyinAuthMiddleware<C> {
    /// A middleware sharing `layer`'s cache, classifier and options: services built from the
    /// layer and this middleware use the same token and the same single refresh.
    pub fn from_layer(layer: &DouyinAuthLayer<C>) -> Self {
        Self {
            shared: Arc::clone(layer.shared()),
        }
    }
}

impl<C> DouyinAuthMiddleware<C> {
    /// A redirect policy for the `reqwest::Client` below the middleware that never lets the
    /// token leave the allowed hosts.
    ///
    /// reqwest follows redirects by default and copies the request's headers to the next hop,
    /// dropping only `Authorization`, `Cookie` and their kin on a cross-host hop: the
    /// `access-token` header would go to wherever a `Location` points. With this policy a hop
    /// is followed only to a target the middleware would send the token to itself (the
    /// allowed hosts over HTTPS, loopback), at most ten hops; any other redirect is not
    /// followed and the 3xx answer reaches the caller. reqwest sets the policy when the client
    /// is built, so give it there:
    ///
    /// ```no_run
    /// # fn demo(source: douyin_auth::StaticToken) -> Result<(), reqwest::Error> {
    /// let douyin = douyin_auth::DouyinAuthMiddleware::new(source);
    /// let http = reqwest::Client::builder()
    ///     .redirect(douyin.redirect_policy())
    ///     .build()?;
    /// let client = reqwest_middleware::ClientBuilder::new(http).with(douyin).build();
    /// # drop(client); Ok(()) }
    /// ```
    ///
    /// Without it, the middleware still checks where the answer came from: an answer from a
    /// host off the list (the client followed a redirect there, with the token) is refused
    /// with [`Error::DisallowedTarget`](crate::Error::DisallowedTarget) and a warning, so the
    /// caller never takes it for Douyin's.
    pub fn redirect_policy(&self) -> reqwest::redirect::Policy {
        let targets = self.shared.targets.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects");
            }
            if check_url(&targets, attempt.url()).is_ok() {
                attempt.follow()
            } else {
                tracing::warn!(
                    target: "douyin_auth",
                    host = attempt.url().host_str().unwrap_or(""),
                    "a redirect off the allowed hosts was not followed (it would carry the token)"
                );
                attempt.stop()
            }
        })
    }
}

impl<C> From<&DouyinAuthLayer<C>> for DouyinAuthMiddleware<C> {
    fn from(layer: &DouyinAuthLayer<C>) -> Self {
        Self::from_layer(layer)
    }
}

fn middleware_error(e: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(e)
}

/// Checks the request's target against the allowed hosts, as the layer does.
fn check_target<C>(shared: &Shared<C>, req: &Request) -> Result<(), Error> {
    check_url(&shared.targets, req.url())
}

/// Checks a URL against the allowed hosts.
fn check_url(targets: &Targets, url: &reqwest::Url) -> Result<(), Error> {
    let host = url.host_str().unwrap_or_default();
    // Only scheme and authority matter to the check; the path and query (which may hold
    // anything) are never parsed or reported.
    let authority = match url.port() {
        Some(port) => format!("{}://{host}:{port}/", url.scheme()),
        None => format!("{}://{host}/", url.scheme()),
    };
    let uri: http::Uri = authority.parse().map_err(|_| Error::DisallowedTarget {
        target: format!("{}://{host}", url.scheme()),
    })?;
    targets.check(&uri)
}

/// Puts the token where the layer is configured to put it.
fn attach<C>(shared: &Shared<C>, req: &mut Request, ready: &Ready) -> Result<(), Error> {
    if let Some(name) = &shared.header_name {
        req.headers_mut().insert(name.clone(), ready.header.clone());
        return Ok(());
    }
    if let TokenPlacement::Query(param) = &shared.placement {
        let token = ready
            .header
            .to_str()
            .map_err(|_| Error::InvalidHeaderValue)?;
        req.url_mut().query_pairs_mut().append_pair(param, token);
    }
    if let TokenPlacement::Form(param) = &shared.placement {
        crate::auth::placement::put_in_reqwest_form(req, param, &ready.header)?;
    }
    Ok(())
}

async fn token<C>(shared: &Arc<Shared<C>>) -> Result<Ready, Error> {
    match shared.cache.lookup() {
        Some(ready) => Ok(ready),
        None => crate::metrics::waited_for_token(Arc::clone(&shared.cache).wait()).await,
    }
}

/// Classifies an answer; a JSON answer within the peek limit is read and handed back rebuilt,
/// byte for byte (the same peek as the layer's, bounded in size and time).
async fn classify<C: ClassifyExpiry>(
    shared: &Shared<C>,
    res: Response,
) -> Result<(Option<Rejection>, Response), Error> {
    match shared.classifier.classify_head(res.status(), res.headers()) {
        HeadVerdict::NotExpired => return Ok((None, res)),
        HeadVerdict::Expired => return Ok((Some(Rejection::Expired), res)),
        HeadVerdict::PeekBody => {}
    }
    let limit = shared.peek_limit;
    let limit_u64 = u64::try_from(limit).unwrap_or(u64::MAX);
    if res.content_length().is_some_and(|n| n > limit_u64) {
        return Ok((None, res));
    }
    let url = res.url().clone();
    let (parts, body) = http::Response::<reqwest::Body>::from(res).into_parts();
    let mut peek = Peek::new(parts, body);
    let filled = std::future::poll_fn(|cx| peek.poll_fill(cx, limit, shared.peek_timeout)).await;
    let (Some(mut parts), Some(body)) = (peek.head.take(), peek.body.take()) else {
        return Err(Error::Protocol("peeked answer missing".into()));
    };
    let rejection = if filled.ended && filled.error.is_none() {
        shared.classifier.classify_rejection(
            parts.status,
            &parts.headers,
            &contiguous(&peek.frames),
        )
    } else {
        None
    };
    let rest = if filled.ended { None } else { Some(body) };
    let frames = std::mem::take(&mut peek.frames);
    let body = reqwest::Body::wrap(ResponseBody::replay(frames, filled.error, rest));
    // `reqwest::Response::url` lives outside the `http` parts; carry it over.
    let carrier = http::Response::builder()
        .url(url)
        .body(())
        .map_err(|_| Error::Protocol("rebuilding the response failed".into()))?;
    parts.extensions.extend(carrier.into_parts().0.extensions);
    Ok((
        rejection,
        Response::from(http::Response::from_parts(parts, body)),
    ))
}

#[async_trait::async_trait]
impl<C: ClassifyExpiry> Middleware for DouyinAuthMiddleware<C> {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let shared = &self.shared;
        check_target(shared, &req).map_err(middleware_error)?;
        let ready = token(shared).await.map_err(middleware_error)?;
        let replay = if shared.retry && extensions.get::<NoRetry>().is_none() {
            req.try_clone()
        } else {
            None
        };
        attach(shared, &mut req, &ready).map_err(middleware_error)?;
        let res = scrub(shared, next.clone().run(req, extensions).await)?;
        arrived_from_allowed(shared, &res).map_err(middleware_error)?;
        let (rejection, res) = classify(shared, res).await.map_err(middleware_error)?;
        let Some(rejection) = rejection else {
            return Ok(res);
        };
        crate::metrics::expiry_answer();
        let path = replay.as_ref().map(|r| r.url().path());
        let after = shared.cache.rejected(ready.generation, rejection, path);
        tracing::debug!(
            target: "douyin_auth",
            generation = ready.generation,
            verdict = ?rejection,
            retry = replay.is_some() && !matches!(after, AfterRejection::GiveUp),
            "token expiry detected"
        );
        let Some(mut again) = replay else {
            return Ok(res);
        };
        let ready = match after {
            AfterRejection::Retry(ready) => ready,
            AfterRejection::Wait(wait) => match wait.new_token().await {
                Some(ready) => ready,
                None => return Ok(res),
            },
            AfterRejection::GiveUp => return Ok(res),
        };
        drop(res);
        attach(shared, &mut again, &ready).map_err(middleware_error)?;
        tracing::debug!(
            target: "douyin_auth",
            generation = ready.generation,
            "retry sent"
        );
        crate::metrics::retry_sent();
        let res = scrub(shared, next.run(again, extensions).await)?;
        arrived_from_allowed(shared, &res).map_err(middleware_error)?;
        Ok(res)
    }
}

/// Refuses an answer that came from a host the token must not go to: the client below followed
/// a redirect there (see [`DouyinAuthMiddleware::redirect_policy`]).
fn arrived_from_allowed<C>(shared: &Shared<C>, res: &Response) -> Result<(), Error> {
    check_url(&shared.targets, res.url()).inspect_err(|_| {
        tracing::warn!(
            target: "douyin_auth",
            host = res.url().host_str().unwrap_or(""),
            "the client followed a redirect off the allowed hosts with the token; build it with DouyinAuthMiddleware::redirect_policy()"
        );
    })
}

/// With the token in the query, reqwest's errors would print it as part of their URL: drop
/// the URL from them.
fn scrub<C>(
    shared: &Shared<C>,
    result: reqwest_middleware::Result<Response>,
) -> reqwest_middleware::Result<Response> {
    match result {
        Err(reqwest_middleware::Error::Reqwest(e))
            if matches!(shared.placement, TokenPlacement::Query(_)) =>
        {
            Err(reqwest_middleware::Error::Reqwest(e.without_url()))
        }
        other => other,
    }
}

//! [`ClientCredentials`]: the app's client token, from `client_key` and `client_secret`.

use std::fmt;

use serde::Serialize;

use super::http::{normalise_base_url, post_token, HttpClient, Payload, DEFAULT_BASE_URL};
use crate::error::{BoxError, Error};
use crate::source::TokenSource;
use crate::token::Secret;
use crate::token::Token;

/// Which endpoint [`ClientCredentials`] asks for the client token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientTokenEndpoint {
    /// `/oauth/stable_client_token/` (the default): within its validity every call returns the
    /// same token, so instances do not invalidate each other's tokens.
    #[default]
    Stable,
    /// `/oauth/client_token/`: every call makes a new token, which invalidates the older ones
    /// after about five minutes; rate limited (error 10020).
    Classic,
}

impl ClientTokenEndpoint {
    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Stable => "/oauth/stable_client_token/",
            Self::Classic => "/oauth/client_token/",
        }
    }
}

/// A [`TokenSource`] of the app's client token (`grant_type=client_credential`).
///
/// It POSTs JSON `{"client_key", "client_secret", "grant_type": "client_credential"}` to
/// `/oauth/stable_client_token/` (or to `/oauth/client_token/` with
/// [`classic`](Self::classic)) under the base URL (default `https://open.douyin.com`) and
/// hands out the token with its lifetime. Error answers become
/// [`Error::Douyin`](crate::Error::Douyin).
///
/// It sends its requests through any tower HTTP service ([`HttpClient`]); with the `https`
/// feature (on by default) `ClientCredentials::new` uses the built-in `HttpsClient`.
///
/// Its `Debug` output shows the `client_key` but never the `client_secret`.
///
/// ```no_run
/// # #[cfg(feature = "https")]
/// # async fn demo() -> Result<(), douyin_auth::BoxError> {
/// use douyin_auth::douyin::ClientCredentials;
/// use douyin_auth::TokenSource;
///
/// let source = ClientCredentials::new("my_client_key", "my_client_secret");
/// let token = source.fetch().await?;
/// println!("client token valid for {:?}", token.expires_in());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientCredentials<C> {
    client_key: String,
    client_secret: Secret,
    client: C,
    base_url: String,
    endpoint: ClientTokenEndpoint,
}

#[cfg(feature = "https")]
impl ClientCredentials<super::HttpsClient> {
    /// Client credentials that fetch over the built-in HTTPS client (feature `https`).
    pub fn new(client_key: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self::with_client(client_key, client_secret, super::HttpsClient::new())
    }
}

impl<C> ClientCredentials<C> {
    /// Client credentials that send their requests through `client`, any tower HTTP service.
    pub fn with_client(
        client_key: impl Into<String>,
        client_secret: impl Into<String>,
        client: C,
    ) -> Self {
        Self {
            client_key: client_key.into(),
            client_secret: Secret::new(client_secret),
            client,
            base_url: DEFAULT_BASE_URL.to_owned(),
            endpoint: ClientTokenEndpoint::Stable,
        }
    }

    /// Uses the classic `/oauth/client_token/` endpoint instead of the stable one.
    #[must_use]
    pub fn classic(self) -> Self {
        self.endpoint(ClientTokenEndpoint::Classic)
    }

    /// Chooses the endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: ClientTokenEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Sets the base URL (default `https://open.douyin.com`; a trailing slash is tolerated),
    /// e.g. `https://open.snssdk.com` for Toutiao or a local mock server.
    #[must_use]
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = normalise_base_url(base_url);
        self
    }

    /// The app's `client_key`.
    pub fn client_key(&self) -> &str {
        &self.client_key
    }
}

#[derive(Serialize)]
struct ClientTokenRequest<'a> {
    client_key: &'a str,
    client_secret: &'a str,
    grant_type: &'a str,
}

impl<C: HttpClient> ClientCredentials<C> {
    /// Fetches a client token, with the crate's typed [`Error`].
    pub async fn fetch_token(&self) -> Result<Token, Error> {
        self.fetch_from(self.endpoint).await
    }

    /// Fetches a client token to replace `rejected`, which Douyin refused. The stable endpoint
    /// hands back the same token while it is valid, so when it does, the classic endpoint is
    /// asked once for a new one (which starts a new token; the fleet's others adopt it through
    /// a shared store, or see theirs rejected and come here too).
    pub async fn fetch_token_replacing(&self, rejected: &Token) -> Result<Token, Error> {
        let token = self.fetch_from(self.endpoint).await?;
        if self.endpoint != ClientTokenEndpoint::Stable || token.secret() != rejected.secret() {
            return Ok(token);
        }
        tracing::info!(
            target: "douyin_auth",
            "the stable endpoint handed back the rejected client token; asking the classic endpoint once"
        );
        self.fetch_from(ClientTokenEndpoint::Classic).await
    }

    async fn fetch_from(&self, endpoint: ClientTokenEndpoint) -> Result<Token, Error> {
        let body = serde_json::to_vec(&ClientTokenRequest {
            client_key: &self.client_key,
            client_secret: self.client_secret.expose(),
            grant_type: "client_credential",
        })
        .map_err(|_| Error::Protocol("could not encode the client token request".into()))?;
        let path = endpoint.path();
        let answer = post_token(&self.client, &self.base_url, path, Payload::Json(body)).await?;
        let (access_token, expires_in) = answer.require_access(path)?;
        Ok(Token::new(access_token, expires_in))
    }
}

impl<C: HttpClient> TokenSource for ClientCredentials<C> {
    async fn fetch(&self) -> Result<Token, BoxError> {
        self.fetch_token().await.map_err(Into::into)
    }

    async fn fetch_replacing(&self, rejected: &Token) -> Result<Token, BoxError> {
        self.fetch_token_replacing(rejected)
            .await
            .map_err(Into::into)
    }
}

impl<C> fmt::Debug for ClientCredentials<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_key", &self.client_key)
            .field("client_secret", &self.client_secret)
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use super::*;
    use crate::douyin::codes::CodeKind;
    use crate::douyin::http::test_support::mock;

    const OK: &str = r#"{"data": {"access_token": "clt.TOKEN", "description": "", "error_code": 0, "expires_in": 7200}, "message": "success"}"#;

    #[tokio::test]
    async fn stable_endpoint_json_body() {
        let (client, seen) = mock(vec![(200, OK)]);
        let source = ClientCredentials::with_client("key1", "SECRET", client);
        let token = source.fetch().await.unwrap();
        assert_eq!(token.secret(), "clt.TOKEN");
        assert_eq!(token.expires_in(), Duration::from_secs(7200));
        assert_eq!(token.open_id(), None);

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.method, Method::POST);
        assert_eq!(
            req.uri,
            "https://open.douyin.com/oauth/stable_client_token/"
        );
        assert_eq!(req.content_type, "application/json");
        assert_eq!(
            req.json(),
            serde_json::json!({"client_key": "key1", "client_secret": "SECRET", "grant_type": "client_credential"})
        );
    }

    /// Told that the stable endpoint's token was rejected, the source asks the stable
    /// endpoint; when that hands back the same token, the classic endpoint once.
    #[tokio::test]
    async fn a_rejected_stable_token_falls_back_to_the_classic_endpoint_once() {
        let same = r#"{"data": {"access_token": "clt.SAME", "error_code": 0, "expires_in": 3000}, "message": "success"}"#;
        let new = r#"{"data": {"access_token": "clt.NEW", "error_code": 0, "expires_in": 7200}, "message": "success"}"#;
        let (client, seen) = mock(vec![(200, same), (200, new)]);
        let source = ClientCredentials::with_client("k", "s", client);
        let rejected = Token::new("clt.SAME", Duration::from_secs(3000));
        let token = source.fetch_replacing(&rejected).await.unwrap();
        assert_eq!(token.secret(), "clt.NEW");
        let uris: Vec<_> = seen.lock().unwrap().iter().map(|r| r.uri.clone()).collect();
        assert_eq!(
            uris,
            [
                "https://open.douyin.com/oauth/stable_client_token/",
                "https://open.douyin.com/oauth/client_token/"
            ]
        );
        // A different token from the stable endpoint is used as it is: one call.
        let (client, seen) = mock(vec![(200, new)]);
        let source = ClientCredentials::with_client("k", "s", client);
        let token = source.fetch_replacing(&rejected).await.unwrap();
        assert_eq!(token.secret(), "clt.NEW");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn classic_endpoint_and_base_url() {
        let (client, seen) = mock(vec![(
            200,
            r#"{"data": {"access_token": "clt.T", "error_code": "0", "expires_in": "86400"}, "message": "<nil>"}"#,
        )]);
        let source = ClientCredentials::with_client("k", "s", client)
            .classic()
            .base_url("http://127.0.0.1:8080/");
        let token = source.fetch_token().await.unwrap();
        assert_eq!(token.expires_in(), Duration::from_secs(86400));
        assert_eq!(
            seen.lock().unwrap()[0].uri,
            "http://127.0.0.1:8080/oauth/client_token/"
        );
    }

    #[tokio::test]
    async fn error_answers_are_douyin_errors() {
        let (client, _) = mock(vec![(
            200,
            r#"{"data": {"description": "client_secret wrong", "error_code": 10013},
                "extra": {"logid": "LOG1", "now": 1594015876138}}"#,
        )]);
        let source = ClientCredentials::with_client("k", "SECRET", client);
        let err = source.fetch_token().await.unwrap_err();
        let Error::Douyin(d) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(d.code(), 10_013);
        assert_eq!(d.kind(), CodeKind::BadCredentials);
        assert_eq!(d.log_id(), Some("LOG1"));
        assert!(!format!("{err} {err:?}").contains("SECRET"));
    }

    #[tokio::test]
    async fn success_without_token_is_a_protocol_error() {
        let (client, _) = mock(vec![(
            200,
            r#"{"data": {"error_code": 0, "expires_in": 7200}}"#,
        )]);
        let err = ClientCredentials::with_client("k", "s", client)
            .fetch_token()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let (client, _) = mock(vec![]);
        let source = ClientCredentials::with_client("visible_key", "SECRET", client);
        let dbg = format!("{source:?}");
        assert!(dbg.contains("visible_key"), "{dbg}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }
}

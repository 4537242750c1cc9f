//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use douyin_auth::{BoxError, Token, TokenSource};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::sync::Semaphore;

/// What the scripted source does on one fetch.
#[derive(Clone, Debug)]
pub enum Step {
    Token(&'static str, Duration),
    Fail(&'static str),
}

/// A token source that counts fetches, follows a script (then numbers tokens `clt.N`), and can
/// be held at a gate until the test opens it.
#[derive(Clone)]
pub struct Scripted {
    pub fetches: Arc<AtomicUsize>,
    pub completed: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Step>>>,
    lifetime: Duration,
    gate: Option<Arc<Semaphore>>,
}

impl Scripted {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            fetches: Arc::default(),
            completed: Arc::default(),
            script: Arc::default(),
            lifetime,
            gate: None,
        }
    }

    /// Each fetch waits for one permit of the returned semaphore.
    pub fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        self.gate = Some(gate.clone());
        (self, gate)
    }

    pub fn then(self, step: Step) -> Self {
        self.script.lock().unwrap().push_back(step);
        self
    }

    pub fn push(&self, step: Step) {
        self.script.lock().unwrap().push_back(step);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for Scripted {
    async fn fetch(&self) -> Result<Token, BoxError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let step = self.script.lock().unwrap().pop_front();
        let out = match step {
            Some(Step::Token(t, d)) => Ok(Token::new(t, d)),
            Some(Step::Fail(msg)) => Err(msg.into()),
            None => Ok(Token::new(format!("clt.{n}"), self.lifetime)),
        };
        self.completed.fetch_add(1, Ordering::SeqCst);
        out
    }
}

pub type Req = Request<Full<Bytes>>;
pub type Res = Response<Full<Bytes>>;

pub fn req(body: &'static str) -> Req {
    Request::post("https://open.douyin.com/api/test/")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

pub fn json(body: &str) -> Res {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

pub fn text(body: &str) -> Res {
    Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap()
}

pub fn token_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get("access-token")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub async fn body_string<B>(body: B) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Records each request's token and body; answers with what `answer` says.
#[derive(Clone)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            seen: Arc::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.0.clone())
            .collect()
    }

    /// An inner service answering `answer(token, call_index)`.
    pub fn service<F>(
        &self,
        answer: F,
    ) -> impl tower::Service<
        Req,
        Response = Res,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<Res, Infallible>> + Send,
    > + Clone
           + Send
    where
        F: Fn(&str, usize) -> Res + Send + Sync + Clone + 'static,
    {
        let seen = self.seen.clone();
        tower::service_fn(move |req: Req| {
            let seen = seen.clone();
            let answer = answer.clone();
            async move {
                let token = token_of(&req);
                let body = body_string(req.into_body()).await;
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((token.clone(), body));
                    s.len()
                };
                Ok(answer(&token, n))
            }
        })
    }
}

pub const EXPIRED_SHAPES: &[&str] = &[
    r#"{"data":{"error_code":2190008,"description":"access_token expired"},"extra":{"error_code":2190008,"description":"access_token expired","sub_error_code":0,"sub_description":"","logid":"l1","now":1603270000000}}"#,
    r#"{"data":{},"extra":{"error_code":2190002,"description":"access_token invalid","logid":"l2","now":1603270000000}}"#,
    r#"{"err_no":28001008,"err_msg":"access token expired","log_id":"l3","data":{}}"#,
    r#"{"err_no":"40004","err_tips":"invalid token","data":null}"#,
    r#"{"data":{"error_code":"10008","description":"expired"}}"#,
];

/// Lets spawned tasks (requests, the refresh task) run until they block; a bounded number of
/// yields, never a sleep.
pub async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

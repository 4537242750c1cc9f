//! Two servers on loopback for the redirect tests: `api` answers every request with a 302 to
//! `evil`, which records the headers of what reaches it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;

pub struct RedirectPair {
    pub api: SocketAddr,
    pub evil: SocketAddr,
    /// The headers of every request that reached `evil`.
    pub reached_evil: Arc<Mutex<Vec<HeaderMap>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RedirectPair {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RedirectPair {
    /// `api` redirects to `http://{evil_host}:{evil port}/steal`.
    pub async fn start(evil_host: &str) -> Self {
        let evil_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let evil = evil_listener.local_addr().unwrap();
        let reached_evil: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let seen = reached_evil.clone();
        let evil_app = Router::new().route(
            "/{*rest}",
            any(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(headers);
                    "stolen"
                }
            }),
        );
        let location = format!("http://{evil_host}:{}/steal", evil.port());
        let api_app = Router::new().route(
            "/{*rest}",
            any(move || {
                let location = location.clone();
                async move { (StatusCode::FOUND, [("location", location)]).into_response() }
            }),
        );
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = api_listener.local_addr().unwrap();
        let tasks = vec![
            tokio::spawn(async move {
                axum::serve(evil_listener, evil_app).await.unwrap();
            }),
            tokio::spawn(async move {
                axum::serve(api_listener, api_app).await.unwrap();
            }),
        ];
        Self {
            api,
            evil,
            reached_evil,
            tasks,
        }
    }
}

//! Reading the start of a JSON answer for the classifier, bounded by the peek limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body::Body;

use crate::body::ReadAhead;

/// A JSON answer being read for the classifier.
pub(crate) struct Peek<B> {
    pub(crate) head: Option<http::response::Parts>,
    pub(crate) body: Option<B>,
    pub(crate) frames: ReadAhead<Bytes>,
    pub(crate) seen: usize,
    /// Armed when the body first keeps the reader waiting: past it, the answer goes to the
    /// caller unclassified, with what was read so far in front of the rest.
    pub(crate) stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How reading a peeked body stopped.
pub(crate) struct Filled<E> {
    /// The body ended within the limit: `frames` holds all of it.
    pub(crate) ended: bool,
    /// The body failed; the frames before the error are kept.
    pub(crate) error: Option<E>,
}

impl<B: Body<Data = Bytes> + Unpin> Peek<B> {
    pub(crate) fn new(head: http::response::Parts, body: B) -> Self {
        Self {
            head: Some(head),
            body: Some(body),
            frames: ReadAhead::default(),
            seen: 0,
            stall: None,
        }
    }

    /// Reads frames until the body ends, fails, more than `limit` bytes were seen, or it kept
    /// the reader waiting `timeout` in all.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
        timeout: Duration,
    ) -> Poll<Filled<B::Error>> {
        let Some(b) = self.body.as_mut() else {
            return Poll::Ready(Filled {
                ended: false,
                error: None,
            });
        };
        loop {
            if b.is_end_stream() {
                return Poll::Ready(Filled {
                    ended: true,
                    error: None,
                });
            }
            let polled = match Pin::new(&mut *b).poll_frame(cx) {
                Poll::Ready(polled) => polled,
                Poll::Pending => {
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    return match stall.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            tracing::debug!(
                                target: "douyin_auth",
                                read = self.seen,
                                "the answer's body stalled past the peek timeout; passed on unclassified"
                            );
                            Poll::Ready(Filled {
                                ended: false,
                                error: None,
                            })
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            match polled {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        self.seen = self.seen.saturating_add(d.len());
                    }
                    self.frames.push(frame);
                    if self.seen > limit {
                        return Poll::Ready(Filled {
                            ended: false,
                            error: None,
                        });
                    }
                }
                Some(Err(e)) => {
                    return Poll::Ready(Filled {
                        ended: false,
                        error: Some(e),
                    })
                }
                None => {
                    return Poll::Ready(Filled {
                        ended: true,
                        error: None,
                    })
                }
            }
        }
    }
}

/// Whether the declared size of a response is over the peek limit.
pub(crate) fn too_large<B: Body>(res: &Response<B>, limit: usize) -> bool {
    let declared = res
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let lower = res.body().size_hint().lower();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    declared.is_some_and(|n| n > limit) || lower > limit
}

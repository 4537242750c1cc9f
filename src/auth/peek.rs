//! Reading the start of a JSON answer for the classifier, bounded by the peek limit.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body::{Body, Frame};

/// A JSON answer being read for the classifier.
pub(crate) struct Peek<B> {
    pub(crate) head: Option<http::response::Parts>,
    pub(crate) body: Option<B>,
    pub(crate) frames: VecDeque<Frame<Bytes>>,
    pub(crate) seen: usize,
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
            frames: VecDeque::new(),
            seen: 0,
        }
    }

    /// Reads frames until the body ends, fails, or more than `limit` bytes were seen.
    pub(crate) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
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
            match ready!(Pin::new(&mut *b).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        self.seen = self.seen.saturating_add(d.len());
                    }
                    self.frames.push_back(frame);
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

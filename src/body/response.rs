//! [`ResponseBody`]: the answer's body handed back byte for byte, peeked frames first.
//! [`ReadAhead`]: the frames read ahead for the classifier.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body the layer hands back: the inner body, untouched, or, when the layer
    /// peeked at a small JSON answer, the frames it read followed by the rest. Either way the
    /// caller reads exactly the bytes (and trailers, and error) the server sent.
    pub struct ResponseBody<B: Body> {
        // Frames read ahead before the rest, if any: behind a box, so that the body of every
        // answer the layer did not read is its inner body and one pointer.
        peeked: Option<Box<Peeked<B>>>,
        #[pin]
        rest: Rest<B>,
    }
}

pin_project! {
    /// What follows the frames read ahead.
    #[project = RestProj]
    enum Rest<B: Body> {
        /// The inner body.
        Body { #[pin] body: B },
        /// An answer read whole in one data frame (most JSON answers): the frame, in the inner
        /// body's place, so handing it back costs no allocation and no room.
        Read { data: Option<B::Data> },
        /// Nothing more.
        Done,
    }
}

/// The frames read ahead, then the error the body ended with (if any).
struct Peeked<B: Body> {
    prefix: VecDeque<Frame<B::Data>>,
    error: Option<B::Error>,
}

/// Frames read ahead of the caller, in order: the first data frame inline (most answers are
/// one frame, and keep no queue), every other frame in a queue behind it.
pub(crate) struct ReadAhead<D> {
    first: Option<D>,
    more: VecDeque<Frame<D>>,
}

impl<D> Default for ReadAhead<D> {
    fn default() -> Self {
        Self {
            first: None,
            more: VecDeque::new(),
        }
    }
}

impl<D: Buf> ReadAhead<D> {
    /// Adds the next frame read.
    pub(crate) fn push(&mut self, frame: Frame<D>) {
        if self.first.is_none() && self.more.is_empty() {
            match frame.into_data() {
                Ok(data) => self.first = Some(data),
                Err(frame) => self.more.push_back(frame),
            }
        } else {
            self.more.push_back(frame);
        }
    }
}

impl<B: Body> Peeked<B> {
    /// The next frame or error read ahead; drops what was read ahead once it is all out.
    #[cold]
    fn next(peeked: &mut Option<Box<Self>>) -> Option<Result<Frame<B::Data>, B::Error>> {
        let p = peeked.as_mut()?;
        if let Some(frame) = p.prefix.pop_front() {
            return Some(Ok(frame));
        }
        let error = p.error.take();
        *peeked = None;
        error.map(Err)
    }
}

impl<B: Body> ResponseBody<B> {
    /// The inner body, passed through untouched.
    pub(crate) fn passthrough(inner: B) -> Self {
        Self {
            peeked: None,
            rest: Rest::Body { body: inner },
        }
    }

    /// Frames already read, then the error the body ended with (if any), then the rest of the
    /// body (if it did not end).
    pub(crate) fn replay(
        read: ReadAhead<B::Data>,
        error: Option<B::Error>,
        rest: Option<B>,
    ) -> Self {
        let ReadAhead { first, mut more } = read;
        // A body that ended with an error is never polled after it.
        let rest = match (rest, &error) {
            (Some(body), None) => Rest::Body { body },
            _ => Rest::Done,
        };
        if matches!(rest, Rest::Done) && more.is_empty() && error.is_none() {
            return Self {
                peeked: None,
                rest: Rest::Read { data: first },
            };
        }
        if let Some(first) = first {
            more.push_front(Frame::data(first));
        }
        let peeked = (!more.is_empty() || error.is_some()).then(|| {
            Box::new(Peeked {
                prefix: more,
                error,
            })
        });
        Self { peeked, rest }
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field(
                "buffered_frames",
                &(usize::from(matches!(self.rest, Rest::Read { data: Some(_) }))
                    + self.peeked.as_ref().map_or(0, |p| p.prefix.len())),
            )
            .field("rest", &matches!(self.rest, Rest::Body { .. }))
            .finish()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if this.peeked.is_some() {
            if let Some(next) = Peeked::next(this.peeked) {
                return Poll::Ready(Some(next));
            }
        }
        match this.rest.project() {
            RestProj::Body { body } => body.poll_frame(cx),
            RestProj::Read { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RestProj::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peeked
            .as_ref()
            .is_none_or(|p| p.prefix.is_empty() && p.error.is_none())
            && match &self.rest {
                Rest::Body { body } => body.is_end_stream(),
                Rest::Read { data } => data.is_none(),
                Rest::Done => true,
            }
    }

    fn size_hint(&self) -> SizeHint {
        let rest = match &self.rest {
            Rest::Body { body } => body.size_hint(),
            Rest::Read { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.remaining() as u64))
            }
            Rest::Done => SizeHint::with_exact(0),
        };
        let Some(peeked) = &self.peeked else {
            return rest;
        };
        let buffered: u64 = peeked
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.remaining() as u64))
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// Joins the data frames read so far into one contiguous buffer for the classifier; a single
/// frame is borrowed, never copied nor reference-counted.
pub(crate) fn contiguous(read: &ReadAhead<Bytes>) -> Cow<'_, [u8]> {
    let mut more = read.more.iter().filter_map(Frame::data_ref);
    match (&read.first, more.next()) {
        (None, None) => Cow::Borrowed(&[]),
        (Some(one), None) => Cow::Borrowed(one),
        (None, Some(one)) if more.next().is_none() => Cow::Borrowed(one),
        _ => {
            let mut out = Vec::new();
            let rest = read.more.iter().filter_map(Frame::data_ref);
            for d in read.first.iter().chain(rest) {
                out.extend_from_slice(d);
            }
            Cow::Owned(out)
        }
    }
}

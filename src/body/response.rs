//! [`ResponseBody`]: the answer's body handed back byte for byte, peeked frames first.
//! [`ReadAhead`]: the frames read ahead for the classifier.

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
        // The first data frame read ahead, held inline: most answers the layer reads are one
        // frame, and handing them back costs no allocation.
        front: Option<B::Data>,
        // The other frames read ahead, if any: behind a box, so that the body of every answer
        // the layer did not read is its inner body, a `None` and one pointer.
        peeked: Option<Box<Peeked<B>>>,
        #[pin]
        rest: Option<B>,
    }
}

/// The frames read ahead after the first data frame, then the error the body ended with (if
/// any).
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
            front: None,
            peeked: None,
            rest: Some(inner),
        }
    }

    /// Frames already read, then the error the body ended with (if any), then the rest of the
    /// body (if it did not end).
    pub(crate) fn replay(
        read: ReadAhead<B::Data>,
        error: Option<B::Error>,
        rest: Option<B>,
    ) -> Self {
        // A body that ended with an error is never polled after it.
        let rest = if error.is_some() { None } else { rest };
        let ReadAhead { first, more } = read;
        let peeked = (!more.is_empty() || error.is_some()).then(|| {
            Box::new(Peeked {
                prefix: more,
                error,
            })
        });
        Self {
            front: first,
            peeked,
            rest,
        }
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field(
                "buffered_frames",
                &(usize::from(self.front.is_some())
                    + self.peeked.as_ref().map_or(0, |p| p.prefix.len())),
            )
            .field("rest", &self.rest.is_some())
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
        if let Some(data) = this.front.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if this.peeked.is_some() {
            if let Some(next) = Peeked::next(this.peeked) {
                return Poll::Ready(Some(next));
            }
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.front.is_none()
            && self
                .peeked
                .as_ref()
                .is_none_or(|p| p.prefix.is_empty() && p.error.is_none())
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        if self.front.is_none() && self.peeked.is_none() {
            return rest;
        }
        let front = self.front.as_ref().map_or(0, |d| d.remaining() as u64);
        let buffered: u64 = self.peeked.as_ref().map_or(0, |p| {
            p.prefix
                .iter()
                .filter_map(|f| f.data_ref().map(|d| d.remaining() as u64))
                .sum()
        });
        let buffered = front.saturating_add(buffered);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

/// Joins the data frames read so far into one contiguous buffer for the classifier; a single
/// frame is borrowed, never copied.
pub(crate) fn contiguous(read: &ReadAhead<Bytes>) -> Bytes {
    let mut more = read.more.iter().filter_map(Frame::data_ref);
    match (&read.first, more.next()) {
        (None, None) => Bytes::new(),
        (Some(one), None) => one.clone(),
        (None, Some(one)) if more.next().is_none() => one.clone(),
        _ => {
            let mut out = Vec::new();
            let rest = read.more.iter().filter_map(Frame::data_ref);
            for d in read.first.iter().chain(rest) {
                out.extend_from_slice(d);
            }
            Bytes::from(out)
        }
    }
}

//! The error body for the HTTP layer's own refusals. When hyper cannot read
//! a request head (a malformed request line, bytes that are not text,
//! conflicting framing, a URI or headers too large) it answers 400, 414 or
//! 431 by itself, with an empty body, and closes the connection; no route
//! ever sees the request. This wrapper around the connection's stream
//! recognises that automatic answer as it is written (a 400, 414 or 431
//! status with `content-length: 0`: every answer of ours carries the error
//! body, so none has that shape) and writes the contract's error body in
//! its place.

use super::error::{ApiError, HttpFault};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream whose automatic error answers get the error body.
#[derive(Debug)]
pub(super) struct WithErrorBodies<S> {
    inner: S,
    /// A replacement being written, how far, and the length of the
    /// original it stands for (reported as written once it is out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> WithErrorBodies<S> {
    pub(super) fn new(inner: S) -> Self {
        WithErrorBodies {
            inner,
            pending: None,
        }
    }
}

/// The fault an automatic answer of hyper's stands for, if `buf` is one.
fn automatic_answer(buf: &[u8]) -> Option<HttpFault> {
    let fault = if buf.starts_with(b"HTTP/1.1 400 ") {
        HttpFault::Malformed
    } else if buf.starts_with(b"HTTP/1.1 414 ") {
        HttpFault::UriTooLong
    } else if buf.starts_with(b"HTTP/1.1 431 ") {
        HttpFault::HeadersTooLarge
    } else {
        return None;
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    // Only a whole head with nothing after it: an empty answer.
    if end + 4 != buf.len() {
        return None;
    }
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.contains("\r\ncontent-length: 0").then_some(fault)
}

/// The answer with the error body that replaces an automatic one.
pub(super) fn error_answer(fault: HttpFault) -> Vec<u8> {
    let (status, body) = ApiError::Unreadable(fault).body();
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        json.len()
    )
    .into_bytes();
    out.extend_from_slice(&json);
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for WithErrorBodies<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> WithErrorBodies<S> {
    /// Writes out the pending replacement; `Ready(n)` with the original's
    /// length once all of it is written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, done, original)) = self.pending.as_mut() {
            if *done == bytes.len() {
                let n = *original;
                self.pending = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WithErrorBodies<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match automatic_answer(buf) {
                Some(fault) => this.pending = Some((error_answer(fault), 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_pending(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            let first = bufs.iter().find(|b| !b.is_empty());
            let fault = first.and_then(|b| automatic_answer(b));
            match fault {
                // The head alone (an empty body adds no slice of bytes).
                Some(fault) if bufs.iter().filter(|b| !b.is_empty()).count() == 1 => {
                    let len = first.map_or(0, |b| b.len());
                    this.pending = Some((error_answer(fault), 0, len));
                }
                _ => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            }
        }
        this.poll_pending(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut self.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut self.inner).poll_shutdown(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_400_414_or_431_is_replaced() {
        let auto = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_answer(auto), Some(HttpFault::Malformed));
        let long = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(long), Some(HttpFault::UriTooLong));
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_answer(big), Some(HttpFault::HeadersTooLarge));
        // Our own answers carry a body.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 120\r\n\r\n";
        assert_eq!(automatic_answer(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}";
        assert_eq!(automatic_answer(with_body), None);
        assert_eq!(
            automatic_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }

    #[test]
    fn the_replacement_carries_the_six_fields() {
        let a = error_answer(HttpFault::HeadersTooLarge);
        let text = String::from_utf8(a).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        for f in [
            "error_code",
            "error_msg",
            "detail",
            "params",
            "reason",
            "advice",
        ] {
            assert!(v.get(f).is_some(), "{f} in {v}");
        }
        assert_eq!(v["error_code"], "VIAS.TC.HEADERS_TOO_LARGE");
    }
}

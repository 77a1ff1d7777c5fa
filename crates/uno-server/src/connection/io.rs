//! The client's socket as hyper sees it: reads mark the connection's phase
//! (see [`super::watchdog`]), and hyper's own answers to requests it could
//! not parse are replaced by answers in OpenAI's error shape.
//!
//! hyper refuses a malformed request (a bad request line, a NUL or newline
//! in a header value, more than 100 headers, a head over its buffer) before
//! any uno code runs, with a bare `400`/`431`/`414` and an empty body.
//! Clients of an OpenAI API expect `{"error": {...}}` on every 4xx, and an
//! empty body tells the person debugging nothing. Such an answer is easy to
//! recognise: it is written while a request head is being read and no
//! request has been handed to uno, it is a 4xx, and it declares
//! `content-length: 0`; uno never sends a 4xx without a body. Its bytes
//! are swallowed and uno's own answer, with the same status, goes out in
//! their place. The connection then closes, as hyper intends after a
//! parse error.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use uno_core::ApiError;

use super::watchdog::ConnState;

/// A socket wrapped for [`super::serve_connection`].
pub struct WatchedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    /// uno's replacement answer, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> WatchedIo<T> {
    /// Wraps `inner`, reporting reads to `state`.
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        WatchedIo {
            inner,
            state,
            replacement: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> WatchedIo<T> {
    /// Writes what is left of the replacement; ready once it is all out.
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_some() {
            // Whatever hyper still writes after its error answer belongs
            // to that answer: swallowed.
            std::task::ready!(self.drain_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        if self.state.reading_head()
            && let Some(answer) = replacement_for(buf)
        {
            self.replacement = Some((answer, 0));
            std::task::ready!(self.drain_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_some() || self.state.reading_head() {
            // Rare (no request in progress): one slice at a time through
            // poll_write, which decides whether it is hyper's bare answer.
            let first = bufs.iter().find(|b| !b.is_empty());
            return match first {
                Some(first) => self.poll_write(cx, first),
                None => Poll::Ready(Ok(0)),
            };
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// uno's answer in place of `written`, if `written` is hyper's bare answer
/// to an unparsable request (see the module's doc).
pub fn replacement_for(written: &[u8]) -> Option<Vec<u8>> {
    let head_end = find(written, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&written[..head_end]).ok()?;
    let status_line = head.lines().next()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !(400..500).contains(&status) {
        return None;
    }
    let empty = head
        .lines()
        .skip(1)
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !empty {
        return None;
    }
    let error = parse_error(status);
    let body = error.to_json_bytes();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Bad Request");
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

/// What uno says when hyper could not parse a request, by hyper's status.
fn parse_error(status: u16) -> ApiError {
    let (message, code) = match status {
        431 => (
            "the request's headers are too many (more than 100) or too large; send fewer or smaller headers",
            "request_header_fields_too_large",
        ),
        414 => (
            "the request's URL is too long; send the parameters in the body",
            "uri_too_long",
        ),
        _ => (
            "the request is not valid HTTP/1.1 (a malformed request line, or a header with a \
             character HTTP forbids, such as NUL or a bare newline); fix the client or the proxy in front of uno",
            "malformed_http_request",
        ),
    };
    let mut error = ApiError::bad_request(message).with_code(code);
    error.status = status;
    error
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_answers_are_replaced_and_nothing_else_is() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 18:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement_for(bare).unwrap()).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{answer}"
        );
        let body: serde_json::Value =
            serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "request_header_fields_too_large");
        assert_eq!(body["error"]["type"], "invalid_request_error");

        // uno's own answers carry bodies; 2xx and 5xx are never touched.
        for written in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\n\r\n{"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-length: 0\r\n\r\n",
            b"data: HTTP/1.1 400 x\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(replacement_for(written).is_none());
        }
    }
}

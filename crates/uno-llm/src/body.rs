//! Reading upstream bodies under the read timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body could not be read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// No bytes arrived within the read timeout.
    Timeout,
    /// The connection broke; the text says how.
    Broken(String),
}

/// The next frame of `body`, or `Err(Timeout)` after `timeout` of silence.
pub async fn frame_with_timeout(
    body: &mut Incoming,
    timeout: Duration,
) -> Result<Option<Frame<Bytes>>, BodyError> {
    match tokio::time::timeout(timeout, body.frame()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(None) => Ok(None),
        Ok(Some(Ok(frame))) => Ok(Some(frame)),
        Ok(Some(Err(err))) => Err(BodyError::Broken(err.to_string())),
    }
}

/// Reads a whole (non-streamed) body, allowing `timeout` between frames.
/// A body that arrives in one frame is returned without copying.
pub async fn collect_body(mut body: Incoming, timeout: Duration) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    while let Some(frame) = frame_with_timeout(&mut body, timeout).await? {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(head.len() + data.len());
                buf.extend_from_slice(head);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    })
}

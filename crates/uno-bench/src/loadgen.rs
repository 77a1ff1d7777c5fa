//! The load generator: keep-alive HTTP/1.1 connections sending prebuilt
//! requests back to back, timing each one.
//!
//! It is kept cheap on purpose, since it shares the machine with what it
//! measures: the request body is built once as [`Bytes`], header values are
//! built once and cloned (a reference-count increment), and nothing is
//! formatted per request. Latencies are kept as nanoseconds in one vector
//! per connection and merged after the measurement.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The path every measured request goes to.
const CHAT_PATH: &str = "/v1/chat/completions";

/// One place requests are sent to, with everything a request needs prebuilt.
#[derive(Clone, Debug)]
pub struct Target {
    /// `direct` or `uno`, for the report.
    pub name: &'static str,
    /// Where to connect.
    pub addr: SocketAddr,
    uri: Uri,
    host: HeaderValue,
    content_type: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Target {
    /// A target at `addr`; `bearer` is sent as `Authorization: Bearer …`.
    pub fn new(name: &'static str, addr: SocketAddr, bearer: Option<&str>) -> anyhow::Result<Self> {
        let authorization = bearer
            .map(|key| HeaderValue::try_from(format!("Bearer {key}")))
            .transpose()
            .context("the API key is not a valid header value")?;
        Ok(Target {
            name,
            addr,
            uri: Uri::from_static(CHAT_PATH),
            host: HeaderValue::try_from(addr.to_string())
                .context("the address is not a valid Host header")?,
            content_type: HeaderValue::from_static("application/json"),
            authorization,
        })
    }

    /// A `POST /v1/chat/completions` carrying `body`; no allocation beyond
    /// the request's own header map.
    fn request(&self, body: &Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, self.content_type.clone());
        if let Some(auth) = &self.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        request
    }
}

/// One open keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Opens a connection to `target` (TCP_NODELAY, like a real SDK's pool)
    /// and drives it on the current runtime.
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("cannot connect to {} at {}", target.name, target.addr))?;
        stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {} failed", target.name))?;
        tokio::spawn(async move {
            // Errors surface on the next request through `sender`.
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// Sends one request and reads the whole response body. Returns the
    /// latency from the moment the connection was ready.
    pub async fn exchange(&mut self, target: &Target, body: &Bytes) -> anyhow::Result<Duration> {
        self.sender.ready().await.context("connection closed")?;
        let started = Instant::now();
        let response = self
            .sender
            .send_request(target.request(body))
            .await
            .context("request failed")?;
        let status = response.status();
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            frame.context("response body broke off")?;
        }
        let elapsed = started.elapsed();
        if status != StatusCode::OK {
            bail!("{} answered {status}", target.name);
        }
        Ok(elapsed)
    }

    /// Sends one request and returns the size of the answer's body, which
    /// must come with status 200.
    pub async fn answer_size(&mut self, target: &Target, body: &Bytes) -> anyhow::Result<usize> {
        self.sender.ready().await.context("connection closed")?;
        let response = self.sender.send_request(target.request(body)).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::OK {
            bail!(
                "{} answered {status}: {}",
                target.name,
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes.len())
    }

    /// Sends one streamed request and reads it to the end, noting when the
    /// first body frame carrying an SSE `data:` line arrived.
    pub async fn stream_exchange(
        &mut self,
        target: &Target,
        body: &Bytes,
    ) -> anyhow::Result<StreamTiming> {
        self.sender.ready().await.context("connection closed")?;
        let started = Instant::now();
        let response = self
            .sender
            .send_request(target.request(body))
            .await
            .context("streamed request failed")?;
        let status = response.status();
        let mut incoming = response.into_body();
        let mut first_chunk = None;
        while let Some(frame) = incoming.frame().await {
            let frame = frame.context("streamed response broke off")?;
            if first_chunk.is_none()
                && let Some(data) = frame.data_ref()
                && contains_data_line(data)
            {
                first_chunk = Some(started.elapsed());
            }
        }
        let end = started.elapsed();
        if status != StatusCode::OK {
            bail!("{} answered {status} to a streamed request", target.name);
        }
        let first_chunk = first_chunk
            .ok_or_else(|| anyhow!("{}: the stream held no `data:` line", target.name))?;
        Ok(StreamTiming { first_chunk, end })
    }
}

fn contains_data_line(data: &[u8]) -> bool {
    data.windows(5).any(|w| w == b"data:")
}

/// When a streamed answer's first chunk and its end arrived, from the send.
#[derive(Clone, Copy, Debug)]
pub struct StreamTiming {
    /// Time to the first frame holding `data:`.
    pub first_chunk: Duration,
    /// Time to the end of the body.
    pub end: Duration,
}

/// What one fixed-duration measurement of one target produced.
#[derive(Debug, Default)]
pub struct Measurement {
    /// Latency of every request that started and ended inside the window, in
    /// nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
    /// Requests that completed inside the window.
    pub completed: u64,
    /// Requests that completed at all, warm-up included.
    pub completed_total: u64,
    /// The window's length.
    pub window: Duration,
    /// Requests that failed (transport error or a status other than 200).
    pub errors: u64,
    /// The first failure, to say what went wrong.
    pub first_error: Option<String>,
}

/// Runs `concurrency` connections against `target` for `warmup`, then
/// measures for `measure`: each connection sends `body` back to back and
/// stops sending when the window closes.
pub async fn closed_loop(
    target: &Target,
    body: &Bytes,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Measurement> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(target).await?);
    }
    let window_start = Instant::now() + warmup;
    let window_end = window_start + measure;
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|connection| {
            let target = target.clone();
            let body = body.clone();
            tokio::spawn(connection_loop(
                connection,
                target,
                body,
                window_start,
                window_end,
            ))
        })
        .collect();
    let mut total = Measurement {
        window: measure,
        ..Measurement::default()
    };
    for task in tasks {
        let part = task.await.context("a load task panicked")?;
        if total.latencies_ns.is_empty() {
            total.latencies_ns = part.latencies_ns;
        } else {
            total.latencies_ns.extend_from_slice(&part.latencies_ns);
        }
        total.completed += part.completed;
        total.completed_total += part.completed_total;
        total.errors += part.errors;
        if total.first_error.is_none() {
            total.first_error = part.first_error;
        }
    }
    Ok(total)
}

async fn connection_loop(
    mut connection: Connection,
    target: Target,
    body: Bytes,
    window_start: Instant,
    window_end: Instant,
) -> Measurement {
    let mut out = Measurement {
        latencies_ns: Vec::with_capacity(4096),
        ..Measurement::default()
    };
    loop {
        let sent = Instant::now();
        if sent >= window_end {
            break;
        }
        match connection.exchange(&target, &body).await {
            Ok(latency) => {
                out.completed_total += 1;
                let done = Instant::now();
                if done >= window_start && done <= window_end {
                    out.completed += 1;
                    if sent >= window_start {
                        out.latencies_ns
                            .push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
                    }
                }
            }
            Err(err) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("{err:#}"));
                }
                // The connection may be unusable; start a fresh one, and
                // give up on this lane if even that fails.
                match Connection::open(&target).await {
                    Ok(fresh) => connection = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_data_lines() {
        assert!(contains_data_line(b"data: {}\n\n"));
        assert!(contains_data_line(b": comment\ndata: x\n\n"));
        assert!(!contains_data_line(b": keep-alive\n\n"));
        assert!(!contains_data_line(b""));
    }
}

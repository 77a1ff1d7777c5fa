//! A bare reverse proxy: the floor uno is compared against.
//!
//! The same stack as uno (axum on hyper, hyper-util's pooled client with the
//! same pool settings) doing only what any proxy must: read the body, send
//! it upstream, read the answer, send it back. No authentication, no
//! parsing, no timeouts, no interaction record. What uno costs above this is
//! uno's own work; what this costs above direct is the price of any proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::servers::{Running, runtime};

struct Bare {
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Uri,
    json: HeaderValue,
}

/// The bare proxy, running on its own runtime (`bare-worker` threads).
pub struct BareProxy {
    addr: SocketAddr,
    running: Running<()>,
}

impl BareProxy {
    /// Starts the proxy in front of the mock at `upstream`.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let upstream: Uri = format!("http://{upstream}/v1/chat/completions")
            .parse()
            .context("bad upstream address")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bare-proxy".to_owned())
            .spawn(move || -> anyhow::Result<()> {
                let rt = runtime("bare-worker")?;
                rt.block_on(async move {
                    let mut connector = HttpConnector::new();
                    connector.set_nodelay(true);
                    let client = Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(512)
                        .pool_idle_timeout(Duration::from_secs(90))
                        .build(connector);
                    let state = Arc::new(Bare {
                        client,
                        upstream,
                        json: HeaderValue::from_static("application/json"),
                    });
                    let app = Router::new()
                        .route("/v1/chat/completions", post(forward))
                        .with_state(state);
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    let addr = listener.local_addr()?;
                    if ready_tx.send(addr).is_err() {
                        return Ok(());
                    }
                    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                        .context("the bare proxy stopped with an error")
                })
            })
            .context("cannot spawn the bare proxy thread")?;
        let running = Running::new(stop, thread);
        match ready_rx.recv() {
            Ok(addr) => Ok(BareProxy { addr, running }),
            Err(_) => Err(running.fail("the bare proxy did not start")),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the proxy and waits for its thread.
    pub fn stop(self) -> anyhow::Result<()> {
        self.running.stop()
    }
}

async fn forward(State(bare): State<Arc<Bare>>, request: Request) -> Response {
    let body = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let mut upstream = http::Request::new(Full::new(body));
    *upstream.method_mut() = Method::POST;
    *upstream.uri_mut() = bare.upstream.clone();
    upstream
        .headers_mut()
        .insert(CONTENT_TYPE, bare.json.clone());
    let Ok(answer) = bare.client.request(upstream).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (parts, body) = answer.into_parts();
    let Ok(whole) = body.collect().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::new(Body::from(whole.to_bytes()));
    *response.status_mut() = parts.status;
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, content_type.clone());
    }
    response
}

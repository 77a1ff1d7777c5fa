//! A scriptable mock of an OpenAI-compatible upstream.
//!
//! Tests start a [`MockUpstream`] on a random loopback port, point uno at
//! [`MockUpstream::base_url`], queue the answers they want with
//! [`MockUpstream::push_reply`] and afterwards inspect what arrived
//! ([`MockUpstream::requests`]) and how each response ended
//! ([`MockUpstream::completed_count`], [`MockUpstream::cancelled_count`]).
//!
//! Served routes (everything else is a 404 in OpenAI's error shape):
//!
//! * `POST /v1/chat/completions`: answered by the next queued [`MockReply`],
//!   or the default reply ([`MockReply::echo`] unless changed).
//! * `GET /v1/models` and `GET /v1/models/{id}`: the configured model list.
//! * `POST /v1/embeddings`: deterministic, L2-normalised vectors derived from
//!   a hash of each input.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::serve::{Listener, ListenerExt};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Request bodies larger than this are refused; far above anything a test
/// sends, it only guards against a runaway client exhausting memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Dimensions of the embeddings returned when the request does not ask for a
/// specific size: small enough to keep responses cheap in load tests.
const DEFAULT_EMBEDDING_DIMS: usize = 8;

/// Upper bound for the `dimensions` request field, so a bad request cannot make
/// the mock allocate without limit.
const MAX_EMBEDDING_DIMS: usize = 8192;

/// How often [`MockUpstream::wait_for_cancelled`] re-checks its counter.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// How long [`MockUpstream::shutdown`] waits for open connections to close
/// before giving up; in-flight responses are killed, so this is rarely hit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The answer [`validation_model`] gives without a lesson block.
pub const PLAIN_ANSWER: &str =
    "Boil the pasta in plenty of salted water until it is tender, then drain it well.";

/// What [`validation_model`] adds when the request carries a lesson block.
pub const BETTER_ANSWER: &str = "Following the lessons from past users: it takes nine minutes.";

/// A scripted model for the worker's validation: it answers better when
/// the request carries a lesson block (the prompt's "Lessons from past
/// users"), and as the judge it scores the better answer higher, so any
/// block passes validation. Use with [`MockReply::respond`].
pub fn validation_model(request: &Value) -> String {
    let text = message_texts(request);
    if text.contains("rigorous, objective evaluator") {
        let score = if text.contains(BETTER_ANSWER) { 8 } else { 5 };
        return serde_json::json!({"reason": "r", "score": score}).to_string();
    }
    if text.contains("Lessons from past users") {
        format!("{PLAIN_ANSWER} {BETTER_ANSWER}")
    } else {
        PLAIN_ANSWER.to_owned()
    }
}

// ---------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------

/// One request as the mock received it, kept so tests can assert on what uno
/// actually forwarded (rewritten headers, injected fields, routing).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, so tests can tell probes from real calls.
    pub method: Method,
    /// Request path without the query string (e.g. `/v1/chat/completions`).
    pub path: String,
    /// Headers exactly as they arrived, to check auth and header forwarding.
    pub headers: HeaderMap,
    /// The raw body, so byte-level passthrough can be verified.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The body parsed as JSON, for terse field assertions in tests; a body
    /// that is not JSON yields `Value::Null` rather than an error so tests can
    /// compare directly.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Whether this request was a chat completion call, the only route whose
    /// answers are scripted.
    pub fn is_chat_completion(&self) -> bool {
        self.method == Method::POST && self.path.ends_with("/chat/completions")
    }
}

/// The string contents of a chat request's messages, one per line: what a
/// [`MockReply::respond`] script reads to tell the prompts it plays a model
/// for apart.
pub fn message_texts(request: &Value) -> String {
    request["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Scripted replies
// ---------------------------------------------------------------------------

/// How the mock answers one chat completion request.
///
/// Built from a constructor ([`MockReply::text`], [`MockReply::echo`],
/// [`MockReply::status`], [`MockReply::raw_sse`],
/// [`MockReply::drop_connection`]) refined with modifiers
/// ([`MockReply::delay`], [`MockReply::chunk_gap`], [`MockReply::reset_after`],
/// [`MockReply::header`]), so each test states the upstream behaviour it needs
/// in one expression.
#[derive(Clone, Debug)]
pub struct MockReply {
    kind: ReplyKind,
    delay: Option<Duration>,
    chunk_gap: Option<Duration>,
    reset_after: Option<usize>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// Computes an assistant text from the request JSON.
type Responder = Arc<dyn Fn(&Value) -> String + Send + Sync>;

#[derive(Clone)]
enum ReplyKind {
    Text(String),
    Echo,
    Respond(Responder),
    Status(StatusCode, Value),
    RawSse(Vec<String>),
    DropConnection,
}

impl std::fmt::Debug for ReplyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyKind::Text(t) => f.debug_tuple("Text").field(t).finish(),
            ReplyKind::Echo => f.write_str("Echo"),
            ReplyKind::Respond(_) => f.write_str("Respond(..)"),
            ReplyKind::Status(s, v) => f.debug_tuple("Status").field(s).field(v).finish(),
            ReplyKind::RawSse(e) => f.debug_tuple("RawSse").field(e).finish(),
            ReplyKind::DropConnection => f.write_str("DropConnection"),
        }
    }
}

impl Default for MockReply {
    /// Echo is the default because it proves the request body reached the
    /// upstream intact without any scripting.
    fn default() -> Self {
        Self::echo()
    }
}

impl MockReply {
    fn new(kind: ReplyKind) -> Self {
        Self {
            kind,
            delay: None,
            chunk_gap: None,
            reset_after: None,
            headers: Vec::new(),
        }
    }

    /// A successful completion whose assistant message is exactly `text`.
    ///
    /// Requests with `"stream": true` get an SSE stream with one chunk per
    /// word (whitespace kept, so the concatenated deltas equal `text`), a
    /// `finish_reason: "stop"` chunk, a usage chunk when
    /// `stream_options.include_usage` is true, and `data: [DONE]`. Other
    /// requests get a `chat.completion` object that also carries an unknown
    /// field `"mock_extra": {"kept": true}`, so tests can check unknown
    /// response fields survive the proxy.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(ReplyKind::Text(text.into()))
    }

    /// Like [`MockReply::text`] with the text `"echo: " + <last user message>`
    /// (array content: the text parts joined with a single space), so a test
    /// can see what the upstream actually received without parsing requests.
    pub fn echo() -> Self {
        Self::new(ReplyKind::Echo)
    }

    /// Like [`MockReply::text`] with the text `respond(request)` computes
    /// from the request's JSON body, so one default reply can play a model
    /// that answers each prompt differently (the learning worker's tests
    /// script rule extraction, judging and answers this way).
    pub fn respond(respond: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        Self::new(ReplyKind::Respond(Arc::new(respond)))
    }

    /// Answer with this status code and JSON body, to simulate upstream
    /// errors (e.g. 429 or 503 in OpenAI's error shape).
    ///
    /// # Panics
    ///
    /// If `code` is not a valid HTTP status (outside 100..=999): that is a
    /// bug in the test, best reported where it is written.
    pub fn status(code: u16, body: Value) -> Self {
        let status = match StatusCode::from_u16(code) {
            Ok(status) => status,
            Err(_) => panic!("MockReply::status: {code} is not a valid HTTP status code"),
        };
        Self::new(ReplyKind::Status(status, body))
    }

    /// Stream exactly these payloads as `data: <payload>\n\n` events and
    /// nothing else (no automatic `[DONE]`), to test how uno copes with odd
    /// or malformed upstream streams.
    pub fn raw_sse<S: Into<String>>(events: impl IntoIterator<Item = S>) -> Self {
        Self::new(ReplyKind::RawSse(
            events.into_iter().map(Into::into).collect(),
        ))
    }

    /// Abort the connection instead of answering, to test uno's handling of
    /// an upstream that dies.
    ///
    /// The mock returns a response whose body fails on its first poll, so
    /// hyper aborts the connection before flushing anything: an HTTP/1.1
    /// client sees the connection closed without any response head (hyper
    /// reports `IncompleteMessage`, reqwest a send error). An HTTP/2 client
    /// sees the stream reset instead. This counts as neither completed nor
    /// cancelled.
    pub fn drop_connection() -> Self {
        Self::new(ReplyKind::DropConnection)
    }

    /// Wait this long before sending the response head, to exercise uno's
    /// timeouts and client-disconnect handling.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sleep this long before each SSE event after the first, so tests can
    /// observe incremental delivery (and time-to-first-token) through uno.
    pub fn chunk_gap(mut self, gap: Duration) -> Self {
        self.chunk_gap = Some(gap);
        self
    }

    /// Kill the connection mid-response: streams send `n` events and then
    /// the body fails, so hyper aborts the connection and the client sees a
    /// truncated chunked body (a body/decode error or connection reset).
    ///
    /// If the stream has fewer than `n` events, all are sent and the abort
    /// replaces the clean end. Non-streamed bodies (JSON completions,
    /// [`MockReply::status`]) are truncated after `n` *bytes* instead. A
    /// scripted reset counts as neither completed nor cancelled.
    pub fn reset_after(mut self, n: usize) -> Self {
        self.reset_after = Some(n);
        self
    }

    /// Add a response header, to test header passthrough (rate-limit headers,
    /// request ids). The first header of a given name replaces the mock's own
    /// (so `content-type` can be overridden); later ones with the same name
    /// are appended.
    ///
    /// # Panics
    ///
    /// If `name` or `value` is not a valid header name/value: a bug in the
    /// test, best reported where it is written.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let (name, value) = (name.as_ref(), value.as_ref());
        let parsed_name = match HeaderName::try_from(name) {
            Ok(n) => n,
            Err(_) => panic!("MockReply::header: invalid header name {name:?}"),
        };
        let parsed_value = match HeaderValue::try_from(value) {
            Ok(v) => v,
            Err(_) => panic!("MockReply::header: invalid header value {value:?}"),
        };
        self.headers.push((parsed_name, parsed_value));
        self
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

/// State shared by the handle and every request; all counters are atomics so
/// the load-test hot path takes no lock except when a reply is queued.
struct Shared {
    record: bool,
    models: Vec<String>,
    /// Pre-rendered `GET /v1/models` body: it never changes.
    models_body: Bytes,
    queue: Mutex<VecDeque<MockReply>>,
    /// Length of `queue`, so the common "nothing queued" case skips the lock.
    queued: AtomicUsize,
    default_reply: RwLock<Arc<MockReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    connections_accepted: AtomicUsize,
    open_connections: AtomicUsize,
    next_id: AtomicU64,
    /// Becomes true when the mock is shut down, so in-flight delays and
    /// streams abort instead of keeping connections alive.
    killed: watch::Receiver<bool>,
}

/// The reply for one request: queued replies are owned, the default is shared
/// so the hot path does not clone potentially large scripted texts.
enum ReplyRef {
    Owned(MockReply),
    Shared(Arc<MockReply>),
}

impl std::ops::Deref for ReplyRef {
    type Target = MockReply;
    fn deref(&self) -> &MockReply {
        match self {
            Self::Owned(r) => r,
            Self::Shared(r) => r,
        }
    }
}

impl Shared {
    fn next_reply(&self) -> ReplyRef {
        if self.queued.load(Ordering::Acquire) > 0 {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(reply) = queue.pop_front() {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                return ReplyRef::Owned(reply);
            }
        }
        let default = self
            .default_reply
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        ReplyRef::Shared(Arc::clone(&default))
    }

    fn record(&self, req: RecordedRequest) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(req);
    }

    fn next_completion_id(&self) -> String {
        format!(
            "chatcmpl-mock-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed) + 1
        )
    }
}

/// Resolves when the mock is being shut down (or its handle is gone).
async fn killed(mut rx: watch::Receiver<bool>) {
    // An error means the sender (the handle) is gone: treat as killed too.
    let _ = rx.wait_for(|killed| *killed).await;
}

// ---------------------------------------------------------------------------
// Response outcome tracking
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Still running; dropping the guard now means the peer went away.
    Pending,
    Completed,
    /// Ended on purpose by the script or by shutdown: counts as neither.
    Aborted,
}

/// Counts how a response ended. It travels with the response work (the
/// handler future, then the body stream), so when hyper drops either because
/// the peer disconnected, `Drop` sees `Pending` and counts a cancellation.
struct ResponseGuard {
    shared: Arc<Shared>,
    outcome: Outcome,
}

impl ResponseGuard {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            outcome: Outcome::Pending,
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// Mark complete and pass the response through, for non-streamed answers.
    fn complete(self, resp: Response) -> Response {
        self.finish(Outcome::Completed);
        resp
    }
}

impl Drop for ResponseGuard {
    fn drop(&mut self) {
        let counter = match self.outcome {
            Outcome::Pending => &self.shared.cancelled,
            Outcome::Completed => &self.shared.completed,
            Outcome::Aborted => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// Public handle
// ---------------------------------------------------------------------------

/// Configures a [`MockUpstream`] before it starts, for the few settings that
/// cannot change while it runs.
#[derive(Debug)]
pub struct MockBuilder {
    record: bool,
    models: Vec<String>,
    default_reply: MockReply,
}

impl Default for MockBuilder {
    fn default() -> Self {
        Self {
            record: true,
            models: vec!["mock-model".to_owned()],
            default_reply: MockReply::echo(),
        }
    }
}

impl MockBuilder {
    /// Whether to keep a copy of every request (on by default). Load tests
    /// turn it off so the mock neither grows without bound nor clones headers
    /// and bodies; [`MockUpstream::request_count`] still counts.
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// The model ids served by `GET /v1/models` (default `["mock-model"]`),
    /// for tests of model discovery and routing.
    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// The reply used when no scripted reply is queued (default
    /// [`MockReply::echo`]); a load test sets its canned answer here once.
    pub fn default_reply(mut self, reply: MockReply) -> Self {
        self.default_reply = reply;
        self
    }

    /// Bind `127.0.0.1:0` and start serving on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound: nothing a test could do about it.
    pub async fn start(self) -> MockUpstream {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("mock upstream: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("mock upstream: cannot read the bound address: {e}"),
        };
        let (kill_tx, kill_rx) = watch::channel(false);
        let models_body = Bytes::from(
            json!({
                "object": "list",
                "data": self.models.iter().map(|m| model_object(m)).collect::<Vec<_>>(),
            })
            .to_string(),
        );
        let shared = Arc::new(Shared {
            record: self.record,
            models: self.models,
            models_body,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            default_reply: RwLock::new(Arc::new(self.default_reply)),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            connections_accepted: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            killed: kill_rx,
        });
        let listener = CountingListener {
            inner: listener.tap_io(|tcp| {
                // Small SSE frames must leave immediately, not wait for Nagle.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "mock upstream: set_nodelay failed");
                }
            }),
            shared: Arc::clone(&shared),
        };
        let app = Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "mock upstream: server stopped with an error");
            }
        });
        tracing::debug!(%addr, "mock upstream listening");
        MockUpstream {
            shared,
            addr,
            task,
            kill: kill_tx,
        }
    }
}

/// A running mock OpenAI-compatible server on `127.0.0.1:<random port>`.
///
/// It stops when [`MockUpstream::shutdown`] is awaited or the handle is
/// dropped: the listener closes, idle connections are closed and in-flight
/// delays and streams are aborted, so a proxy in front sees the upstream go
/// away rather than lingering keep-alive connections.
pub struct MockUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
    kill: watch::Sender<bool>,
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .field("request_count", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl MockUpstream {
    /// Start with the defaults (recording on, model `mock-model`, echo
    /// replies): what most tests need.
    ///
    /// # Panics
    ///
    /// See [`MockBuilder::start`].
    pub async fn start() -> MockUpstream {
        Self::builder().start().await
    }

    /// Configure before starting, for load tests and model-list tests.
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    /// Base URL in OpenAI-SDK style (`http://127.0.0.1:PORT/v1`), ready to be
    /// put in uno's upstream configuration.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound socket address, for tests that build URLs themselves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a reply for the next chat completion request; queued replies
    /// are used first-in first-out, then the default reply applies.
    pub fn push_reply(&self, reply: MockReply) {
        let mut queue = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        queue.push_back(reply);
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Replace the reply used when the queue is empty.
    pub fn set_default_reply(&self, reply: MockReply) {
        *self
            .shared
            .default_reply
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(reply);
    }

    /// Every request received on any path, in arrival order (empty when
    /// recording is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Only the `POST …/chat/completions` requests, the ones tests usually
    /// care about.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.is_chat_completion())
            .cloned()
            .collect()
    }

    /// Number of requests received on any path; counted even when recording
    /// is off, so load tests can check throughput.
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::Relaxed)
    }

    /// Responses abandoned by the peer before completing: the request was
    /// dropped before the response head was produced, or a streamed body was
    /// dropped before its end. This is how tests prove uno propagates client
    /// disconnects upstream.
    pub fn cancelled_count(&self) -> usize {
        self.shared.cancelled.load(Ordering::Relaxed)
    }

    /// Responses fully produced: non-streamed responses once handed to the
    /// server, streamed ones once the last event was sent.
    pub fn completed_count(&self) -> usize {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far, so tests can check that uno reuses
    /// (pools) upstream connections.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// TCP connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::Relaxed)
    }

    /// Wait until at least `n` responses were cancelled, because cancellation
    /// propagates asynchronously; returns whether it happened within
    /// `timeout`.
    pub async fn wait_for_cancelled(&self, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.cancelled_count() >= n, timeout).await
    }

    /// Wait until at least `n` responses completed; returns whether it
    /// happened within `timeout`.
    pub async fn wait_for_completed(&self, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.completed_count() >= n, timeout).await
    }

    /// Wait until at least `n` requests arrived; returns whether it happened
    /// within `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.request_count() >= n, timeout).await
    }

    /// Stop serving and wait (briefly) until the port is closed and open
    /// connections are gone, so a following request deterministically fails.
    pub async fn shutdown(mut self) {
        self.kill.send_replace(true);
        self.task.abort();
        let _ = (&mut self.task).await;
        let shared = Arc::clone(&self.shared);
        wait_until(
            || shared.open_connections.load(Ordering::Relaxed) == 0,
            SHUTDOWN_GRACE,
        )
        .await;
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.kill.send_replace(true);
        self.task.abort();
    }
}

async fn wait_until(mut done: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------
// Connection counting
// ---------------------------------------------------------------------------

/// Wraps the TCP listener to count connections (for pooling assertions and a
/// clean shutdown).
struct CountingListener<L> {
    inner: L,
    shared: Arc<Shared>,
}

impl<L: Listener> Listener for CountingListener<L> {
    type Io = CountedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        self.shared
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
        let io = CountedIo {
            inner: io,
            shared: Arc::clone(&self.shared),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that decrements the open-connection count when dropped.
struct CountedIo<T> {
    inner: T,
    shared: Arc<Shared>,
}

impl<T> Drop for CountedIo<T> {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

/// One handler for every path, so every request (even 404s and wrong
/// methods) is counted and recorded in arrival order.
async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.request_count.fetch_add(1, Ordering::Relaxed);
    let guard = ResponseGuard::new(Arc::clone(&shared));
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await;
    let path = parts.uri.path();
    if shared.record {
        shared.record(RecordedRequest {
            method: parts.method.clone(),
            path: path.to_owned(),
            headers: parts.headers.clone(),
            body: body.as_ref().map(Bytes::clone).unwrap_or_default(),
        });
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            return guard.complete(openai_error(
                StatusCode::BAD_REQUEST,
                &format!("Could not read the request body: {e}"),
                "invalid_request_error",
                None,
            ));
        }
    };

    let method = &parts.method;
    let resp = match path {
        "/v1/chat/completions" => {
            if method == Method::POST {
                return chat_completions(shared, guard, body).await;
            }
            method_not_allowed(method, path)
        }
        "/v1/models" if method == Method::GET => {
            json_response(StatusCode::OK, shared.models_body.clone())
        }
        "/v1/embeddings" if method == Method::POST => embeddings(&body),
        "/v1/models" | "/v1/embeddings" => method_not_allowed(method, path),
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if method == Method::GET => get_model(&shared, &percent_decode(id)),
            Some(_) => method_not_allowed(method, path),
            None => openai_error(
                StatusCode::NOT_FOUND,
                &format!("Unknown request URL: {method} {path}."),
                "invalid_request_error",
                Some("unknown_url"),
            ),
        },
    };
    guard.complete(resp)
}

fn method_not_allowed(method: &Method, path: &str) -> Response {
    openai_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method {method} is not allowed for {path}."),
        "invalid_request_error",
        Some("method_not_allowed"),
    )
}

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "mock"})
}

fn get_model(shared: &Shared, id: &str) -> Response {
    if shared.models.iter().any(|m| m == id) {
        return json_response(StatusCode::OK, model_object(id).to_string());
    }
    let body = json!({"error": {
        "message": format!("The model '{id}' does not exist"),
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }});
    json_response(StatusCode::NOT_FOUND, body.to_string())
}

/// Decode `%XX` escapes so model ids containing `/` can be requested either
/// raw or escaped.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    let body = json!({"error": {
        "message": message,
        "type": kind,
        "param": null,
        "code": code,
    }});
    json_response(status, body.to_string())
}

/// Apply a reply's extra headers: the first of each name replaces the
/// mock's own value, later ones of the same name are appended.
fn apply_headers(resp: &mut Response, extra: &[(HeaderName, HeaderValue)]) {
    let headers = resp.headers_mut();
    for (i, (name, value)) in extra.iter().enumerate() {
        if extra[..i].iter().any(|(n, _)| n == name) {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// Chat completions
// ---------------------------------------------------------------------------

async fn chat_completions(shared: Arc<Shared>, guard: ResponseGuard, body: Bytes) -> Response {
    let reply = shared.next_reply();

    if let Some(delay) = reply.delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = killed(shared.killed.clone()) => {
                return aborting_response(&shared, guard, &reply, Vec::new(), 0);
            }
        }
    }

    match &reply.kind {
        ReplyKind::Status(status, json_body) => {
            let bytes = Bytes::from(json_body.to_string());
            return full_body(&shared, guard, &reply, *status, "application/json", bytes);
        }
        ReplyKind::RawSse(events) => {
            let events = events
                .iter()
                .map(|e| Bytes::from(format!("data: {e}\n\n")))
                .collect();
            return sse_response(&shared, guard, &reply, events);
        }
        ReplyKind::DropConnection => {
            return aborting_response(&shared, guard, &reply, Vec::new(), 0);
        }
        ReplyKind::Text(_) | ReplyKind::Echo | ReplyKind::Respond(_) => {}
    }

    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return guard.complete(openai_error(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
            ));
        }
    };
    let text: Cow<'_, str> = match &reply.kind {
        ReplyKind::Text(text) => Cow::Borrowed(text),
        ReplyKind::Respond(respond) => Cow::Owned(respond(&req)),
        _ => Cow::Owned(format!("echo: {}", last_user_text(&req))),
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model");
    let id = shared.next_completion_id();
    let created = now_secs();
    let prompt_tokens = prompt_words(&req);
    let completion_tokens = count_words(&text);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });

    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        let completion = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": null,
            }],
            "usage": usage,
            "mock_extra": {"kept": true},
        });
        let bytes = Bytes::from(completion.to_string());
        return full_body(
            &shared,
            guard,
            &reply,
            StatusCode::OK,
            "application/json",
            bytes,
        );
    }

    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish_reason: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason,
            }],
        });
        if include_usage {
            // Like OpenAI: with include_usage every chunk carries `usage: null`.
            c["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let words = split_words(&text);
    let mut events = Vec::with_capacity(words.len() + 4);
    events.push(chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for word in words {
        events.push(chunk(json!({ "content": word }), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        });
        events.push(Bytes::from(format!("data: {c}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(&shared, guard, &reply, events)
}

/// Split into words, each keeping the whitespace that follows it (leading
/// whitespace stays with the first word), so the pieces concatenate back to
/// exactly `text`.
fn split_words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = false;
    let mut seen_word = false;
    for (i, ch) in text.char_indices() {
        let ws = ch.is_whitespace();
        if !ws && prev_ws && seen_word {
            out.push(&text[start..i]);
            start = i;
        }
        if !ws {
            seen_word = true;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Text of a message `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> Cow<'_, str> {
    match content {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(parts) => Cow::Owned(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => Cow::Borrowed(""),
    }
}

fn messages(req: &Value) -> &[Value] {
    req.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn last_user_text(req: &Value) -> Cow<'_, str> {
    messages(req)
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map_or(Cow::Borrowed(""), content_text)
}

fn prompt_words(req: &Value) -> usize {
    messages(req)
        .iter()
        .filter_map(|m| m.get("content"))
        .map(|c| count_words(&content_text(c)))
        .sum()
}

/// A complete body, or a truncated one when the reply has `reset_after`.
fn full_body(
    shared: &Arc<Shared>,
    guard: ResponseGuard,
    reply: &MockReply,
    status: StatusCode,
    content_type: &'static str,
    bytes: Bytes,
) -> Response {
    if let Some(n) = reply.reset_after {
        let mut resp = aborting_response(
            shared,
            guard,
            reply,
            vec![bytes.slice(..n.min(bytes.len()))],
            1,
        );
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        apply_headers(&mut resp, &reply.headers);
        return resp;
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    apply_headers(&mut resp, &reply.headers);
    guard.complete(resp)
}

/// A 200 response whose body sends `events` (without gaps) and then fails
/// after `fail_after` of them, aborting the connection.
fn aborting_response(
    shared: &Arc<Shared>,
    guard: ResponseGuard,
    reply: &MockReply,
    events: Vec<Bytes>,
    fail_after: usize,
) -> Response {
    let state = StreamState {
        events: events.into_iter(),
        sent: 0,
        gap: None,
        reset_after: Some(fail_after),
        guard: Some(guard),
        killed: shared.killed.clone(),
    };
    let mut resp = Response::new(Body::from_stream(event_stream(state)));
    apply_headers(&mut resp, &reply.headers);
    resp
}

fn sse_response(
    shared: &Arc<Shared>,
    guard: ResponseGuard,
    reply: &MockReply,
    events: Vec<Bytes>,
) -> Response {
    let state = StreamState {
        events: events.into_iter(),
        sent: 0,
        gap: reply.chunk_gap,
        reset_after: reply.reset_after,
        guard: Some(guard),
        killed: shared.killed.clone(),
    };
    let mut resp = Response::new(Body::from_stream(event_stream(state)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    apply_headers(&mut resp, &reply.headers);
    resp
}

// ---------------------------------------------------------------------------
// Body streams
// ---------------------------------------------------------------------------

struct StreamState {
    events: std::vec::IntoIter<Bytes>,
    sent: usize,
    gap: Option<Duration>,
    /// Fail the body after this many events (or at the end, if fewer).
    reset_after: Option<usize>,
    /// `None` once the stream has ended, successfully or not.
    guard: Option<ResponseGuard>,
    killed: watch::Receiver<bool>,
}

/// Yields each event as its own body frame. The guard lives in the state, so
/// if hyper drops the body early (peer gone) it counts a cancellation; it is
/// marked complete only when the stream ends after its last event.
fn event_stream(
    state: StreamState,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    stream::unfold(state, |mut st| async move {
        let guard = st.guard.take()?;
        let reset_now = st.reset_after == Some(st.sent);
        let next = if reset_now { None } else { st.events.next() };
        let reset_now = reset_now || (next.is_none() && st.reset_after.is_some());
        if next.is_none() && !reset_now {
            guard.finish(Outcome::Completed);
            return None;
        }
        if st.sent > 0
            && let Some(gap) = st.gap
        {
            tokio::select! {
                () = tokio::time::sleep(gap) => {}
                () = killed(st.killed.clone()) => {
                    guard.finish(Outcome::Aborted);
                    let err = io::Error::new(io::ErrorKind::ConnectionAborted, "mock upstream shut down");
                    return Some((Err(err), st));
                }
            }
        }
        match next {
            Some(event) if !reset_now => {
                st.sent += 1;
                st.guard = Some(guard);
                Some((Ok(event), st))
            }
            _ => {
                guard.finish(Outcome::Aborted);
                if st.sent > 0 {
                    // hyper buffers frames that are ready together and drops
                    // the buffer when the body fails; returning Pending once
                    // lets it flush what was "sent" before the abort.
                    tokio::task::yield_now().await;
                }
                let err = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "mock upstream: scripted connection reset",
                );
                Some((Err(err), st))
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

fn embeddings(body: &Bytes) -> Response {
    let bad = |msg: &str, param: Option<&str>| {
        let body = json!({"error": {
            "message": msg,
            "type": "invalid_request_error",
            "param": param,
            "code": null,
        }});
        json_response(StatusCode::BAD_REQUEST, body.to_string())
    };
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return bad("We could not parse the JSON body of your request.", None),
    };
    let Some(inputs) = req.get("input").and_then(embedding_inputs) else {
        return bad(
            "'input' must be a string, an array of strings, or an array of token arrays.",
            Some("input"),
        );
    };
    let dims = match req.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_EMBEDDING_DIMS,
        Some(v) => match v.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=MAX_EMBEDDING_DIMS).contains(&d) => d,
            _ => {
                return bad(
                    "'dimensions' must be a positive integer.",
                    Some("dimensions"),
                );
            }
        },
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-embedding");

    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, (text, n))| {
            tokens += n;
            let vector = embed(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_response(StatusCode::OK, body.to_string())
}

/// The texts to embed with their token counts, or `None` if `input` has an
/// unsupported shape. Token arrays are embedded via their debug string.
fn embedding_inputs(input: &Value) -> Option<Vec<(String, usize)>> {
    let tokens = |v: &Value| -> Option<(String, usize)> {
        let ids = v
            .as_array()?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()?;
        Some((format!("{ids:?}"), ids.len()))
    };
    match input {
        Value::String(s) => Some(vec![(s.clone(), count_words(s))]),
        Value::Array(items) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|s| (s.to_owned(), count_words(s)))
                        .collect(),
                )
            } else if items.iter().all(Value::is_u64) {
                Some(vec![tokens(input)?])
            } else {
                items.iter().map(tokens).collect()
            }
        }
        _ => None,
    }
}

/// Deterministic pseudo-embedding: FNV-1a of the text seeds splitmix64, whose
/// outputs are mapped to [-1, 1] and L2-normalised.
fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // Top 24 bits fit an f32 mantissa exactly.
            ((z >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else if let Some(first) = v.first_mut() {
        *first = 1.0;
    }
    v
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_words_round_trips() {
        for text in [
            "Hello there friend",
            "  leading and trailing  ",
            "a  b\n\tc",
            "",
            "one",
        ] {
            let words = split_words(text);
            assert_eq!(words.concat(), text);
        }
        assert_eq!(
            split_words("Hello there friend"),
            ["Hello ", "there ", "friend"]
        );
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("x%zz"), "x%zz");
    }

    #[test]
    fn embeddings_are_normalised_and_deterministic() {
        let a = embed("hello", 8);
        assert_eq!(a, embed("hello", 8));
        assert_ne!(a, embed("hellp", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

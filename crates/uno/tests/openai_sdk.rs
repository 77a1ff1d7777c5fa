//! End to end with the official `openai` Python SDK: the real `uno` binary,
//! in front of uno-testkit's mock upstream, driven by
//! `tests/sdk/test_openai_sdk.py` under the SDK version pinned in
//! `tests/sdk/requirements.txt`.
//!
//! The SDK is installed once into `target/sdk-venv` (reinstalled when the
//! requirements change). Python 3 with `venv` and access to PyPI are
//! required: without them the test fails, it never skips. Set
//! `UNO_TEST_PYTHON` to use another interpreter than `python3`.

#![cfg(unix)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use uno_testkit::{MockReply, MockUpstream, RecordedRequest};

/// The client key uno accepts; it must never reach the upstream.
const UNO_KEY: &str = "uno-sdk-test-key-0001";
/// The key uno sends upstream in its place.
const UPSTREAM_KEY: &str = "upstream-sdk-test-key-0002";

const START_DEADLINE: Duration = Duration::from_secs(20);
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
const VENV_DEADLINE: Duration = Duration::from_secs(600);
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread")]
async fn openai_python_sdk_works_against_uno() {
    let started = Instant::now();
    let root = workspace_root();
    let python = tokio::task::spawn_blocking({
        let root = root.clone();
        move || ensure_sdk_venv(&root)
    })
    .await
    .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
    println!("sdk venv ready in {:.1?}", started.elapsed());

    let mock = MockUpstream::builder().models(["mock-model"]).start().await;
    // The production shape: uno logs to Postgres, journal in a scratch dir.
    let db = uno_testkit::TestDatabase::postgres().await;
    let journal = tempfile::tempdir().expect("journal dir");
    let storage = Storage {
        database_url: db.url.clone(),
        journal_dir: journal.path().to_owned(),
    };
    let mut uno = UnoProcess::start(&mock.base_url(), &storage).await;
    println!(
        "uno listening on {} after {:.1?}",
        uno.addr,
        started.elapsed()
    );

    let script = root.join("tests/sdk/test_openai_sdk.py");
    let base_url = format!("http://{}/v1", uno.addr);
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .env("UNO_BASE_URL", &base_url)
            .env("UNO_KEY", UNO_KEY)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        // Nothing from the environment may redirect or reconfigure the SDK.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("OPENAI_") || (upper.ends_with("_PROXY") && upper != "NO_PROXY") {
                cmd.env_remove(&*name);
            }
        }
        run_to_end(cmd, SCRIPT_DEADLINE, "the SDK script")
    })
    .await
    .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
    println!("--- tests/sdk/test_openai_sdk.py ---\n{}", output.text);
    assert!(
        output.status.success(),
        "the openai SDK checks failed ({}); uno's stderr:\n{}",
        output.status,
        uno.stderr()
    );
    let summary = output
        .text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        summary.ends_with(" passed, 0 failed"),
        "unexpected last line from the SDK script: {summary:?}"
    );

    check_upstream_traffic(&mock.requests());

    // Graceful shutdown: a stream in flight at SIGTERM still ends normally,
    // then uno exits with success.
    mock.push_reply(
        MockReply::text("draining one two three").chunk_gap(Duration::from_millis(100)),
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client");
    let mut response = http
        .post(format!("http://{}/v1/chat/completions", uno.addr))
        .bearer_auth(UNO_KEY)
        .json(&json!({
            "model": "mock-model",
            "messages": [{"role": "user", "content": "shutdown"}],
            "stream": true,
        }))
        .send()
        .await
        .expect("the in-flight stream request failed");
    assert_eq!(response.status(), 200);
    let mut streamed = response
        .chunk()
        .await
        .expect("first chunk")
        .unwrap_or_default()
        .to_vec();
    uno.sigterm();
    while let Some(chunk) = response.chunk().await.unwrap_or_else(|err| {
        panic!(
            "the stream in flight at SIGTERM broke: {err}; received so far:\n{}",
            String::from_utf8_lossy(&streamed)
        )
    }) {
        streamed.extend_from_slice(&chunk);
    }
    let streamed = String::from_utf8_lossy(&streamed);
    assert!(
        streamed.contains("three") && streamed.trim_end().ends_with("data: [DONE]"),
        "the stream in flight at SIGTERM did not finish:\n{streamed}"
    );
    let stderr = uno.wait_for_exit();
    assert!(!stderr.contains("panicked"), "uno panicked:\n{stderr}");

    // Every chat completion that reached the upstream was logged, once, by
    // the time uno exited (shutdown flushes the log writer).
    let store = uno_store::Store::connect(&db.url).await.expect("connect");
    let logged = store
        .count_interactions(Some("default"))
        .await
        .expect("count");
    let forwarded = mock.chat_requests().len() as u64;
    assert_eq!(
        logged, forwarded,
        "interactions logged vs chat requests forwarded"
    );
    if !stderr.trim().is_empty() {
        println!("--- uno's stderr ---\n{stderr}");
    }
    println!(
        "openai SDK end-to-end test done in {:.1?}",
        started.elapsed()
    );
}

/// Where the uno under test keeps its data.
struct Storage {
    database_url: String,
    journal_dir: PathBuf,
}

/// What uno forwarded, as the mock saw it.
fn check_upstream_traffic(requests: &[RecordedRequest]) {
    assert!(!requests.is_empty(), "no request reached the upstream");

    // No uno key upstream, in any header; the upstream's own key instead.
    for req in requests {
        for (name, value) in &req.headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(UNO_KEY),
                "the client's uno key reached the upstream in {name} on {} {}",
                req.method,
                req.path
            );
        }
        let auth = req
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("<non-ascii>"));
        assert_eq!(
            auth,
            Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
            "the upstream key was not sent on {} {}",
            req.method,
            req.path
        );
    }

    let chats: Vec<_> = requests.iter().filter(|r| r.is_chat_completion()).collect();
    let custom: Vec<_> = chats
        .iter()
        .filter(|r| r.json().get("x_custom_field").is_some())
        .collect();
    assert_eq!(
        custom.len(),
        1,
        "expected one chat request with x_custom_field"
    );
    let body = custom[0].json();
    assert_eq!(
        body["x_custom_field"],
        json!({"a": 1}),
        "x_custom_field changed: {body}"
    );
    assert_eq!(
        body["messages"][0]["content"], "hello custom field",
        "{body}"
    );

    // Requests uno rejected itself (bad key, invalid body) never went upstream.
    for req in &chats {
        let body = req.json();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        assert!(
            !messages.is_empty(),
            "a request with no messages was forwarded: {body}"
        );
        assert!(
            messages.iter().all(|m| m["content"].is_string()),
            "an invalid request was forwarded: {body}"
        );
    }

    // Streaming options and the SDK's own headers travel unchanged.
    let streamed = chats
        .iter()
        .map(|r| r.json())
        .find(|b| b["messages"][0]["content"] == "hello stream")
        .expect("the streamed request did not reach the upstream");
    assert_eq!(streamed["stream"], true, "{streamed}");
    assert_eq!(
        streamed["stream_options"],
        json!({"include_usage": true}),
        "{streamed}"
    );
    let sdk_lang = chats[0]
        .headers
        .get("x-stainless-lang")
        .map(|v| v.as_bytes());
    assert_eq!(
        sdk_lang,
        Some(&b"python"[..]),
        "x-stainless-lang was not forwarded"
    );
    let user_agent = chats[0]
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        user_agent.starts_with("OpenAI/Python"),
        "user-agent: {user_agent:?}"
    );

    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    for expected in [
        "/v1/models",
        "/v1/models/mock-model",
        "/v1/models/no-such-model",
        "/v1/embeddings",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} was not forwarded; got {paths:?}"
        );
    }
    let embed = requests
        .iter()
        .find(|r| r.path == "/v1/embeddings")
        .map(RecordedRequest::json)
        .unwrap_or_default();
    assert_eq!(embed["input"], json!(["a", "b"]), "{embed}");
    assert_eq!(embed["model"], "mock-embed", "{embed}");
}

// ---------------------------------------------------------------------------
// The Python environment
// ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .unwrap_or_else(|err| panic!("workspace root {}: {err}", root.display()))
}

/// Creates `target/sdk-venv` with the pinned SDK unless it is already there,
/// and returns its interpreter. A file lock keeps concurrent test runs from
/// building the same venv at once.
fn ensure_sdk_venv(root: &Path) -> PathBuf {
    let requirements_path = root.join("tests/sdk/requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", requirements_path.display()));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"));
    std::fs::create_dir_all(&target)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", target.display()));
    let venv = target.join("sdk-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(".uno-requirements");

    let lock_path = target.join("sdk-venv.lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|err| panic!("cannot lock {}: {err}", lock_path.display()));

    let installed = std::fs::read_to_string(&marker).is_ok_and(|m| m == requirements)
        && Command::new(&python)
            .args(["-c", "import openai"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if installed {
        return python;
    }

    let base_python = std::env::var("UNO_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    println!(
        "creating {} with {base_python} and installing {}",
        venv.display(),
        requirements_path.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .unwrap_or_else(|err| panic!("cannot remove the stale {}: {err}", venv.display()));
    }
    let mut create = Command::new(&base_python);
    create.args(["-m", "venv"]).arg(&venv);
    let what = format!(
        "`{base_python} -m venv` (this test needs Python 3 with the venv module; \
         set UNO_TEST_PYTHON to choose the interpreter)"
    );
    let created = run_to_end(create, VENV_DEADLINE, &what);
    assert!(
        created.status.success(),
        "`{base_python} -m venv {}` failed ({}). This test needs Python 3 with the venv \
         module (Debian/Ubuntu: apt install python3-venv; or set UNO_TEST_PYTHON):\n{}",
        venv.display(),
        created.status,
        created.text
    );
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(&requirements_path);
    let installed = run_to_end(install, VENV_DEADLINE, "pip install");
    assert!(
        installed.status.success(),
        "`pip install -r {}` into {} failed ({}); this test needs access to PyPI (or a \
         configured mirror):\n{}",
        requirements_path.display(),
        venv.display(),
        installed.status,
        installed.text
    );
    std::fs::write(&marker, &requirements)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", marker.display()));
    python
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

struct Finished {
    status: ExitStatus,
    /// stdout, then stderr.
    text: String,
}

/// Runs `cmd` to completion, killing it (and failing) past `deadline`.
fn run_to_end(mut cmd: Command, deadline: Duration, what: &str) -> Finished {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {what} ({cmd:?}): {err}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} did not finish within {deadline:?}; output so far:\n{}{}",
                    text_of(&stdout),
                    text_of(&stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => panic!("cannot wait for {what}: {err}"),
        }
    };
    // The readers finish once the pipes close, shortly after the exit.
    let wait_pipes = Instant::now();
    while (Arc::strong_count(&stdout) > 1 || Arc::strong_count(&stderr) > 1)
        && wait_pipes.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    Finished {
        status,
        text: format!("{}{}", text_of(&stdout), text_of(&stderr)),
    }
}

type Captured = Arc<Mutex<Vec<u8>>>;

/// Reads a pipe on a thread until it closes, so the child never blocks on a
/// full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Captured {
    let buf = Captured::default();
    if let Some(mut pipe) = pipe {
        let out = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
    }
    buf
}

fn text_of(buf: &Captured) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// The `uno serve` process; killed on drop if the test fails early.
struct UnoProcess {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Captured,
    sigterm_sent: Option<Instant>,
}

impl UnoProcess {
    /// Starts `uno serve` on a free port in front of `upstream_url` and
    /// waits until `/health` answers. Retries on a new port if another
    /// process took the chosen one in between.
    async fn start(upstream_url: &str, storage: &Storage) -> UnoProcess {
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(upstream_url, storage).await {
                Ok(uno) => return uno,
                Err(failure) if failure.contains("cannot listen") => last_failure = failure,
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!("{last_failure}");
    }

    async fn try_start(upstream_url: &str, storage: &Storage) -> Result<UnoProcess, String> {
        let addr = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uno"));
        cmd.arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        // The developer's own uno settings must not leak into the test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("UNO_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("UNO_LISTEN", addr.to_string())
            .env("UNO_UPSTREAM_URL", upstream_url)
            .env("UNO_UPSTREAM_API_KEY", UPSTREAM_KEY)
            .env("UNO_API_KEYS", UNO_KEY)
            .env("UNO_LOG", "warn")
            .env("DATABASE_URL", &storage.database_url)
            .env("UNO_JOURNAL_DIR", &storage.journal_dir)
            // No retries: a failing upstream call should show, not be hidden.
            .env("UNO_MAX_RETRIES", "0");
        let mut child = cmd
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", env!("CARGO_BIN_EXE_uno")))?;
        let stderr = drain(child.stderr.take());
        let mut uno = UnoProcess {
            child: Some(child),
            addr,
            stderr,
            sigterm_sent: None,
        };

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let health = format!("http://{addr}/health");
        let started = Instant::now();
        loop {
            if let Some(status) = uno.child_mut().try_wait().map_err(|e| e.to_string())? {
                uno.child = None;
                return Err(format!(
                    "uno exited during start-up ({status}); its stderr:\n{}",
                    uno.stderr()
                ));
            }
            if let Ok(response) = http.get(&health).send().await
                && response.status().is_success()
            {
                return Ok(uno);
            }
            if started.elapsed() > START_DEADLINE {
                return Err(format!(
                    "uno did not answer GET /health on {addr} within {START_DEADLINE:?}; its stderr:\n{}",
                    uno.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("uno has already exited")
    }

    fn stderr(&self) -> String {
        text_of(&self.stderr)
    }

    /// Asks uno to shut down, as an orchestrator would.
    fn sigterm(&mut self) {
        let pid = self.child_mut().id();
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("cannot run `kill`");
        assert!(kill.success(), "`kill -TERM {pid}` failed: {kill}");
        self.sigterm_sent = Some(Instant::now());
    }

    /// Asserts that uno, after [`UnoProcess::sigterm`], exits successfully
    /// within the deadline; returns its stderr.
    fn wait_for_exit(mut self) -> String {
        let sent = self.sigterm_sent.expect("wait_for_exit before sigterm");
        let status = loop {
            if let Some(status) = self.child_mut().try_wait().expect("waiting for uno") {
                break status;
            }
            assert!(
                sent.elapsed() < SHUTDOWN_DEADLINE,
                "uno did not exit within {SHUTDOWN_DEADLINE:?} of SIGTERM; its stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        println!(
            "uno exited {:.1?} after SIGTERM with {status}",
            sent.elapsed()
        );
        let stderr = self.stderr();
        assert!(
            status.success(),
            "uno exited with {status} after SIGTERM; its stderr:\n{stderr}"
        );
        stderr
    }
}

impl Drop for UnoProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now (another process could still take it
/// before uno binds; [`UnoProcess::start`] retries then).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind 127.0.0.1:0")
}

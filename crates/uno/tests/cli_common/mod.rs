//! Shared by the tests of the real `uno` binary: run a `uno` command or a
//! `uno serve` against a real database, and seed that database through
//! `uno_store`.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use uno_core::InteractionId;
use uno_core::feedback::Rating;
use uno_store::Store;
use uno_store::rows::{LogRow, row_for_feedback};
use uno_testkit::{Backend, TestDatabase};

/// What a run of `uno` produced.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the command succeeded.
    pub fn ok(self) -> Run {
        assert!(self.success, "uno failed: {self:#?}");
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Run {
        assert!(!self.success, "uno should have failed: {self:#?}");
        self
    }
}

/// A fresh database and a store on it, migrated.
pub async fn fresh(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

/// A directory for files of this test (exists; removed with `db`).
pub fn scratch(db: &TestDatabase) -> PathBuf {
    let dir = db.scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `uno` binary with the developer's own uno settings (`UNO_*`,
/// `DATABASE_URL`, `RUST_LOG`) removed from its environment.
fn uno_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uno"));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("UNO_") || text == "DATABASE_URL" || text == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// Runs `uno ARGS` with `DATABASE_URL=url`, no other uno variables, stdin
/// not a terminal, in `dir`.
pub async fn uno_with_url(url: &str, dir: &Path, args: &[&str]) -> Run {
    let url = url.to_owned();
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = uno_command()
            .args(&args)
            .env("DATABASE_URL", &url)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the uno binary");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The secret `uno keys create` printed (`uno-sk-` and 48 more characters;
/// the prefix it also prints is shorter).
pub fn secret_in(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("uno-sk-") && w.len() == 55)
        .unwrap_or_else(|| panic!("no secret in {stdout:?}"))
        .to_owned()
}

/// Runs `uno ARGS` against `db`.
pub async fn uno(db: &TestDatabase, args: &[&str]) -> Run {
    uno_with_url(&db.url, &scratch(db), args).await
}

pub use uno_testkit::records::{ask, record};

/// Explicit feedback of `user` on interaction `id`.
pub fn feedback(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    expected: Option<&str>,
) -> LogRow {
    row_for_feedback(&uno_testkit::records::feedback(
        tenant, id, user, rating, None, expected,
    ))
}

/// A running `uno serve` on a free port of 127.0.0.1, started by
/// [`ServeProcess::command`]; killed when dropped.
pub struct ServeProcess {
    child: Child,
    addr: SocketAddr,
    /// With captured output: threads reading stdout and stderr as uno
    /// writes them (a pipe nobody reads fills and stalls uno's logging).
    readers: Option<(
        std::thread::JoinHandle<String>,
        std::thread::JoinHandle<String>,
    )>,
}

/// How to start a [`ServeProcess`]: `DATABASE_URL`, working directory, and
/// optionally a config file, more environment and captured output.
pub struct ServeCommand {
    cmd: Command,
    config: Option<OsString>,
    capture: bool,
    ip: IpAddr,
}

impl ServeProcess {
    /// `uno serve` with `DATABASE_URL=database_url` and none of the
    /// developer's uno settings, stdin not a terminal, in `dir`.
    pub fn command(database_url: &str, dir: &Path) -> ServeCommand {
        let mut cmd = uno_command();
        cmd.env("DATABASE_URL", database_url)
            .current_dir(dir)
            .stdin(Stdio::null());
        ServeCommand {
            cmd,
            config: None,
            capture: false,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The process id (to read its memory, or signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills uno with SIGKILL (a crash: nothing runs on the way out) and
    /// waits for it to be gone.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `http://ADDR`, with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops uno with SIGTERM (a clean shutdown, as in production) and
    /// returns what it printed on stdout and stderr; needs
    /// [`ServeCommand::capture_output`].
    pub fn stop(mut self) -> (String, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let (out, err) = self
            .readers
            .take()
            .expect("uno serve was started without capture_output");
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let _ = self.child.wait();
        (stdout, stderr)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeCommand {
    /// `uno --config PATH serve`.
    pub fn config(mut self, path: impl AsRef<OsStr>) -> Self {
        self.config = Some(path.as_ref().to_owned());
        self
    }

    /// Sets one environment variable of the process.
    pub fn env(mut self, name: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(name, value);
        self
    }

    /// Pipes stdout and stderr, for [`ServeProcess::stop`] (and shown if
    /// uno exits during start-up); otherwise both go to the test's own.
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// `uno serve --listen IP:PORT` instead of 127.0.0.1 (the port stays a
    /// free one); with an unspecified IP (0.0.0.0) the test reaches uno on
    /// 127.0.0.1.
    pub fn listen_ip(mut self, ip: IpAddr) -> Self {
        self.ip = ip;
        self
    }

    /// Spawns uno on a free port and waits until `/health` answers.
    pub async fn start(mut self) -> ServeProcess {
        let listen = std::net::TcpListener::bind((self.ip, 0))
            .unwrap()
            .local_addr()
            .unwrap();
        let addr = if self.ip.is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port()))
        } else {
            listen
        };
        if let Some(config) = &self.config {
            self.cmd.arg("--config").arg(config);
        }
        self.cmd.args(["serve", "--listen", &listen.to_string()]);
        if self.capture {
            self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = self.cmd.spawn().expect("cannot run uno serve");
        let readers = if self.capture {
            let drain = |mut pipe: Box<dyn Read + Send>| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let mut buf = Vec::new();
                    let _ = pipe.read_to_end(&mut buf);
                    text.push_str(&String::from_utf8_lossy(&buf));
                    text
                })
            };
            let out = child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>);
            let err = child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>);
            Some((
                drain(out.expect("piped stdout")),
                drain(err.expect("piped stderr")),
            ))
        } else {
            None
        };
        let mut serve = ServeProcess {
            child,
            addr,
            readers,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return serve;
            }
            if let Ok(Some(status)) = serve.child.try_wait() {
                let stderr = serve
                    .readers
                    .take()
                    .map(|(_, err)| err.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("uno serve exited ({status}):\n{stderr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("uno serve did not answer /health on {addr}");
    }
}

//! Fault injection against the real `uno serve` on Postgres, under load:
//! each case drives concurrent chat requests, breaks something, and then
//! accounts for every acknowledged interaction id against the rows stored.
//!
//! Postgres itself is `SIGSTOP`ped in one case (a cluster of the test's
//! own, so the shared one is untouched). The other database faults go
//! through a TCP relay in front of the test's Postgres: "stopped" closes every connection and refuses new ones (what
//! a stopped or restarting server does), "hung" passes no byte either way
//! while keeping every connection open (what a `SIGSTOP`ped or wedged
//! server does: connects succeed, queries never answer), "unreachable at
//! start" is the relay cut before uno starts. uno itself is crashed with
//! `kill -9` and stopped with SIGTERM.
//!
//! For every case: no acknowledged id is missing unless it was
//! acknowledged within the durability window before a `kill -9` (or
//! dropped by a full journal, and then counted), no id is stored twice,
//! and no request fails while the database is away.
//!
//! `UNO_FAULT_HANG_SECS` lengthens the hang of the memory case (the README
//! figure uses 45; CI runs the bounded default).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cli_common::ServeProcess;
use tokio::sync::Mutex;
use uno_store::Store;
use uno_testkit::{MockUpstream, TcpRelay, TestDatabase};

const KEY: &str = "uno-faults-key-0000001";
/// The default durability window (`log_writer.durability_window_ms`).
const WINDOW: Duration = Duration::from_millis(100);

async fn serve(url: &str, dir: &Path, upstream: &str, config: Option<&Path>) -> ServeProcess {
    let mut command = ServeProcess::command(url, dir)
        .env("UNO_UPSTREAM_URL", upstream)
        .env("UNO_API_KEYS", format!("acme={KEY}"))
        .env("UNO_JOURNAL_DIR", dir.join("journal"));
    // UNO_FAULT_SHOW_LOG=1 lets uno's log through to the test's output.
    if std::env::var_os("UNO_FAULT_SHOW_LOG").is_none() {
        command = command.capture_output();
    }
    if let Some(config) = config {
        command = command.config(config);
    }
    command.start().await
}

/// What the load saw: each acknowledged id with when its response ended,
/// and the requests that failed while uno was meant to be serving.
#[derive(Default)]
struct Acks {
    ids: Vec<(uuid::Uuid, Instant)>,
    errors: Vec<String>,
}

/// Concurrent clients sending chat requests until stopped.
struct Load {
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
    /// Set just before uno is killed: failures after it are expected.
    crashing: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base_url: &str, clients: usize, prompt_bytes: usize) -> Load {
        let acks = Arc::new(Mutex::new(Acks::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let crashing = Arc::new(AtomicBool::new(false));
        let padding = "p".repeat(prompt_bytes);
        let tasks = (0..clients)
            .map(|c| {
                let (acks, stop, crashing) = (acks.clone(), stop.clone(), crashing.clone());
                let url = format!("{base_url}/v1/chat/completions");
                let padding = padding.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = serde_json::json!({
                            "model": "m",
                            "messages": [{"role": "user", "content": format!("client {c} request {n} {padding}")}],
                        });
                        let result = client
                            .post(&url)
                            .bearer_auth(KEY)
                            .json(&body)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        let outcome = match result {
                            Ok(response) => {
                                let status = response.status();
                                let id = response
                                    .headers()
                                    .get("x-uno-interaction-id")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| uuid::Uuid::parse_str(v).ok());
                                match (status.is_success(), response.bytes().await, id) {
                                    (true, Ok(_), Some(id)) => Ok(id),
                                    (_, body, _) => Err(format!(
                                        "{status}: {}",
                                        body.map(|b| String::from_utf8_lossy(&b).into_owned())
                                            .unwrap_or_default()
                                    )),
                                }
                            }
                            Err(err) => Err(err.to_string()),
                        };
                        let mut acks = acks.lock().await;
                        match outcome {
                            Ok(id) => acks.ids.push((id, Instant::now())),
                            Err(err) if !crashing.load(Ordering::Relaxed) => acks.errors.push(err),
                            Err(_) => {}
                        }
                    }
                })
            })
            .collect();
        Load {
            acks,
            stop,
            crashing,
            tasks,
        }
    }

    async fn finish(self) -> Acks {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        std::mem::take(&mut *self.acks.lock().await)
    }
}

/// The account of one case.
#[derive(Debug)]
struct Account {
    acknowledged: usize,
    /// Acknowledged before the allowance and not stored.
    missing: usize,
    /// Acknowledged within the allowance and not stored (allowed).
    missing_in_window: usize,
    duplicated: usize,
    errors: usize,
}

/// Polls until every id acknowledged before `lost_after` is stored (or
/// `patience` passes), then accounts for them all.
async fn account_within(
    db: &TestDatabase,
    acks: &Acks,
    lost_after: Option<Instant>,
    patience: Duration,
) -> Account {
    let must = |at: &Instant| lost_after.is_none_or(|t| *at < t);
    let deadline = Instant::now() + patience;
    let counts: HashMap<uuid::Uuid, i64> = loop {
        let counts = db.interaction_counts().await;
        let all_in = acks
            .ids
            .iter()
            .filter(|(_, at)| must(at))
            .all(|(id, _)| counts.contains_key(id));
        if all_in || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing = acks
        .ids
        .iter()
        .filter(|(id, at)| must(at) && !counts.contains_key(id))
        .count();
    let missing_in_window = acks
        .ids
        .iter()
        .filter(|(id, at)| !must(at) && !counts.contains_key(id))
        .count();
    Account {
        acknowledged: acks.ids.len(),
        missing,
        missing_in_window,
        duplicated: counts.values().filter(|&&n| n > 1).count(),
        errors: acks.errors.len(),
    }
}

/// [`account_within`] 30 s.
async fn account(db: &TestDatabase, acks: &Acks, lost_after: Option<Instant>) -> Account {
    account_within(db, acks, lost_after, Duration::from_secs(30)).await
}

fn assert_clean(case: &str, account: &Account, acks: &Acks) {
    eprintln!(
        "{case}: acknowledged {}, missing {} (+{} within the window before a kill), duplicated {}, errors {}",
        account.acknowledged,
        account.missing,
        account.missing_in_window,
        account.duplicated,
        account.errors
    );
    assert!(
        account.acknowledged > 50,
        "{case}: too little load: {account:?}"
    );
    assert_eq!(
        account.missing, 0,
        "{case}: acknowledged rows lost: {account:?}"
    );
    assert_eq!(
        account.duplicated, 0,
        "{case}: rows stored twice: {account:?}"
    );
    assert_eq!(
        account.errors,
        0,
        "{case}: requests failed: {:?}",
        acks.errors.iter().take(3).collect::<Vec<_>>()
    );
}

/// Bytes in the journal segments uno keeps under `dir`.
fn journal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("journal"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct Rig {
    mock: MockUpstream,
    db: TestDatabase,
    relay: TcpRelay,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        Rig {
            mock: MockUpstream::start().await,
            db: TestDatabase::postgres().await,
            relay: TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn serve(&self) -> ServeProcess {
        self.serve_with(None).await
    }

    async fn serve_with(&self, config: Option<&Path>) -> ServeProcess {
        serve(
            &self.db.url_via(self.relay.addr()),
            self.dir.path(),
            &self.mock.base_url(),
            config,
        )
        .await
    }

    fn journal_bytes(&self) -> u64 {
        journal_bytes(self.dir.path())
    }
}

/// A database outage of `outage` in the middle of load, `hang` or cut.
async fn outage_under_load(case: &str, hang: bool) {
    let rig = Rig::new().await;
    let uno = rig.serve().await;
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    if hang {
        rig.relay.hang();
    } else {
        rig.relay.cut();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(rig.journal_bytes() > 0, "{case}: nothing was journaled");
    rig.relay.restore();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let acks = load.finish().await;
    let account = account(&rig.db, &acks, None).await;
    let _ = uno.stop();
    assert_clean(case, &account, &acks);
}

#[tokio::test]
async fn database_stopped_under_load() {
    outage_under_load("database stopped", false).await;
}

#[tokio::test]
async fn database_hung_under_load() {
    outage_under_load("database hung", true).await;
}

#[tokio::test]
async fn database_unreachable_at_start() {
    let rig = Rig::new().await;
    rig.relay.cut();
    let uno = rig.serve().await;
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rig.relay.restore();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acks = load.finish().await;
    let account = account(&rig.db, &acks, None).await;
    let _ = uno.stop();
    assert_clean("database unreachable at start", &account, &acks);
}

/// `kill -9` of uno under load; the next process replays the journal.
/// Only what was acknowledged within the durability window before the
/// kill may be missing.
async fn crash_under_load(case: &str, during_outage: bool) {
    let rig = Rig::new().await;
    let uno = rig.serve().await;
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    if during_outage {
        rig.relay.hang();
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    load.crashing.store(true, Ordering::Relaxed);
    let killed_at = Instant::now();
    uno.kill9();
    let acks = load.finish().await;
    rig.relay.restore();
    // A new process replays whatever the crashed one journaled.
    let again = rig.serve().await;
    let account = account(&rig.db, &acks, Some(killed_at - WINDOW)).await;
    let _ = again.stop();
    eprintln!("{case}: sent {}", acks.ids.len() + acks.errors.len());
    assert_clean(case, &account, &acks);
}

#[tokio::test]
async fn kill_9_with_the_database_up() {
    crash_under_load("kill -9, database up", false).await;
}

#[tokio::test]
async fn kill_9_during_an_outage() {
    crash_under_load("kill -9 during an outage", true).await;
}

#[tokio::test]
async fn sigterm_under_load_loses_nothing() {
    let rig = Rig::new().await;
    let uno = rig.serve().await;
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // SIGTERM: in-flight requests finish, then the writer drains; new
    // connections are refused, which the load sees as errors it may. The
    // load goes on meanwhile (stop blocks on uno's exit, off this thread).
    load.crashing.store(true, Ordering::Relaxed);
    let stopped = tokio::task::spawn_blocking(move || uno.stop());
    let acks = load.finish().await;
    let _ = stopped.await;
    let account = account(&rig.db, &acks, None).await;
    assert_clean("SIGTERM", &account, &acks);
}

/// A journal too small for the outage: requests are still served, and
/// what is lost is what the writer counted as dropped, nothing more.
#[tokio::test]
async fn a_full_journal_loses_only_what_it_counts() {
    let rig = Rig::new().await;
    let config = rig.dir.path().join("uno.toml");
    std::fs::write(&config, "[log_writer]\njournal_max_bytes = 200000\n").unwrap();
    let uno = rig.serve_with(Some(&config)).await;
    rig.relay.cut();
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let acks = load.finish().await;
    // What was still queued reaches the full journal (and is counted).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped = dropped(&uno).await;
    rig.relay.restore();
    let account = account_within(&rig.db, &acks, None, Duration::from_secs(5)).await;
    let _ = uno.stop();
    eprintln!("full journal: {account:?}, dropped {dropped}");
    assert!(dropped > 0.0, "the journal never filled: {account:?}");
    assert_eq!(account.missing as f64, dropped, "lost more than it counted");
    assert_eq!(account.duplicated, 0);
    assert_eq!(account.errors, 0, "{:?}", acks.errors.first());
}

/// Peak resident memory of a process, from `/proc` (kB → bytes).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The writer's dropped-records counter, from uno's `/metrics`.
async fn dropped(uno: &ServeProcess) -> f64 {
    let metrics = reqwest::get(format!("{}/metrics", uno.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("uno_log_rows_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the dropped counter")
}

/// 60 kB prompts through a database hang and the replay after it: uno's
/// peak memory stays under the documented bound. A release build fills
/// the 1 GiB journal in seconds at this load; what the full journal drops
/// is counted, and nothing else is lost.
#[tokio::test]
async fn memory_stays_bounded_through_a_hang_with_60_kb_prompts() {
    let hang_secs: u64 = std::env::var("UNO_FAULT_HANG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let rig = Rig::new().await;
    let uno = rig.serve().await;
    let load = Load::start(&uno.base_url(), 16, 60_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    rig.relay.hang();
    tokio::time::sleep(Duration::from_secs(hang_secs)).await;
    let journaled = rig.journal_bytes();
    rig.relay.restore();
    // Replay under continued load, then until the journal is empty.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = load.finish().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while rig.journal_bytes() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = rig.journal_bytes();
    let account = account_within(&rig.db, &acks, None, Duration::from_secs(5)).await;
    let dropped = dropped(&uno).await;
    let peak = peak_rss(uno.pid());
    let _ = uno.stop();
    eprintln!(
        "60 kB prompts, {hang_secs} s hang: {account:?}, dropped (journal full) {dropped}, \
         journaled {} MB, left {left} bytes, peak RSS {} MB",
        journaled >> 20,
        peak >> 20
    );
    assert_eq!(left, 0, "the journal was not replayed");
    assert!(account.acknowledged > 50, "too little load: {account:?}");
    assert_eq!(
        account.missing as f64, dropped,
        "lost more than the full journal counted"
    );
    assert_eq!(account.duplicated, 0);
    assert_eq!(account.errors, 0, "{:?}", acks.errors.first());
    assert!(
        journaled > 10 << 20,
        "too little went through the journal: {journaled} bytes"
    );
    assert!(peak > 0, "no peak RSS read");
    assert!(
        peak < 256 << 20,
        "peak RSS {} MB over the 256 MB bound",
        peak >> 20
    );
}

/// A Postgres cluster of this test's own (initdb as the `postgres` user),
/// so its processes can be stopped with `SIGSTOP` without touching the
/// cluster every other test shares.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        use std::process::Command;
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .max()
            .expect("a Postgres version");
        let bin = version.join("bin");
        let dir = tempfile::tempdir().unwrap();
        let ok = |what: &str, status: std::io::Result<std::process::ExitStatus>| {
            assert!(
                status.as_ref().is_ok_and(|s| s.success()),
                "{what} failed: {status:?}"
            );
        };
        ok(
            "chown",
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status(),
        );
        let data = dir.path().join("data");
        ok(
            "initdb",
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data)
                .stdout(std::process::Stdio::null())
                .status(),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        ok(
            "pg_ctl start",
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("pg_ctl"))
                .args(["-w", "-D"])
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("log"))
                .arg("start")
                .stdout(std::process::Stdio::null())
                .status(),
        );
        PrivatePostgres { dir, bin, port }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster and every process it started.
    fn pids(&self) -> Vec<String> {
        let pid_file =
            std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).unwrap();
        let postmaster = pid_file.lines().next().unwrap().trim().to_owned();
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        pids
    }

    fn signal(&self, signal: &str) {
        for pid in self.pids() {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid])
                .status();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// The database server itself stopped with `SIGSTOP` (postmaster and
/// every backend) under load, then continued: nothing acknowledged is
/// lost, nothing stored twice, no request fails.
#[tokio::test]
async fn database_sigstopped_under_load() {
    let pg = PrivatePostgres::start();
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let uno = serve(&pg.url(), dir.path(), &mock.base_url(), None).await;
    let load = Load::start(&uno.base_url(), 8, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    pg.signal("-STOP");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let journaled = journal_bytes(dir.path());
    pg.signal("-CONT");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let acks = load.finish().await;
    assert!(
        journaled > 0,
        "nothing was journaled while Postgres was stopped"
    );
    assert!(acks.ids.len() > 50, "too little load");
    assert!(
        acks.errors.is_empty(),
        "requests failed: {:?}",
        acks.errors.first()
    );
    let store = Store::connect(&pg.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count_interactions(None).await.unwrap() < acks.ids.len() as u64 {
        assert!(Instant::now() < deadline, "acknowledged rows never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut missing = 0;
    for (id, _) in &acks.ids {
        if store.interaction_tenant(*id).await.unwrap().is_none() {
            missing += 1;
        }
    }
    let stored = store.count_interactions(None).await.unwrap();
    eprintln!(
        "SIGSTOP: acknowledged {}, missing {missing}, stored {stored}, journaled {journaled} bytes",
        acks.ids.len()
    );
    assert_eq!(missing, 0, "acknowledged rows lost");
    assert_eq!(stored, acks.ids.len() as u64, "rows stored twice");
    store.close().await;
    let _ = uno.stop();
}

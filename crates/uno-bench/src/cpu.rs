//! CPU time per component, from the kernel's per-thread accounting.
//!
//! Every runtime names its threads (`mock-worker`, `uno-worker`,
//! `unopg-worker`, `bare-worker`, `loadgen`), so summing
//! `/proc/self/task/*/schedstat` (nanoseconds on a CPU) by name prefix tells
//! how much CPU each component used during a measurement: on a machine where
//! all three share few cores, that is what decides throughput. Where the
//! file is missing (not Linux) the figures are zero.
//!
//! Postgres runs outside this process, on the same cores. [`postgres_ns`]
//! reads its processes' CPU time from `/proc/<pid>/stat` (user plus system
//! time, in clock ticks): the backends serving uno+pg's database and the
//! shared background writers, not other databases' backends.

use std::ops::Sub;

/// CPU time used so far, in nanoseconds, by component.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// The load generator's runtime.
    pub loadgen_ns: u64,
    /// The proxy's runtime: uno's, or the bare reference proxy's.
    pub proxy_ns: u64,
    /// The mock upstream's runtime.
    pub mock_ns: u64,
    /// Postgres processes (outside this process; see [`postgres_ns`]).
    pub pg_ns: u64,
}

impl CpuTimes {
    /// Reads every thread of this process.
    pub fn now() -> Self {
        let mut out = CpuTimes::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let slot = if comm.starts_with("loadgen") {
                &mut out.loadgen_ns
            } else if comm.starts_with("uno-worker")
                || comm.starts_with("unopg-worker")
                || comm.starts_with("bare-worker")
            {
                &mut out.proxy_ns
            } else if comm.starts_with("mock-worker") {
                &mut out.mock_ns
            } else {
                continue;
            };
            let on_cpu = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| {
                    s.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .unwrap_or(0);
            *slot += on_cpu;
        }
        out
    }

    /// Each component's time divided by `requests`, in microseconds.
    pub fn per_request_us(&self, requests: u64) -> CpuPerRequest {
        let per = |ns: u64| {
            if requests == 0 {
                0.0
            } else {
                ns as f64 / requests as f64 / 1e3
            }
        };
        CpuPerRequest {
            loadgen_us: per(self.loadgen_ns),
            proxy_us: per(self.proxy_ns),
            mock_us: per(self.mock_ns),
            pg_us: per(self.pg_ns),
        }
    }
}

impl Sub for CpuTimes {
    type Output = CpuTimes;

    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            loadgen_ns: self.loadgen_ns.saturating_sub(earlier.loadgen_ns),
            proxy_ns: self.proxy_ns.saturating_sub(earlier.proxy_ns),
            mock_ns: self.mock_ns.saturating_sub(earlier.mock_ns),
            pg_ns: self.pg_ns.saturating_sub(earlier.pg_ns),
        }
    }
}

impl std::ops::AddAssign for CpuTimes {
    fn add_assign(&mut self, other: CpuTimes) {
        self.loadgen_ns += other.loadgen_ns;
        self.proxy_ns += other.proxy_ns;
        self.mock_ns += other.mock_ns;
        self.pg_ns += other.pg_ns;
    }
}

/// CPU microseconds per request, by component.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuPerRequest {
    /// The load generator.
    pub loadgen_us: f64,
    /// The proxy (uno or the bare one).
    pub proxy_us: f64,
    /// The mock upstream.
    pub mock_us: f64,
    /// Postgres (0 when not measured).
    pub pg_us: f64,
}

impl CpuPerRequest {
    /// All components together, Postgres included.
    pub fn total_us(&self) -> f64 {
        self.loadgen_us + self.proxy_us + self.mock_us + self.pg_us
    }
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every
/// Linux ABI in use).
const USER_HZ: u64 = 100;

/// Background processes every database shares, by the first word of their
/// process title.
const SHARED_PROCESSES: [&str; 3] = ["checkpointer", "walwriter", "background"];

/// CPU time used so far, in nanoseconds, by the Postgres processes that
/// serve `database`: its backends and autovacuum workers, plus the shared
/// checkpointer and WAL and background writers. Backends of other databases
/// are left out; a process that exited takes its time with it. 0 where
/// `/proc` cannot be read. Resolution: one clock tick (10 ms) per process.
pub fn postgres_ns(database: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        match std::fs::read_to_string(dir.join("comm")) {
            Ok(comm) if comm.trim_end() == "postgres" => {}
            _ => continue,
        }
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        if !serves(&String::from_utf8_lossy(&cmdline), database) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
            ticks += stat_ticks(&stat).unwrap_or(0);
        }
    }
    ticks * (1_000_000_000 / USER_HZ)
}

/// Whether a Postgres process title (`postgres: [cluster: ]user db host
/// activity`, or `postgres: [cluster: ]checkpointer` and the like) belongs
/// to `database` or to the shared background work.
fn serves(title: &str, database: &str) -> bool {
    let Some(rest) = title.strip_prefix("postgres:") else {
        return false;
    };
    let words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || c == '\0')
        .filter(|w| !w.is_empty() && !w.ends_with(':'))
        .collect();
    match words.as_slice() {
        [first, ..] if SHARED_PROCESSES.contains(first) => true,
        ["autovacuum", "worker", .., db] => *db == database,
        [_user, db, ..] => *db == database,
        _ => false,
    }
}

/// User plus system time, in clock ticks, from `/proc/<pid>/stat`.
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields 3 (state) onwards: utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_rates() {
        let a = CpuTimes {
            loadgen_ns: 1_000,
            proxy_ns: 4_000,
            mock_ns: 2_000,
            pg_ns: 0,
        };
        let b = CpuTimes {
            loadgen_ns: 3_000,
            proxy_ns: 8_000,
            mock_ns: 2_000,
            pg_ns: 2_000,
        };
        let d = b - a;
        assert_eq!(
            d,
            CpuTimes {
                loadgen_ns: 2_000,
                proxy_ns: 4_000,
                mock_ns: 0,
                pg_ns: 2_000,
            }
        );
        let per = d.per_request_us(2);
        assert_eq!(per.loadgen_us, 1.0);
        assert_eq!(per.proxy_us, 2.0);
        assert_eq!(per.pg_us, 1.0);
        assert_eq!(per.total_us(), 4.0);
        assert_eq!(d.per_request_us(0).total_us(), 0.0);
    }

    #[test]
    fn postgres_titles() {
        let db = "uno_test_1";
        assert!(serves(
            "postgres: 15/main: postgres uno_test_1 127.0.0.1(5000) idle",
            db
        ));
        assert!(serves("postgres: postgres uno_test_1 [local] INSERT", db));
        assert!(!serves(
            "postgres: 15/main: postgres other 127.0.0.1(5000) idle",
            db
        ));
        assert!(serves("postgres: 15/main: checkpointer ", db));
        assert!(serves("postgres: 15/main: background writer ", db));
        assert!(serves("postgres: 15/main: walwriter ", db));
        assert!(serves("postgres: autovacuum worker uno_test_1", db));
        assert!(!serves("postgres: autovacuum worker other", db));
        assert!(!serves(
            "postgres: 15/main: logical replication launcher ",
            db
        ));
        assert!(!serves(
            "/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/postgresql/15/main\0",
            db
        ));
    }

    #[test]
    fn stat_times() {
        let stat =
            "2206 (postgres) S 2205 2205 2205 0 -1 4210752 354 0 0 0 17 42 0 0 20 0 1 0 1234 0";
        assert_eq!(stat_ticks(stat), Some(59));
        let odd = "7 (a b) c) R 1 1 1 0 -1 0 0 0 0 0 3 4 0 0";
        assert_eq!(stat_ticks(odd), Some(7));
        assert_eq!(stat_ticks("garbage"), None);
    }

    /// Reads the live /proc of this machine; a smoke test that it parses.
    #[test]
    fn reads_postgres_if_present() {
        let _ = postgres_ns("no_such_database");
    }
}

//! Postgres's CPU time, read from `/proc`, for benchmarks.
//!
//! On machines where Postgres shares the cores with what is measured, its
//! CPU decides throughput as much as the measured process's own, so the
//! benchmarks report both. Linux only; elsewhere the figures are zero.

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

    /// Reads the live /proc: a backend made to work for a database shows
    /// up as CPU time for that database.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_busy_backend_counts_for_its_database() {
        use sqlx::Connection;
        let db = crate::TestDatabase::postgres().await;
        let name = db.postgres_name().unwrap_or_default().to_owned();
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let before = postgres_ns(&name);
        sqlx::query("SELECT count(*) FROM generate_series(1, 20000000)")
            .execute(&mut conn)
            .await
            .unwrap();
        let after = postgres_ns(&name);
        assert!(
            after >= before + 20_000_000,
            "at least two clock ticks of the backend's work: {before} -> {after} ns"
        );
        conn.close().await.unwrap();
    }
}

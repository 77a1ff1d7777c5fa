//! `--postgres-own-core`: Postgres on one core, everything else on the
//! others, so the logging comparison shows what logging costs uno when the
//! database does not take the proxy's CPU, as on a database host of its
//! own (the production shape). Without it, Postgres shares every core
//! with the proxy, the mock and the load generator, and its own CPU per
//! logged row comes straight out of the proxy's throughput.
//!
//! Affinity is set with `taskset` (util-linux): every running Postgres
//! process goes to the last core (backends forked later inherit it from
//! the postmaster), this process's threads to the rest (threads started
//! later inherit it). Dropping the guard gives every Postgres process all
//! cores back; a run killed before it ends leaves them pinned, and
//! `taskset -p -c 0-N PID` for each (or a Postgres restart) undoes it.

use std::process::Command;

use anyhow::{Context, bail};

/// Restores Postgres's affinity when dropped.
pub struct PostgresOnOwnCore {
    pids: Vec<u32>,
    all_cores: String,
}

impl PostgresOnOwnCore {
    /// Pins every Postgres process to the last core and this process to
    /// the others. Needs at least two cores and permission to change
    /// Postgres's affinity (root, or the same user).
    pub fn pin() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        if cores < 2 {
            bail!("--postgres-own-core needs at least two cores; this machine has {cores}");
        }
        let last = cores - 1;
        let pids = postgres_pids();
        if pids.is_empty() {
            bail!("--postgres-own-core: no running postgres process found in /proc");
        }
        let guard = PostgresOnOwnCore {
            pids,
            all_cores: format!("0-{last}"),
        };
        for pid in &guard.pids {
            taskset(&["-p", "-c", &last.to_string(), &pid.to_string()])
                .with_context(|| format!("cannot pin Postgres process {pid} to core {last}"))?;
        }
        let others = if last == 1 {
            "0".to_owned()
        } else {
            format!("0-{}", last - 1)
        };
        taskset(&["-a", "-p", "-c", &others, &std::process::id().to_string()])
            .context("cannot pin uno-bench to the other cores")?;
        eprintln!(
            "uno-bench: Postgres ({} processes) on core {last}; uno, the mock and the load generator on cores {others}",
            guard.pids.len()
        );
        Ok(guard)
    }
}

impl Drop for PostgresOnOwnCore {
    fn drop(&mut self) {
        // Backends started during the run have exited with their pools;
        // the postmaster and the background processes get every core back.
        for pid in postgres_pids() {
            let _ = taskset(&["-p", "-c", &self.all_cores, &pid.to_string()]);
        }
        self.pids.clear();
    }
}

fn taskset(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("taskset")
        .args(args)
        .output()
        .context("cannot run taskset (util-linux)")?;
    if !output.status.success() {
        bail!(
            "taskset {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Every process whose command name is `postgres`.
fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim_end() == "postgres").then_some(pid)
        })
        .collect()
}

//! CPU time per component, from the kernel's per-thread accounting.
//!
//! Every runtime names its threads (`mock-worker`, `uno-worker`,
//! `unopg-worker`, `bare-worker`, `loadgen`), so summing
//! `/proc/self/task/*/schedstat` (nanoseconds on a CPU) by name prefix tells
//! how much CPU each component used during a measurement: on a machine where
//! all three share few cores, that is what decides throughput. Where the
//! file is missing (not Linux) the figures are zero.
//!
//! Postgres runs outside this process, on the same cores.
//! [`uno_testkit::pg_cpu::postgres_ns`]
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
}

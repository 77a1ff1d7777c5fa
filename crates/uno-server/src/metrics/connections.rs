//! Client connections: how many are open, and why uno closed the ones it
//! closed (see [`crate::connection`]). An attacker holding connections open
//! shows here first: header and body timeouts climb, and the open count
//! sits at the limit.

use std::sync::atomic::{AtomicU64, Ordering};

use uno_core::metrics::{Exposition, Kind};

/// Why uno closed a client connection (or refused its request body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The request line and headers did not arrive within the header timeout.
    Header = 0,
    /// The body did not arrive at the minimum rate.
    Body = 1,
    /// A keep-alive connection had no request for the idle timeout.
    Idle = 2,
}

impl Cut {
    const ALL: [Cut; 3] = [Cut::Header, Cut::Body, Cut::Idle];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Header => "header",
            Cut::Body => "body",
            Cut::Idle => "idle",
        }
    }
}

/// Counters of the connection layer; every update is one atomic add.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    opened: AtomicU64,
    closed: AtomicU64,
    cuts: [AtomicU64; 3],
    limit_reached: AtomicU64,
    limit: AtomicU64,
}

impl ConnectionMetrics {
    /// A connection was accepted.
    pub fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended, however it ended.
    pub fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// uno cut a connection or a body for `cut`.
    pub fn cut(&self, cut: Cut) {
        self.cuts[cut as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times `cut` happened so far.
    pub fn cuts(&self, cut: Cut) -> u64 {
        self.cuts[cut as usize].load(Ordering::Relaxed)
    }

    /// Accepting paused because the connection limit was reached.
    pub fn limit_reached(&self) {
        self.limit_reached.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection limit in force.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit as u64, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        // Read closed first: a connection closing between the two reads
        // can then only make the figure one too high, never wrap below 0.
        let closed = self.closed.load(Ordering::Relaxed);
        self.opened.load(Ordering::Relaxed).saturating_sub(closed)
    }

    /// Writes the families.
    pub fn write(&self, page: &mut Exposition) {
        page.family(
            "uno_connections_open",
            Kind::Gauge,
            "Client connections open now.",
        );
        page.sample("uno_connections_open", "", self.open() as f64);
        page.family(
            "uno_connections_limit",
            Kind::Gauge,
            "Most client connections served at once (server.max_connections, lowered to what the open-file limit allows).",
        );
        page.sample(
            "uno_connections_limit",
            "",
            self.limit.load(Ordering::Relaxed) as f64,
        );
        page.family(
            "uno_connections_accepted_total",
            Kind::Counter,
            "Client connections accepted.",
        );
        page.sample(
            "uno_connections_accepted_total",
            "",
            self.opened.load(Ordering::Relaxed) as f64,
        );
        page.family(
            "uno_connection_timeouts_total",
            Kind::Counter,
            "Connections uno closed, by timeout: header (request head too slow), body (request body below the minimum rate; answered 408), idle (keep-alive with no request).",
        );
        for cut in Cut::ALL {
            page.sample(
                "uno_connection_timeouts_total",
                &format!("kind=\"{}\"", cut.as_str()),
                self.cuts(cut) as f64,
            );
        }
        page.family(
            "uno_connection_limit_reached_total",
            Kind::Counter,
            "Times uno stopped accepting because server.max_connections were open (new connections waited in the backlog).",
        );
        page.sample(
            "uno_connection_limit_reached_total",
            "",
            self.limit_reached.load(Ordering::Relaxed) as f64,
        );
    }
}

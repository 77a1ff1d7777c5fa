//! What a connection is doing, and when it has been at it too long.
//!
//! hyper's own header timeout also runs while a keep-alive connection waits
//! for its next request, so it cannot tell a slow head (cut after 10 s)
//! from an idle connection (kept 90 s). This state tells them apart:
//!
//! - **head**: from the moment a connection opens, or the first byte that
//!   arrives while no request is in progress, until hyper hands uno the
//!   parsed request; limited by the header timeout;
//! - **in progress**: from the parsed request until its response's last
//!   byte is sent; never limited here (the body has its own minimum rate,
//!   see [`super::body`]; an answer may stream for as long as it streams);
//! - **idle**: from the end of a response until the next byte arrives;
//!   limited by the idle timeout.
//!
//! The request path only touches atomics: the connection's task checks the
//! state on a timer, at most every header timeout, and sleeps until the
//! exact deadline once it sees one coming (a check always comes before a
//! deadline, since a phase is seen at most one period after it began and
//! no deadline is shorter than a period). Nothing wakes the task per request.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::connections::Cut;

/// "No head under way."
const NONE: u64 = 0;

/// One connection's phase, written by its reads and its requests.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    /// Requests handed to uno and not yet fully answered.
    in_flight: AtomicU32,
    /// When the pending head began, as milliseconds since `opened` plus 1
    /// (so that 0 means none).
    head_started: AtomicU64,
    /// When the last response ended, in milliseconds since `opened`.
    idle_since: AtomicU64,
}

/// What the watchdog decided at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing is late; look again at this instant.
    Until(Instant),
    /// Close the connection for this reason.
    Expired(Cut),
}

impl ConnState {
    /// A connection opened now: its first head is under way.
    pub fn new() -> Self {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(1),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// Bytes arrived from the client.
    pub fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// Whether a request head is being read (no request handed to uno).
    pub fn reading_head(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) != NONE
    }

    /// hyper parsed a request head and handed the request to uno.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
    }

    /// A response was sent in full (or abandoned).
    pub fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Decides at `now` whether the connection is late, given the limits;
    /// `period` is the longest the watchdog may sleep without looking.
    pub fn check(&self, now: Instant, header: Duration, idle: Duration, period: Duration) -> Check {
        let next_look = now + period;
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Check::Until(next_look);
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let (deadline, cut) = if head != NONE {
            (self.at(head - 1) + header, Cut::Header)
        } else {
            (
                self.at(self.idle_since.load(Ordering::Relaxed)) + idle,
                Cut::Idle,
            )
        };
        if now >= deadline {
            Check::Expired(cut)
        } else {
            Check::Until(deadline.min(next_look))
        }
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(90);

    fn check(state: &ConnState, after: Duration) -> Check {
        state.check(state.opened + after, HEADER, IDLE, HEADER)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let state = ConnState::new();
        assert_eq!(
            check(&state, Duration::from_secs(3)),
            Check::Until(state.opened + HEADER)
        );
        assert_eq!(check(&state, HEADER), Check::Expired(Cut::Header));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_is_never_late_however_long_it_runs() {
        let state = ConnState::new();
        state.request_started();
        let later = Duration::from_secs(3600);
        assert_eq!(
            check(&state, later),
            Check::Until(state.opened + later + HEADER)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_response_the_idle_timeout_applies_until_bytes_arrive() {
        let state = ConnState::new();
        state.request_started();
        tokio::time::advance(Duration::from_secs(100)).await;
        state.request_finished();
        // Idle: only the idle timeout, counted from the response's end.
        assert_eq!(
            check(&state, Duration::from_secs(150)),
            Check::Until(state.opened + Duration::from_secs(160))
        );
        assert_eq!(
            check(&state, Duration::from_secs(190)),
            Check::Expired(Cut::Idle)
        );
        // A byte of the next head: the header timeout from that byte.
        tokio::time::advance(Duration::from_secs(20)).await;
        state.bytes_read();
        assert_eq!(
            check(&state, Duration::from_secs(125)),
            Check::Until(state.opened + Duration::from_secs(130))
        );
        assert_eq!(
            check(&state, Duration::from_secs(130)),
            Check::Expired(Cut::Header)
        );
        // Bytes read during a request do not start a head.
        state.request_started();
        state.bytes_read();
        state.request_finished();
        assert!(matches!(
            check(&state, Duration::from_secs(131)),
            Check::Until(_)
        ));
    }
}

//! The queue between the request path and the log writer: a vector behind
//! a mutex, which the writer swaps for the empty one it last drained.
//!
//! Every logged request queues a record, so queuing is kept cheap. A
//! bounded tokio channel cost each record a semaphore permit, a slot in a
//! linked block and a ready flag (several atomic operations, on blocks that
//! had left the CPU's cache by the time they were reused), and the writer
//! as much again to take it: about 0.3 us a request in the load harness on
//! a 2-vCPU VM. Here a record costs one uncontended lock and a push to the
//! end of a vector that the previous push just touched, and the writer
//! takes everything queued with one swap. The vector it hands back keeps
//! its capacity, so neither side allocates once the queue has warmed up.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

/// A multi-producer queue drained all at once, bounded in entries and in
/// bytes (prompts of 60 kB make a count alone no bound on memory).
pub(super) struct Inbox<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    max_bytes: usize,
    /// Entries queued between rings of `batch_ready`.
    batch: usize,
    /// Rung when an entry lands in an empty inbox (the writer may be idle)
    /// and when the last sender is gone.
    arrived: Notify,
    /// Rung at every `batch`-th entry queued since the last take (a batch
    /// is waiting) and when the last sender is gone: a writer letting a
    /// partial batch fill then takes it at once, not after its interval.
    batch_ready: Notify,
}

struct State<T> {
    entries: Vec<T>,
    /// The entries' sizes, as their senders gave them.
    bytes: usize,
    /// When the oldest queued entry arrived (`None` when empty).
    oldest: Option<Instant>,
    /// Refuses entries: the writer is shutting down.
    closed: bool,
    /// Every sender is gone: nothing more can arrive.
    disconnected: bool,
}

impl<T> Inbox<T> {
    /// An inbox holding up to `capacity` entries and `max_bytes` bytes
    /// (always at least one entry), with room for `reserve` allocated up
    /// front, that rings [`Inbox::batch_ready`] every `batch` entries.
    pub(super) fn new(capacity: usize, max_bytes: usize, reserve: usize, batch: usize) -> Self {
        Inbox {
            state: Mutex::new(State {
                entries: Vec::with_capacity(reserve.min(capacity)),
                bytes: 0,
                oldest: None,
                closed: false,
                disconnected: false,
            }),
            capacity,
            max_bytes,
            batch: batch.max(1),
            arrived: Notify::new(),
            batch_ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A push or a swap cannot leave the state half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `entry` of `bytes` bytes; returns how many entries are queued
    /// with it, or gives the entry back when the inbox is full or closed.
    pub(super) fn push(&self, entry: T, bytes: usize) -> Result<usize, T> {
        let mut state = self.lock();
        let over_bytes = !state.entries.is_empty() && state.bytes + bytes > self.max_bytes;
        if state.closed || state.entries.len() >= self.capacity || over_bytes {
            return Err(entry);
        }
        if state.entries.is_empty() {
            // Read once per batch, not per entry: the writer's durability
            // deadline counts from here.
            state.oldest = Some(Instant::now());
        }
        state.bytes += bytes;
        state.entries.push(entry);
        let queued = state.entries.len();
        drop(state);
        if queued == 1 {
            self.arrived.notify_one();
        }
        // One wake-up of a busy writer per batch, not per entry.
        if queued.is_multiple_of(self.batch) {
            self.batch_ready.notify_one();
        }
        Ok(queued)
    }

    /// Moves every queued entry into `drained` (which must be empty),
    /// leaving its buffer behind for the next entries; returns when the
    /// oldest of them arrived.
    pub(super) fn take_all(&self, drained: &mut Vec<T>) -> Option<Instant> {
        debug_assert!(drained.is_empty());
        let mut state = self.lock();
        std::mem::swap(&mut state.entries, drained);
        state.bytes = 0;
        state.oldest.take()
    }

    /// When the oldest queued entry arrived.
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.lock().oldest
    }

    /// Bytes queued, as their senders sized them.
    pub(super) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// Whether every sender is gone.
    pub(super) fn is_disconnected(&self) -> bool {
        self.lock().disconnected
    }

    /// Waits for an entry to land in the empty inbox, or for the last
    /// sender to go. May return with nothing queued (a ring left from
    /// before the last [`Inbox::take_all`]); callers check.
    pub(super) async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Waits for a batch's worth to be queued, or for the last sender to
    /// go. May return with less queued (a ring left from before the last
    /// take); callers check.
    pub(super) async fn batch_ready(&self) {
        self.batch_ready.notified().await;
    }

    /// Refuses every later entry.
    pub(super) fn close(&self) {
        self.lock().closed = true;
    }

    /// Marks that no sender is left and wakes the writer, idle or busy,
    /// to finish.
    pub(super) fn disconnect(&self) {
        self.lock().disconnected = true;
        self.arrived.notify_one();
        self.batch_ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_its_capacity_and_gives_everything_back_in_order() {
        let inbox = Inbox::new(3, usize::MAX, 8, 8);
        assert_eq!(inbox.push(1, 1), Ok(1));
        assert!(inbox.oldest().is_some());
        assert_eq!(inbox.push(2, 1), Ok(2));
        assert_eq!(inbox.push(3, 1), Ok(3));
        assert_eq!(inbox.push(4, 1), Err(4), "full");
        let mut drained = Vec::with_capacity(5);
        assert!(inbox.take_all(&mut drained).is_some());
        assert!(inbox.oldest().is_none());
        assert_eq!(drained, [1, 2, 3]);
        assert!(inbox.is_empty());
        assert_eq!(
            inbox.lock().entries.capacity(),
            5,
            "the drained buffer is reused"
        );
        drained.clear();
        assert_eq!(inbox.push(5, 1), Ok(1), "room again once taken");
        inbox.close();
        assert_eq!(inbox.push(6, 1), Err(6), "closed");
        inbox.take_all(&mut drained);
        assert_eq!(drained, [5]);
    }

    #[test]
    fn bytes_bound_the_inbox_but_one_entry_always_fits() {
        let inbox = Inbox::new(100, 1000, 8, 8);
        assert_eq!(inbox.push(1, 5000), Ok(1), "one entry, however large");
        assert_eq!(inbox.push(2, 1), Err(2), "past the byte bound");
        let mut drained = Vec::new();
        inbox.take_all(&mut drained);
        assert_eq!(inbox.bytes(), 0);
        assert_eq!(inbox.push(3, 600), Ok(1));
        assert_eq!(inbox.push(4, 400), Ok(2));
        assert_eq!(inbox.bytes(), 1000);
        assert_eq!(inbox.push(5, 1), Err(5));
    }

    #[tokio::test]
    async fn the_first_entry_and_the_last_sender_leaving_wake_the_writer() {
        let inbox = std::sync::Arc::new(Inbox::new(10, usize::MAX, 10, 2));
        let waiting = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.arrived().await })
        };
        tokio::task::yield_now().await;
        inbox.push(1, 1).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the first entry")
            .unwrap();
        let mut drained = Vec::new();
        inbox.take_all(&mut drained);
        assert!(!inbox.is_disconnected());
        inbox.disconnect();
        assert!(inbox.is_disconnected());
        tokio::time::timeout(std::time::Duration::from_secs(5), inbox.arrived())
            .await
            .expect("woken by the disconnect");
    }

    #[tokio::test]
    async fn a_full_batch_and_the_last_sender_leaving_ring_the_batch_bell() {
        let inbox = std::sync::Arc::new(Inbox::new(10, usize::MAX, 10, 3));
        let rung = |inbox: &std::sync::Arc<Inbox<i32>>| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.batch_ready().await })
        };
        let waiting = rung(&inbox);
        tokio::task::yield_now().await;
        inbox.push(1, 1).unwrap();
        inbox.push(2, 1).unwrap();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "two of a batch of three");
        inbox.push(3, 1).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the third entry")
            .unwrap();
        let mut drained = Vec::new();
        inbox.take_all(&mut drained);
        inbox.push(4, 1).unwrap();
        let waiting = rung(&inbox);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one of the next batch");
        inbox.disconnect();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken by the disconnect")
            .unwrap();
    }
}

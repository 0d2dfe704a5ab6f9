//! The bound on fetch responses held in memory over all connections
//! (`fetch.buffer.max.bytes`): a fetch reserves room before it reads a partition's records
//! and keeps it until its response has been written to the socket. Clients pipeline
//! fetches and many consumers catch up at once after a restart; without the bound each of
//! them would hold its response in memory however many there are.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Room reserved for record bytes; given back when dropped.
pub type Reservation = OwnedSemaphorePermit;

/// Clones share the bound.
#[derive(Clone, Debug)]
pub struct FetchMemory {
    /// One permit per byte.
    room: Arc<Semaphore>,
    limit: usize,
    /// Reservations that waited until their deadline in vain.
    exhausted: Counter,
}

impl FetchMemory {
    pub fn new(limit: usize, exhausted: Counter) -> Self {
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
            exhausted,
        }
    }

    /// Waits until `deadline` for room for `bytes` (at most the whole bound, so a large
    /// request waits for an idle broker rather than forever). None if the deadline passed.
    pub async fn reserve(&self, bytes: usize, deadline: Instant) -> Option<Reservation> {
        let acquire = self.room.clone().acquire_many_owned(self.permits(bytes));
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(reservation) => Some(reservation.expect("the fetch memory is never closed")),
            Err(_) => {
                self.exhausted.inc();
                None
            }
        }
    }

    /// Room for `bytes` if it is free now. A fetch that already holds room uses this, so
    /// fetches never wait on each other while holding room.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        self.room
            .clone()
            .try_acquire_many_owned(self.permits(bytes))
            .ok()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.limit - self.room.available_permits()
    }

    fn permits(&self, bytes: usize) -> u32 {
        bytes.min(self.limit).min(u32::MAX as usize) as u32
    }
}

/// Keeps only as much of `reservation` as `bytes` used; the rest is given back now.
pub fn shrink_to(reservation: &mut Reservation, bytes: usize) {
    let unused = reservation.num_permits().saturating_sub(bytes);
    drop(reservation.split(unused));
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_reservation_waits_for_room_until_its_deadline() {
        let exhausted = Counter::default();
        let memory = FetchMemory::new(100, exhausted.clone());
        let soon = || Instant::now() + Duration::from_millis(50);
        let mut held = memory.reserve(80, soon()).await.expect("room is free");
        assert_eq!(memory.clone().in_use(), 80, "clones share the bound");
        assert!(memory.reserve(30, soon()).await.is_none(), "only 20 free");
        assert_eq!(exhausted.get(), 1, "the wait in vain is counted");
        assert!(memory.try_reserve(30).is_none(), "only 20 free");

        shrink_to(&mut held, 50);
        assert_eq!(held.num_permits(), 50);
        let other = memory.try_reserve(30).expect("shrinking gave 30 back");
        drop(held);
        drop(other);
        let all = memory
            .reserve(1_000, soon())
            .await
            .expect("the whole bound");
        assert_eq!(all.num_permits(), 100, "a request is capped at the bound");
    }
}

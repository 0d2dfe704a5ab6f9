//! Bounds on what clients can make the broker hold, whatever they send: open connections
//! (Kafka's `max.connections` and `max.connections.per.ip`) and request frames being read or
//! handled (Kafka's `queued.max.request.bytes`). Without them, a few clients each sending
//! most of a 100 MiB frame and then nothing take the broker's memory, and enough sockets
//! take its file descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections: a broker-wide count, which new connections wait for (they stay in the
/// listen backlog meanwhile, as with Kafka), and a count per client address, beyond which a
/// new connection is closed at once.
pub struct ConnectionLimits {
    slots: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
    open: Gauge,
    rejected: Counter,
}

/// One admitted connection; dropping it frees its place.
pub struct Connection {
    _slot: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    open: Gauge,
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_ip: usize, open: Gauge, rejected: Counter) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip,
            open,
            rejected,
        }
    }

    /// Waits until fewer than `max.connections` are open; accept a connection only then.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection slots are never closed")
    }

    /// Admits a connection from `ip` into `slot`, unless its address already has
    /// `max.connections.per.ip` open (then it is counted and None).
    pub fn admit(&self, ip: IpAddr, slot: OwnedSemaphorePermit) -> Option<Connection> {
        {
            let mut per_ip = self.per_ip.lock().unwrap();
            let open = per_ip.entry(ip).or_default();
            if *open >= self.max_per_ip {
                self.rejected.inc();
                return None;
            }
            *open += 1;
        }
        self.open.inc();
        Some(Connection {
            _slot: slot,
            ip,
            per_ip: self.per_ip.clone(),
            open: self.open.clone(),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap();
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.open.dec();
    }
}

/// Raises the process's soft limit on open files to its hard limit (each connection takes
/// one) and returns the new soft limit.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Room for request frames: a connection reserves a frame's size before reading its body
/// and holds it until the request's ordered part has run (a produce's batches are copied
/// into the append buffer by then, and nothing refers to the frame any more).
pub struct RequestMemory {
    room: Arc<Semaphore>,
    limit: usize,
    queued: Gauge,
    waits: Counter,
}

/// Room held for one frame; given back when dropped.
pub struct RequestRoom {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    queued: Gauge,
}

impl RequestMemory {
    pub fn new(limit: usize, queued: Gauge, waits: Counter) -> Self {
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
            queued,
            waits,
        }
    }

    /// Waits for room for a frame of `bytes` (at most the whole bound, so a frame larger
    /// than the bound waits for every other frame to be done, rather than forever).
    pub async fn reserve(&self, bytes: usize) -> RequestRoom {
        let permits = bytes.min(self.limit).min(u32::MAX as usize) as u32;
        let permit = match self.room.clone().try_acquire_many_owned(permits) {
            Ok(permit) => permit,
            Err(_) => {
                self.waits.inc();
                self.room
                    .clone()
                    .acquire_many_owned(permits)
                    .await
                    .expect("the request memory is never closed")
            }
        };
        let bytes = permits as usize;
        self.queued.inc_by(bytes as i64);
        RequestRoom {
            _permit: permit,
            bytes,
            queued: self.queued.clone(),
        }
    }
}

impl RequestRoom {
    /// The bytes held: the frame's size, or the whole bound for a frame larger than it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for RequestRoom {
    fn drop(&mut self) {
        self.queued.dec_by(self.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn connections_wait_for_a_slot_and_each_address_has_its_own_bound() {
        let limits = ConnectionLimits::new(2, 1, Gauge::default(), Counter::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = limits
            .admit(a, limits.slot().await)
            .expect("a first connection");
        assert!(
            limits.admit(a, limits.slot().await).is_none(),
            "one per address"
        );
        assert_eq!(limits.rejected.get(), 1);
        let second = limits
            .admit(b, limits.slot().await)
            .expect("another address");
        assert_eq!(limits.open.get(), 2);
        // Both slots are taken: the next connection waits until one closes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), limits.slot()).await;
        assert!(waiting.is_err(), "a third connection got a slot");
        drop(first);
        let slot = limits.slot().await;
        let third = limits.admit(a, slot);
        assert!(third.is_some(), "the address is free again");
        drop(second);
        assert_eq!(limits.open.get(), 1);
    }

    #[tokio::test]
    async fn frames_wait_for_room_and_give_it_back() {
        let memory = RequestMemory::new(100, Gauge::default(), Counter::default());
        let held = memory.reserve(80).await;
        assert_eq!(memory.queued.get(), 80);
        let waiting = tokio::time::timeout(Duration::from_millis(50), memory.reserve(30)).await;
        assert!(waiting.is_err(), "a frame got room beyond the bound");
        assert_eq!(memory.waits.get(), 1);
        drop(held);
        let large = memory.reserve(1_000).await;
        assert_eq!(
            memory.queued.get(),
            100,
            "a frame is capped at the whole bound"
        );
        drop(large);
        assert_eq!(memory.queued.get(), 0);
    }
}

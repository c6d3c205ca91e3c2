//! Hands the heap that rooms and sockets freed back to the system. The allocator keeps
//! freed memory for reuse, so a node that once held a million rooms stays at its peak
//! RSS after they are gone; after enough rooms were released, `malloc_trim` returns the
//! free pages (glibc only; elsewhere this does nothing).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Rooms left (by `leave` or a disconnect) since the last trim.
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// A trim runs once this many rooms were released...
const ENOUGH: u64 = 1000;
/// ...checked this often.
const EVERY: Duration = Duration::from_secs(2);

/// Notes that `rooms` rooms were left.
pub fn released(rooms: usize) {
    RELEASED.fetch_add(rooms as u64, Ordering::Relaxed);
}

/// Trims the heap whenever enough rooms were released; runs until the process ends.
pub async fn trimmer() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if RELEASED.load(Ordering::Relaxed) < ENOUGH {
            continue;
        }
        let rooms = RELEASED.swap(0, Ordering::Relaxed);
        // It walks the whole heap: off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            let returned = trim();
            tracing::debug!(rooms, returned, "heap trimmed after rooms were left");
        })
        .await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

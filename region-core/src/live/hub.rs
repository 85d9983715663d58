//! The process's live feeds, one per watched show, and its socket count.
//! A feed is registered here while it has sockets or recent pollers; its
//! task unregisters it (under the same lock sockets attach under, so a
//! socket never attaches to a feed that has stopped).

use super::feed::Feed;
use shared::ShowId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A feed with no socket and no poll for this long stops.
pub const IDLE: Duration = Duration::from_secs(30);

/// Live feeds and sockets of this process.
#[derive(Default)]
pub struct Hub {
    feeds: Mutex<HashMap<ShowId, Arc<Feed>>>,
    sockets: AtomicUsize,
}

/// How a feed is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A socket attaches (until [`Hub::detach`]).
    Socket,
    /// A poll (keeps the feed alive for [`IDLE`]).
    Poll,
}

impl Hub {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<ShowId, Arc<Feed>>> {
        self.feeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The show's feed, marked as used; `true` if it was just created
    /// (the caller starts its task).
    pub fn feed(&self, show: ShowId, seats: u32, buffer: usize, how: Use) -> (Arc<Feed>, bool) {
        let mut feeds = self.feeds();
        let mut created = false;
        let feed = feeds
            .entry(show)
            .or_insert_with(|| {
                created = true;
                Arc::new(Feed::new(show, seats, buffer))
            })
            .clone();
        match how {
            Use::Socket => {
                feed.watchers.fetch_add(1, Ordering::SeqCst);
            }
            Use::Poll => feed.last_poll_ms.store(feed.now_ms(), Ordering::SeqCst),
        }
        (feed, created)
    }

    /// A socket leaves its feed.
    pub fn detach(&self, feed: &Feed) {
        let _feeds = self.feeds();
        feed.watchers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the feed has been unused for [`IDLE`]; if so it is removed
    /// (its task then stops).
    pub fn retire_if_idle(&self, feed: &Arc<Feed>) -> bool {
        let mut feeds = self.feeds();
        let quiet_ms = feed.now_ms() - feed.last_poll_ms.load(Ordering::SeqCst);
        let idle = feed.watchers.load(Ordering::SeqCst) == 0 && quiet_ms >= IDLE.as_millis() as i64;
        if idle {
            if let Some(f) = feeds.get(&feed.show()) {
                if Arc::ptr_eq(f, feed) {
                    feeds.remove(&feed.show());
                }
            }
        }
        idle
    }

    /// Counts a new socket unless `max` are open.
    pub fn open_socket(self: &Arc<Self>, max: usize) -> Option<SocketSlot> {
        self.sockets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        metrics::gauge!("live_sockets").increment(1.0);
        Some(SocketSlot(self.clone()))
    }

    /// Sockets open now.
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::SeqCst)
    }

    /// Shows with a running feed now.
    pub fn feeds_running(&self) -> usize {
        self.feeds().len()
    }
}

/// One counted socket; dropping it frees the slot.
pub struct SocketSlot(Arc<Hub>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("live_sockets").decrement(1.0);
    }
}

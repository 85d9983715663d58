//! The task of one show's live feed (see `feed`): follows the show's
//! Redis channel while Redis answers, snapshots from Postgres while it
//! does not, and stops when the show has been unwatched for a while.

use super::feed::Feed;
use super::hub::Hub;
use super::message::{parse, Published};
use super::snapshot::{self, Snapshot};
use crate::redis_path::live_channel;
use crate::state::AppState;
use futures::StreamExt;
use shared::live::Coalescer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the feed's task.
pub fn spawn(feed: Arc<Feed>, hub: Arc<Hub>, state: AppState) {
    tokio::spawn(async move {
        let idle = |f: &Arc<Feed>| hub.retire_if_idle(f);
        run(feed, state, idle).await;
    });
}

/// Why the feed's Redis session ended.
enum End {
    /// No viewer and no poller for a while: the task stops.
    Idle,
    /// Redis went away (or the breaker opened): degraded, then retry.
    Redis,
}

/// The feed's task: runs until the show has had no viewer and no poller
/// for [`IDLE`] (`idle` says so, and unregisters the feed atomically).
async fn run(feed: Arc<Feed>, state: AppState, idle: impl Fn(&Arc<Feed>) -> bool) {
    let every = Duration::from_millis(state.settings.live_degraded_snapshot_ms.max(100));
    let mut last_degraded: Option<Instant> = None;
    loop {
        if idle(&feed) {
            return;
        }
        if state.redis.fast_path_available() {
            last_degraded = None;
            if let End::Idle = session(&feed, &state, &idle).await {
                return;
            }
        }
        // Degraded: a snapshot from Postgres now and then until Redis
        // answers again (checked often, so the recovery is quick).
        if last_degraded.is_none_or(|t| t.elapsed() >= every) {
            match snapshot::snapshot(&state, feed.show()).await {
                Ok(snap) => feed.install(Snapshot {
                    degraded: true,
                    ..snap
                }),
                Err(e) => {
                    tracing::warn!(error = %e, show = %feed.show(), "live snapshot from Postgres failed")
                }
            }
            last_degraded = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Follows the show's channel until Redis fails or the feed is idle.
async fn session(feed: &Arc<Feed>, state: &AppState, idle: &impl Fn(&Arc<Feed>) -> bool) -> End {
    let timeout = Duration::from_millis(state.settings.redis_timeout_ms.max(1) * 4);
    let mut pubsub = match state.redis.pubsub().await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "live feed: no Pub/Sub connection");
            return End::Redis;
        }
    };
    match tokio::time::timeout(timeout, pubsub.subscribe(live_channel(feed.show()))).await {
        Ok(Ok(())) => {}
        _ => return End::Redis,
    }
    let mut stream = pubsub.into_on_message();
    let window = state.settings.live_window_ms.max(1);
    let mut coalescer = Coalescer::new(feed.show(), window as i64);
    // Subscribed first, so every change after this snapshot is heard.
    if !resnapshot(feed, state, &mut coalescer).await {
        return End::Redis;
    }
    let mut tick = tokio::time::interval(Duration::from_millis((window / 2).max(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return End::Redis };
                let Some(published) = msg.get_payload::<String>().ok().and_then(|t| parse(&t)) else {
                    continue;
                };
                let seq = published.seq();
                if seq <= feed.seq() {
                    continue; // already in the snapshot
                }
                let followed = match &published {
                    Published::Changes { changes, .. } if seq == feed.seq() + 1 => {
                        let ok = coalescer.push(seq, changes, feed.now_ms()).is_ok();
                        if ok {
                            feed.apply(seq, changes);
                        }
                        ok
                    }
                    _ => false,
                };
                // A lost message, a map Redis no longer has: start over.
                if !followed && !resnapshot(feed, state, &mut coalescer).await {
                    return End::Redis;
                }
            }
            _ = tick.tick() => {
                if coalescer.due(feed.now_ms()) {
                    if let Some(frame) = coalescer.take() {
                        feed.send_delta(&frame);
                    }
                }
                if !state.redis.fast_path_available() {
                    return End::Redis;
                }
                if idle(feed) {
                    return End::Idle;
                }
            }
        }
    }
}

/// Takes a snapshot from Redis and sends it to every viewer; false if
/// Redis could not give one.
async fn resnapshot(feed: &Feed, state: &AppState, coalescer: &mut Coalescer) -> bool {
    match snapshot::snapshot(state, feed.show()).await {
        Ok(snap) if !snap.degraded => {
            let seq = snap.seq;
            feed.install(snap);
            coalescer.reset(seq);
            metrics::counter!("live_resyncs_total").increment(1);
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, show = %feed.show(), "live snapshot failed");
            false
        }
    }
}

//! Virtual waiting room arithmetic (pure). A flash sale admits users at a
//! configured rate: the **serving counter** is computed on read from the
//! opening time and the rate (AWS's virtual waiting room works the same
//! way), so nothing has to run on a timer. A user whose 0-based place in
//! the queue is below the counter is admitted.
//!
//! Users who join before opening are in a pre-queue; at opening they are
//! ordered by [`prequeue_score`], a hash of a secret seed and their id.
//! The seed's SHA-256 ([`seed_commitment`]) is shown before opening and
//! the seed after it, so anyone can check the order was fixed in advance
//! and not chosen by who asked first.

use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

/// One sale's waiting-room settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaleConfig {
    /// Sale id (the show id).
    pub sale: String,
    /// When admission starts, unix milliseconds.
    pub opens_at_ms: i64,
    /// Users admitted per second.
    pub rate_per_sec: f64,
    /// How long an admission pass stays valid, seconds.
    pub pass_ttl_s: u32,
    /// A waiting user who has not polled for this long loses the place.
    pub grace_s: u32,
}

/// Where a user stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Joined before opening; the order is drawn at opening.
    PreQueue,
    /// In line.
    Waiting,
    /// Their turn: a pass is issued.
    Admitted,
}

/// A user's status, as the status endpoint returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// State.
    pub state: QueueState,
    /// 1-based place in the queue (None in the pre-queue).
    pub position: Option<u64>,
    /// Users ahead who are not yet admitted.
    pub ahead: Option<u64>,
    /// Estimated wait, lower bound, seconds.
    pub wait_min_s: u64,
    /// Estimated wait, upper bound, seconds.
    pub wait_max_s: u64,
    /// When to poll again, seconds.
    pub refresh_after_s: u64,
}

impl SaleConfig {
    /// The serving counter at `now_ms`: how many places have been
    /// admitted by the rate. 0 before opening. The configured rate is a
    /// cap: a completed pass does not admit anyone extra (it used to, and
    /// a sale set to 100/s admitted 122–128/s under fast buyers), and a
    /// user who drops out frees a place by leaving the queue (everyone
    /// behind moves up), not by adding to the counter.
    pub fn served(&self, now_ms: i64) -> u64 {
        if now_ms < self.opens_at_ms || self.rate_per_sec <= 0.0 {
            return 0;
        }
        let elapsed_s = (now_ms - self.opens_at_ms) as f64 / 1000.0;
        // The first user is admitted at the opening instant.
        (elapsed_s * self.rate_per_sec).floor() as u64 + 1
    }

    /// The least time between two passes' issue instants, ms: `1000 /
    /// rate`. See [`next_slot`].
    pub fn pass_spacing_ms(&self) -> f64 {
        1000.0 / self.rate_per_sec.max(f64::MIN_POSITIVE)
    }

    /// The status of the user at 0-based `rank` (None: still in the
    /// pre-queue), given the serving counter.
    pub fn status(&self, rank: Option<u64>, served: u64, now_ms: i64) -> QueueStatus {
        let rate = self.rate_per_sec.max(f64::MIN_POSITIVE);
        let Some(rank) = rank else {
            let until_open = ((self.opens_at_ms - now_ms).max(0) as u64).div_ceil(1000);
            return QueueStatus {
                state: QueueState::PreQueue,
                position: None,
                ahead: None,
                wait_min_s: until_open,
                wait_max_s: until_open,
                refresh_after_s: refresh(until_open),
            };
        };
        if rank < served {
            return QueueStatus {
                state: QueueState::Admitted,
                position: Some(rank + 1),
                ahead: Some(0),
                wait_min_s: 0,
                wait_max_s: 0,
                refresh_after_s: 0,
            };
        }
        let ahead = rank - served;
        let until_open = ((self.opens_at_ms - now_ms).max(0) as f64) / 1000.0;
        // Seconds until the counter reaches rank: exact at this rate; the
        // upper bound allows for users given back being fewer than hoped
        // (it never shortens), the lower for places given back.
        let at_rate = (ahead + 1) as f64 / rate + until_open;
        let min = (at_rate * 0.8).floor() as u64;
        let max = (at_rate * 1.2).ceil() as u64;
        QueueStatus {
            state: QueueState::Waiting,
            position: Some(rank + 1),
            ahead: Some(ahead),
            wait_min_s: min,
            wait_max_s: max.max(1),
            refresh_after_s: refresh(at_rate.ceil() as u64),
        }
    }
}

/// Poll again after a quarter of the expected wait, between 1 and 30 s:
/// often enough near the front, cheap far back.
fn refresh(wait_s: u64) -> u64 {
    (wait_s / 4).clamp(1, 30)
}

/// Order key of a pre-queue user: the first 12 hex digits (48 bits) of
/// SHA-1(`seed` ":" `user`). The waiting room's Redis script computes the
/// same with `redis.sha1hex`, so the order can be checked afterwards.
pub fn prequeue_score(seed: &str, user: &str) -> u64 {
    let digest = Sha1::digest(format!("{seed}:{user}").as_bytes());
    let hex = hex::encode(digest);
    u64::from_str_radix(&hex[..12], 16).unwrap_or(0)
}

/// The published commitment to a seed: lowercase hex SHA-256.
pub fn seed_commitment(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))
}

/// When a pass collected at `now_ms` is issued, given the previous
/// pass's instant (`None`: the first): no sooner than `spacing_ms` after
/// it. The serving counter admits places at the rate, but a pass is
/// collected when its user next polls, so users whose turns came between
/// two polls would collect together and issue times would bunch above the
/// rate (107/s in the worst 10 s of a 100/s sale). Spacing the issue
/// instants makes the rate a cap on passes themselves; a pass whose
/// instant is still ahead is handed out from that instant ("your pass in
/// a moment"). The delay stays short: the counter never admits faster
/// than the spacing, so the chain only runs ahead of `now` by the bunch
/// it is smoothing. The room script computes the same in Lua.
pub fn next_slot(last_ms: Option<f64>, now_ms: i64, spacing_ms: f64) -> f64 {
    let now = now_ms as f64;
    last_ms.map_or(now, |l| now.max(l + spacing_ms))
}

/// The most admissions in any window of `window_ms` (sliding), given
/// the admission times in milliseconds, sorted. How a sale's cap is
/// checked: at most `rate × window` (within 2 %) in any 10-second window.
pub fn worst_window(admitted_ms: &[i64], window_ms: i64) -> usize {
    let mut worst = 0;
    let mut from = 0;
    for (to, t) in admitted_ms.iter().enumerate() {
        while admitted_ms[from] <= t - window_ms {
            from += 1;
        }
        worst = worst.max(to + 1 - from);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale() -> SaleConfig {
        SaleConfig {
            sale: "s".into(),
            opens_at_ms: 10_000,
            rate_per_sec: 2.0,
            pass_ttl_s: 300,
            grace_s: 60,
        }
    }

    #[test]
    fn the_counter_advances_at_the_rate_from_opening() {
        let s = sale();
        assert_eq!(s.served(9_999), 0);
        assert_eq!(s.served(10_000), 1);
        assert_eq!(s.served(10_499), 1);
        assert_eq!(s.served(10_500), 2);
        assert_eq!(s.served(20_000), 21);
    }

    /// The cap: whatever the rate, no 10-second window admits more than
    /// the rate allows, within 2 % (the +1 at the opening instant is the
    /// only slack, which 2 % covers from 5/s up).
    #[test]
    fn any_ten_seconds_admit_at_most_the_rate() {
        for rate in [5.0, 7.5, 33.3, 100.0, 250.0, 1000.0] {
            let s = SaleConfig {
                rate_per_sec: rate,
                opens_at_ms: 1_000,
                ..sale()
            };
            // When each place is first served, over a minute.
            let mut admitted = Vec::new();
            let mut served = 0;
            for now in 0..61_000 {
                let c = s.served(now);
                admitted.extend(std::iter::repeat_n(now, (c - served) as usize));
                served = c;
            }
            let worst = worst_window(&admitted, 10_000) as f64;
            assert!(worst <= rate * 10.0 * 1.02, "{rate}/s: {worst} in 10 s");
            assert!(
                worst >= rate * 10.0 * 0.98,
                "{rate}/s: only {worst} in 10 s"
            );
        }
        assert_eq!(worst_window(&[0, 5, 10, 10_004, 10_006], 10_000), 3);
        assert_eq!(worst_window(&[], 10_000), 0);
    }

    /// Users collect passes in bursts (everyone admitted in the last few
    /// seconds, at one poll): the issue instants still keep the cap, and
    /// without the spacing the same bursts break it (negative control).
    #[test]
    fn spaced_slots_keep_the_cap_when_passes_are_collected_in_bursts() {
        for rate in [5.0, 33.3, 100.0, 1000.0] {
            let s = SaleConfig {
                rate_per_sec: rate,
                opens_at_ms: 0,
                ..sale()
            };
            // Everyone served in the last 3 s polls at once, every 3 s.
            let (mut spaced, mut bunched) = (Vec::new(), Vec::new());
            let mut last = None;
            let mut collected = 0;
            for now in (0..60_000).step_by(3_000) {
                let c = s.served(now);
                for _ in collected..c {
                    let slot = next_slot(last, now, s.pass_spacing_ms());
                    last = Some(slot);
                    spaced.push(slot.ceil() as i64);
                    bunched.push(now);
                }
                collected = c;
                // The chain never runs far ahead of the counter.
                assert!(last.unwrap() - (now as f64) <= 3_000.0 + s.pass_spacing_ms());
            }
            let worst = worst_window(&spaced, 10_000) as f64;
            assert!(worst <= rate * 10.0 * 1.02, "{rate}/s: {worst} in 10 s");
            let worst_bunched = worst_window(&bunched, 10_000) as f64;
            assert!(
                worst_bunched > rate * 10.0 * 1.02,
                "{rate}/s: the control should bunch ({worst_bunched})"
            );
        }
        assert_eq!(next_slot(None, 5, 10.0), 5.0);
        assert_eq!(next_slot(Some(4.0), 5, 10.0), 14.0);
        assert_eq!(next_slot(Some(-50.0), 5, 10.0), 5.0);
    }

    #[test]
    fn status_follows_the_counter() {
        let s = sale();
        let st = s.status(Some(0), 1, 10_000);
        assert_eq!(st.state, QueueState::Admitted);
        let st = s.status(Some(9), 1, 10_000);
        assert_eq!(st.state, QueueState::Waiting);
        assert_eq!(st.position, Some(10));
        assert_eq!(st.ahead, Some(8));
        // 9 more places at 2/s = 4.5 s.
        assert_eq!((st.wait_min_s, st.wait_max_s), (3, 6));
        assert_eq!(st.refresh_after_s, 1);
        let far = s.status(Some(10_000), 1, 10_000);
        assert_eq!(far.refresh_after_s, 30);
        let pre = s.status(None, 0, 4_000);
        assert_eq!(pre.state, QueueState::PreQueue);
        assert_eq!(pre.wait_min_s, 6);
    }

    #[test]
    fn waiting_before_opening_counts_the_time_to_open() {
        let s = sale();
        let st = s.status(Some(0), 0, 4_000);
        assert_eq!(st.state, QueueState::Waiting);
        assert!(st.wait_min_s >= 4 && st.wait_max_s >= 6);
    }

    #[test]
    fn the_prequeue_order_is_fixed_by_the_seed() {
        let a = prequeue_score("seed-1", "alice");
        assert_eq!(a, prequeue_score("seed-1", "alice"));
        assert_ne!(a, prequeue_score("seed-2", "alice"));
        assert!(a < 1 << 48);
        // SHA-1("seed-1:alice"), first 12 hex digits, as redis.sha1hex gives.
        let hex = hex::encode(Sha1::digest(b"seed-1:alice"));
        assert_eq!(a, u64::from_str_radix(&hex[..12], 16).unwrap());
        assert_eq!(seed_commitment("abc").len(), 64);
        assert_eq!(
            seed_commitment("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

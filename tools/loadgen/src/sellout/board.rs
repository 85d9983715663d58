//! What the buyers see of the show: its seat map, and how a buyer picks
//! 1–4 adjacent free seats from it.
//!
//! A real buyer's app shows the live seat map; here the whole crowd shares
//! one copy ([`SharedBoard`]), fetched like any buyer's (through the edge,
//! whose cache makes everyone see the same copy anyway) at most every
//! [`REFRESH`], and patched with what the crowd itself learnt (seats it
//! held, lost, released or bought), as the live map's deltas would. A
//! patch stands until a copy newer than it arrives (the edge says how old
//! its copy is in `Age`): a stale copy must not undo what a buyer just
//! learnt, or every buyer goes for the same taken seats. Parsing a 10,000-seat map per buyer would make the load
//! generator, not the platform, the bottleneck.

use crate::crowd::{Crowd, Kind};
use rand::Rng;
use reqwest::StatusCode;
use shared::api::SeatMap;
use shared::SeatState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use testkit::api::{Api, Method};
use tokio::sync::Mutex;

/// Longest a shared copy of the map is used before it is fetched again.
pub const REFRESH: Duration = Duration::from_millis(500);
/// One row of seats, in order.
#[derive(Debug, Clone, Default)]
struct Row {
    labels: Vec<String>,
    states: Vec<SeatState>,
}

/// A seat map, rows in order, with counts.
#[derive(Debug, Clone, Default)]
pub struct Board {
    rows: Vec<Row>,
    /// Where each label is: (row, index).
    at: HashMap<String, (usize, usize)>,
}

/// The row part of a label (`AB12` → `AB`).
fn row_of(label: &str) -> &str {
    label.trim_end_matches(|c: char| c.is_ascii_digit())
}

impl Board {
    /// The board of a fetched map (seats front row first, in row order).
    pub fn from_map(map: &SeatMap) -> Self {
        let mut b = Board::default();
        for s in &map.seats {
            let new_row = b
                .rows
                .last()
                .and_then(|r| r.labels.last())
                .is_none_or(|last| row_of(last) != row_of(&s.label));
            if new_row {
                b.rows.push(Row::default());
            }
            let r = b.rows.len() - 1;
            let row = &mut b.rows[r];
            b.at.insert(s.label.clone(), (r, row.labels.len()));
            row.labels.push(s.label.clone());
            row.states.push(s.status);
        }
        b
    }

    /// (available, held) seats.
    pub fn counts(&self) -> (usize, usize) {
        let mut c = (0, 0);
        for s in self.rows.iter().flat_map(|r| &r.states) {
            match s {
                SeatState::Available => c.0 += 1,
                SeatState::Held => c.1 += 1,
                SeatState::Booked => {}
            }
        }
        c
    }

    /// Sets the state of the named seats (unknown labels are ignored).
    pub fn mark(&mut self, labels: &[String], state: SeatState) {
        for l in labels {
            if let Some(&(r, i)) = self.at.get(l) {
                self.rows[r].states[i] = state;
            }
        }
    }

    /// `want` adjacent free seats at a random place among those that have
    /// them; if no row has `want` together, the longest free run there is
    /// (a buyer takes fewer seats rather than none). `None`: no free seat.
    pub fn choose(&self, want: usize, rng: &mut impl Rng) -> Option<Vec<String>> {
        let want = want.max(1);
        // Every maximal free run: (row, start, len).
        let mut runs = Vec::new();
        for (r, row) in self.rows.iter().enumerate() {
            let mut start = None;
            for (i, s) in row.states.iter().chain([&SeatState::Booked]).enumerate() {
                match (s, start) {
                    (SeatState::Available, None) => start = Some(i),
                    (SeatState::Available, Some(_)) => {}
                    (_, Some(st)) => {
                        runs.push((r, st, i - st));
                        start = None;
                    }
                    (_, None) => {}
                }
            }
        }
        let fitting: Vec<_> = runs.iter().filter(|run| run.2 >= want).collect();
        let (r, start, len, take) = if fitting.is_empty() {
            // The longest runs left, one of them at random (buyers do not
            // all go for the same seats).
            let longest = runs.iter().map(|run| run.2).max()?;
            let all: Vec<_> = runs.iter().filter(|run| run.2 == longest).collect();
            let &&(r, start, len) = &all[rng.gen_range(0..all.len())];
            (r, start, len, len)
        } else {
            let &&(r, start, len) = &fitting[rng.gen_range(0..fitting.len())];
            (r, start, len, want)
        };
        let first = start + rng.gen_range(0..=len - take);
        Some(self.rows[r].labels[first..first + take].to_vec())
    }
}

/// What the map offers a buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Seats to hold (already marked held for the rest of the crowd).
    Seats(Vec<String>),
    /// No free seat; `held` are in holds that may still come back.
    NoneFree {
        /// Seats in live holds.
        held: usize,
    },
}

/// The crowd's one copy of the map, fetched through `api` when older than
/// [`REFRESH`].
pub struct SharedBoard {
    api: Api,
    path: String,
    warned: AtomicU32,
    state: Mutex<Shared>,
}

struct Shared {
    board: Board,
    fetched: Option<Instant>,
    /// label → (when, state): the crowd's own news, applied over fetches.
    patches: HashMap<String, (Instant, SeatState)>,
}

impl SharedBoard {
    /// The map of `show`, read through `api` (the edge or the region).
    pub fn new(api: Api, show: &str) -> Self {
        Self {
            api,
            path: format!("/v1/shows/{show}/seats"),
            warned: AtomicU32::new(0),
            state: Mutex::new(Shared {
                board: Board::default(),
                fetched: None,
                patches: HashMap::new(),
            }),
        }
    }

    /// Picks seats for a buyer who wants `want` of them, from a copy at
    /// most [`REFRESH`] old.
    pub async fn choose(&self, crowd: &Crowd, want: usize) -> anyhow::Result<Pick> {
        let mut s = self.state.lock().await;
        if s.fetched.is_none_or(|t| t.elapsed() >= REFRESH) {
            match self.fetch(crowd).await {
                Ok((map, content_at)) => {
                    let mut board = Board::from_map(&map);
                    // A patch newer than the copy's content still holds;
                    // an older one the copy already shows (or overrides).
                    // A booked seat stays booked: no sale here cancels.
                    s.patches.retain(|_, (at, state)| {
                        *state == SeatState::Booked || content_at.is_none_or(|c| *at >= c)
                    });
                    for (label, (_, state)) in &s.patches {
                        board.mark(std::slice::from_ref(label), *state);
                    }
                    s.board = board;
                }
                // A refused or failed read (429, 503): the copy in hand
                // serves until the next try, as a buyer's screen would.
                Err(e) if s.fetched.is_some() => {
                    if first_warnings(&self.warned) {
                        eprintln!("loadgen: warning: seat map read failed: {e:#}");
                    }
                }
                Err(e) => return Err(e),
            }
            s.fetched = Some(Instant::now());
        }
        let Some(seats) = s.board.choose(want, &mut rand::thread_rng()) else {
            let (_, held) = s.board.counts();
            return Ok(Pick::NoneFree { held });
        };
        // Taken from the others' view at once, as a live seat map shows a
        // hold the moment it lands: without it, every buyer choosing
        // while this hold is in flight could go for the same seats.
        let now = Instant::now();
        s.board.mark(&seats, SeatState::Held);
        for l in &seats {
            s.patches.insert(l.clone(), (now, SeatState::Held));
        }
        Ok(Pick::Seats(seats))
    }

    /// The map, and when its content was current: the edge's copy is
    /// `Age` seconds old (to the second, so one more is allowed); `None`
    /// if that is before the clock can say.
    async fn fetch(&self, crowd: &Crowd) -> anyhow::Result<(SeatMap, Option<Instant>)> {
        let sent = Instant::now();
        let send = self
            .api
            .send(Method::GET, &self.path, None, None, None::<&()>);
        let r = crowd.call(Kind::SeatMap, send).await?;
        anyhow::ensure!(r.status == StatusCode::OK, "seat map: {}", r.failure());
        let age_s = r
            .header("age")
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        let content_at = sent.checked_sub(Duration::from_secs(age_s + 1));
        Ok((r.json()?, content_at))
    }

    /// What a buyer learnt about `labels`: they are now `state`.
    pub async fn mark(&self, labels: &[String], state: SeatState) {
        let mut s = self.state.lock().await;
        s.board.mark(labels, state);
        let now = Instant::now();
        for l in labels {
            s.patches.insert(l.clone(), (now, state));
        }
    }
}

/// True for the first few warnings (a failing read is said, not repeated
/// thousands of times).
fn first_warnings(n: &AtomicU32) -> bool {
    n.fetch_add(1, Ordering::Relaxed) < 5
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use shared::api::SeatMapSeat;

    fn map(rows: &[&str]) -> SeatMap {
        let mut seats = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let name = ["A", "B", "C"][r];
            for (i, c) in row.chars().enumerate() {
                seats.push(SeatMapSeat {
                    label: format!("{name}{}", i + 1),
                    category: "STANDARD".into(),
                    status: match c {
                        '.' => SeatState::Available,
                        'h' => SeatState::Held,
                        _ => SeatState::Booked,
                    },
                });
            }
        }
        SeatMap {
            show_id: shared::ShowId(uuid::Uuid::nil()),
            available: 0,
            held: 0,
            booked: 0,
            seats,
        }
    }

    #[test]
    fn a_buyer_gets_adjacent_free_seats_or_the_longest_run_left() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let b = Board::from_map(&map(&["x..x.", "...xh"]));
        assert_eq!(b.counts(), (6, 1));
        for _ in 0..50 {
            let three = b.choose(3, &mut rng).unwrap();
            assert_eq!(three, ["B1", "B2", "B3"]);
            let two = b.choose(2, &mut rng).unwrap();
            assert!(
                [vec!["A2", "A3"], vec!["B1", "B2"], vec!["B2", "B3"]]
                    .contains(&two.iter().map(String::as_str).collect::<Vec<_>>()),
                "{two:?}"
            );
        }
        // Nobody has 4 together: the longest run instead.
        assert_eq!(b.choose(4, &mut rng).unwrap(), ["B1", "B2", "B3"]);
        // Nothing free: nothing chosen, though seats are still held.
        let full = Board::from_map(&map(&["xxh", "xxx"]));
        assert_eq!(full.counts(), (0, 1));
        assert_eq!(full.choose(1, &mut rng), None);
    }

    #[test]
    fn marks_change_what_is_chosen_and_counted() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut b = Board::from_map(&map(&["...", "xxx"]));
        b.mark(&["A1".into(), "A2".into()], SeatState::Held);
        assert_eq!(b.counts(), (1, 2));
        assert_eq!(b.choose(2, &mut rng).unwrap(), ["A3"]);
        b.mark(&["A3".into(), "Z9".into()], SeatState::Booked);
        assert_eq!(b.choose(1, &mut rng), None);
        b.mark(&["A1".into()], SeatState::Available);
        assert_eq!(b.choose(3, &mut rng).unwrap(), ["A1"]);
    }
}

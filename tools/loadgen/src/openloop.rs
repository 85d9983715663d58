//! Open-model load: request `i` is *scheduled* at `start + i / rate`,
//! whatever happened to earlier requests, and its latency is measured from
//! that scheduled time, not from when it was actually sent.
//!
//! A closed loop (N clients, each waiting for its answer before sending the
//! next) slows its own arrivals down exactly when the server stalls, so the
//! stall is sampled once instead of once per request that should have been
//! sent during it ("coordinated omission"). Here a stall delays every
//! scheduled request behind it, and each of those delays is recorded.
//!
//! In-flight requests are capped (an overloaded server must not exhaust
//! sockets); a request waiting for a slot is already late, and its wait is
//! part of its latency. Requests that cannot even be started within the
//! grace period after the run are counted as dropped, never silently lost.

use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How a run is paced.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// Length of the schedule.
    pub duration: Duration,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// How long after the schedule ends late requests may still start and
    /// outstanding ones may still finish.
    pub grace: Duration,
}

/// One completed request.
#[derive(Debug)]
pub struct Sample<O> {
    /// From its scheduled send time to its completion.
    pub latency: Duration,
    /// When it completed, from the start of the run.
    pub done_at: Duration,
    /// What the request returned.
    pub outcome: O,
}

/// What a run produced.
pub struct Run<O> {
    /// Completed requests.
    pub samples: Vec<Sample<O>>,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Scheduled requests never started (the run fell too far behind).
    pub dropped: u64,
    /// Requests started but unfinished at the end of the grace period.
    pub unfinished: u64,
    /// How late requests were sent relative to their schedule, in µs
    /// (a large value means the client or the in-flight cap is the limit).
    pub send_lag_us: Histogram<u64>,
}

impl<O> Run<O> {
    /// Time from the start of the run to its last completion, and at least
    /// the scheduled duration.
    pub fn elapsed(&self, schedule: &Schedule) -> Duration {
        self.samples
            .iter()
            .map(|s| s.done_at)
            .max()
            .unwrap_or_default()
            .max(schedule.duration)
    }
}

/// Latency of the requests scheduled within one slice of a run.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// Start of the slice, from the start of the run.
    pub start: Duration,
    /// Requests scheduled in it (and completed).
    pub count: u64,
    /// Their p99 latency, µs.
    pub p99_us: u64,
    /// Their worst latency, µs.
    pub max_us: u64,
}

/// Cuts a run into slices of `width` by scheduled send time: shows whether
/// a tail comes from one stall or is spread over the run.
pub fn timeline<O>(samples: &[Sample<O>], width: Duration) -> Vec<Slice> {
    let width_us = width.as_micros().max(1);
    let mut slices: Vec<Histogram<u64>> = Vec::new();
    for s in samples {
        let scheduled = s.done_at.saturating_sub(s.latency);
        let i = (scheduled.as_micros() / width_us) as usize;
        if slices.len() <= i {
            slices.resize_with(i + 1, micros_histogram);
        }
        slices[i].saturating_record(s.latency.as_micros() as u64);
    }
    slices
        .iter()
        .enumerate()
        .map(|(i, h)| Slice {
            start: width * i as u32,
            count: h.len(),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
        .collect()
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Runs `make(i)` for every scheduled request `i` and collects the results.
///
/// The dispatcher itself runs as a task on the runtime's workers (not on
/// the thread that called `block_on`), so a timer firing does not need a
/// cross-thread wake-up before requests go out.
pub async fn run<O, F, Fut>(schedule: Schedule, make: F) -> Run<O>
where
    O: Send + 'static,
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = O> + Send + 'static,
{
    match tokio::spawn(dispatch(schedule, make)).await {
        Ok(run) => run,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn dispatch<O, F, Fut>(schedule: Schedule, mut make: F) -> Run<O>
where
    O: Send + 'static,
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: Future<Output = O> + Send + 'static,
{
    let total = (schedule.rate * schedule.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / schedule.rate.max(1e-3));
    let samples: Arc<Mutex<Vec<Sample<O>>>> =
        Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let slots = Arc::new(Semaphore::new(schedule.max_in_flight));
    let mut send_lag = micros_histogram();
    let start = Instant::now();
    let deadline = start + schedule.duration + schedule.grace;
    let mut started = 0u64;
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        // Timers tick in milliseconds: requests due within the same tick go
        // out together, each still timed from its own scheduled instant.
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
        let permit =
            match tokio::time::timeout_at(deadline.into(), slots.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => break,
            };
        send_lag.saturating_record(at.elapsed().as_micros() as u64);
        let fut = make(i);
        let samples = samples.clone();
        started += 1;
        tokio::spawn(async move {
            let outcome = fut.await;
            let now = Instant::now();
            let sample = Sample {
                latency: now.saturating_duration_since(at),
                done_at: now.saturating_duration_since(start),
                outcome,
            };
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
            drop(permit);
        });
    }
    // Wait for the stragglers: every slot back means every request done.
    let all = u32::try_from(schedule.max_in_flight).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout_at(deadline.into(), slots.acquire_many(all)).await;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let completed = samples.len() as u64;
    Run {
        samples,
        scheduled: total,
        dropped: total - started,
        unfinished: started.saturating_sub(completed),
        send_lag_us: send_lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stall_is_charged_to_every_request_scheduled_during_it() {
        // One slot and a 100 ms request: the 9 requests scheduled behind it
        // (every 10 ms) each wait, and their latencies say so.
        let schedule = Schedule {
            rate: 100.0,
            duration: Duration::from_millis(100),
            max_in_flight: 1,
            grace: Duration::from_secs(5),
        };
        let run = run(schedule, |i| async move {
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert_eq!(run.scheduled, 10);
        assert_eq!(run.samples.len(), 10);
        assert_eq!(run.dropped, 0);
        let slow = run
            .samples
            .iter()
            .filter(|s| s.latency >= Duration::from_millis(9))
            .count();
        // A closed loop would report one slow request; all but the last
        // few (scheduled after the stall ended) were delayed.
        assert!(slow >= 8, "only {slow} requests recorded the stall");
    }

    #[tokio::test]
    async fn requests_that_cannot_start_in_time_are_dropped() {
        let schedule = Schedule {
            rate: 1000.0,
            duration: Duration::from_millis(50),
            max_in_flight: 1,
            grace: Duration::from_millis(100),
        };
        let run = run(schedule, |_| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
        })
        .await;
        assert_eq!(run.scheduled, 50);
        assert_eq!(run.dropped, 49);
        assert_eq!(run.unfinished, 1);
    }
}

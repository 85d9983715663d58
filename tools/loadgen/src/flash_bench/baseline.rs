//! The same-run baseline: the status script straight to the Upstash
//! gateway and the booking read straight to the region core, beside the
//! same through the edge.

use super::{FlashSaleArgs, World, CITY};
use crate::crowd::{locked, unix_ms, Record};
use crate::edge::{self, Room};
use crate::edge_world::{hex_key, UPSTASH_TOKEN};
use crate::openloop::micros_histogram;
use crate::report::{ms, r2, FlashSaleBaseline};
use functions::rate_limit::{gate_keys_args, Caller, RateLimits, RouteClass};
use functions::upstash::{command_body, decode_command, prefixed, UpstashError};
use functions::waiting_room::{self as room, Mode, Sale};
use reqwest::StatusCode;
use shared::token::Role;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testkit::api::{Api, Method, Minter};

// About 100 lines: one measured loop per Redis script the Worker sends
// (join, status, pass check), side by side so they stay comparable.
/// The same-run baseline: the work of a status poll and of a forwarded
/// read, through the edge and without it, interleaved so both see the
/// same machine.
pub(super) async fn baseline(
    args: &FlashSaleArgs,
    w: &World<'_>,
    records: &[Record],
    minter: &Minter,
    sale: &Sale,
) -> anyhow::Result<FlashSaleBaseline> {
    use futures::StreamExt;
    let buyers: Vec<(String, String, uuid::Uuid)> = records
        .iter()
        .filter_map(|r| {
            let booking = r.booking?;
            Some((
                r.id.clone(),
                minter.bearer(&r.id, Role::User).ok()?,
                booking,
            ))
        })
        .collect();
    anyhow::ensure!(!buyers.is_empty(), "no booking to read for the baseline");
    let edge = Api::edge(w.edge_url, CITY)?;
    let region = Api::new(w.core_url)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    let room = Room::new(CITY, &sale.config.sale);
    let hists = Mutex::new([
        micros_histogram(),
        micros_histogram(),
        micros_histogram(),
        micros_histogram(),
    ]);
    let errors = AtomicUsize::new(0);
    const CONCURRENCY: usize = 8;
    eprintln!(
        "loadgen: baseline: {} rounds, {CONCURRENCY} at a time (status via edge / straight to Upstash, booking read via edge / straight to the region)",
        args.baseline_rounds
    );
    futures::stream::iter(0..args.baseline_rounds)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (edge, region, http, room, hists, errors) =
                (&edge, &region, &http, &room, &hists, &errors);
            let b = i % buyers.len();
            let (id, bearer, booking) = &buyers[b];
            async move {
                let ip = edge::client_ip(2_000_000 + b);
                let as_user = edge.at_ip(&ip);
                let read = format!("/v1/bookings/{booking}");
                let mut lat = [Duration::ZERO; 4];
                let mut ok = [false; 4];
                let t = Instant::now();
                let r = room.status(&as_user, bearer).await;
                lat[0] = t.elapsed();
                ok[0] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let t = Instant::now();
                let r = direct_status(http, w, sale, id, &ip).await;
                lat[1] = t.elapsed();
                ok[1] = r.is_ok();
                let t = Instant::now();
                let r = as_user
                    .send(Method::GET, &read, Some(bearer), None, None::<&()>)
                    .await;
                lat[2] = t.elapsed();
                ok[2] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let t = Instant::now();
                let r = region
                    .send(Method::GET, &read, Some(bearer), None, None::<&()>)
                    .await;
                lat[3] = t.elapsed();
                ok[3] = r.is_ok_and(|r| r.status == StatusCode::OK);
                let mut h = locked(hists);
                for k in 0..4 {
                    if ok[k] {
                        h[k].saturating_record(lat[k].as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let h = locked(&hists);
    let q = |k: usize, p: f64| ms(h[k].value_at_quantile(p));
    Ok(FlashSaleBaseline {
        rounds: args.baseline_rounds,
        concurrency: CONCURRENCY,
        status_edge_p50_ms: q(0, 0.5),
        status_edge_p99_ms: q(0, 0.99),
        status_direct_upstash_p50_ms: q(1, 0.5),
        status_direct_upstash_p99_ms: q(1, 0.99),
        read_edge_p50_ms: q(2, 0.5),
        read_edge_p99_ms: q(2, 0.99),
        read_region_p50_ms: q(3, 0.5),
        read_region_p99_ms: q(3, 0.99),
        status_edge_overhead_p50_ms: r2(q(0, 0.5) - q(1, 0.5)),
        read_edge_overhead_p50_ms: r2(q(2, 0.5) - q(3, 0.5)),
        errors: errors.load(Ordering::Relaxed) as u64,
    })
}

/// The status poll the Worker makes for `user`, sent straight to the
/// Upstash gateway: the same script (`ROOM`), keys and arguments, built by
/// the Worker's own code. Fails unless it reports the user's pass.
pub(super) async fn direct_status(
    http: &reqwest::Client,
    w: &World<'_>,
    sale: &Sale,
    user: &str,
    ip: &str,
) -> anyhow::Result<()> {
    let limits = RateLimits::default();
    let class = RouteClass::Status;
    let bucket = functions::auth::ip_bucket(ip);
    let caller = Caller {
        ip_bucket: &bucket,
        user: Some(user),
    };
    let now = unix_ms();
    let (mut keys, mut argv) = gate_keys_args(class, limits.get(class), &caller, now, &[]);
    keys.extend(room::room_keys(&sale.config.sale));
    let (seed, pid) = (hex_key(), room::pass_id(&sale.config.sale, "baseline"));
    argv.extend(room::room_args(Mode::Status, user, sale, now, &seed, &pid));
    let keys = prefixed(w.key_prefix, &keys);
    let script = &functions::scripts::ROOM;
    let mut reply = upstash(http, w, &script.evalsha(&keys, &argv)).await;
    if matches!(reply, Err(UpstashError::NoScript)) {
        reply = upstash(http, w, &script.eval(&keys, &argv)).await;
    }
    let reply = reply.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, room) = room::decode_room_reply(&reply).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        room.is_some_and(|r| r.pass.is_some()),
        "the status script did not find {user}'s pass"
    );
    Ok(())
}

/// One command to the Upstash gateway.
pub(super) async fn upstash(
    http: &reqwest::Client,
    w: &World<'_>,
    command: &[String],
) -> Result<functions::upstash::Reply, UpstashError> {
    let resp = http
        .post(format!("{}/", w.upstash.url()))
        .bearer_auth(UPSTASH_TOKEN)
        .header("Content-Type", "application/json")
        .body(command_body(command))
        .send()
        .await
        .map_err(|e| UpstashError::Unavailable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| UpstashError::Unavailable(e.to_string()))?;
    decode_command(status, &body)
}

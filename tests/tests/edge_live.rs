//! The live seat map through the edge (issue 11), on the real stack: the
//! built Worker in workerd (its `LiveShow` Durable Object), a real region
//! core, Postgres and Redis.
//!
//! - Viewers of one show connect to the edge and each get a snapshot; a
//!   hold by a third party reaches all of them as a delta; the region
//!   core sees ONE socket for the show however many edge viewers there
//!   are, and a viewer who joins later is served the object's copy
//!   without a new upstream socket; when the last viewer leaves, the
//!   object closes its upstream socket.
//! - With `LIVE_BUCKETS` > 1 a show's viewers are spread over several
//!   objects: the region core sees one socket per object in use, never
//!   one per viewer, and a hold reaches every viewer.
//! - A lost upstream socket is reconnected, and the viewers, who keep
//!   their sockets, get the fresh snapshot with what changed meanwhile.
//! - What a viewer sends is ignored (the object's `websocket_message`),
//!   and `ping` is answered `pong`; the socket keeps receiving.
//! - The polling fallback `/seats?since=N` works through the edge, with
//!   the region's `ETag`, 304s (by number and by `If-None-Match`), and a
//!   one-second micro-cache that keeps pollers off the region.

use std::time::{Duration, Instant};

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use reqwest::Method;
use shared::live::Frame;
use shared::{SeatState, ShowId};
use testkit::live::{ws_url, Viewer};

const CITY: &str = "mum";
/// Generous: the point is "it arrives", not a latency benchmark (the
/// elapsed time is printed).
const DEADLINE: Duration = Duration::from_secs(5);

async fn viewer(stack: &EdgeStack, show: &str) -> Viewer {
    let url = ws_url(&stack.url, &format!("/v1/c/{CITY}/shows/{show}/live"));
    let mut v = Viewer::connect(&url, ShowId(show.parse().unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nedge log:\n{}", stack.edge_log()));
    let first = v.next(DEADLINE).await.expect("a frame");
    assert!(
        matches!(first, Some(Frame::Snapshot { .. })),
        "the first frame is a snapshot: {first:?}\nedge log:\n{}",
        stack.edge_log()
    );
    v
}

/// Waits until `f` holds (polling every 50 ms), up to the deadline.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + DEADLINE;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_viewers_share_one_upstream_socket_and_see_holds_live() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let region = stack.region(CITY);
    let live_path = format!("/v1/shows/{show}/live");
    let region_sockets = || region.app().app.state.live.sockets();

    let mut ann = viewer(&stack, &show).await;
    let mut bob = viewer(&stack, &show).await;
    assert_eq!(ann.seat(0), Some(SeatState::Available));
    assert_eq!(
        region_sockets(),
        1,
        "one region socket for two edge viewers"
    );
    assert_eq!(region.proxy.count("GET", &live_path), 1);

    // A third party holds A1 through the edge: both viewers see it.
    let carol = Client::user("carol", "10.9.0.3");
    let started = Instant::now();
    let held = stack.hold(CITY, &show, &carol, &["A1"], None).await;
    assert_eq!(held.status, 201, "{held}");
    for v in [&mut ann, &mut bob] {
        let seen = v
            .until(DEADLINE, |r| r.seat(0) == Some(SeatState::Held))
            .await
            .expect("frames");
        assert!(seen, "the hold reached the viewer\n{}", stack.edge_log());
        assert_eq!(v.gaps, 0);
    }
    eprintln!(
        "hold → both edge viewers: {} ms",
        started.elapsed().as_millis()
    );

    // A late viewer gets the object's copy (with the hold) at once; the
    // region core still has one socket for the show.
    let dan = viewer(&stack, &show).await;
    assert_eq!(dan.seat(0), Some(SeatState::Held), "served from the copy");
    assert_eq!(region_sockets(), 1, "one region socket for three viewers");
    assert_eq!(
        region.proxy.count("GET", &live_path),
        1,
        "no new upstream connection for a new viewer"
    );
    eprintln!(
        "measured: 3 edge viewers, 1 object, {} upstream socket(s), frames per viewer: ann {}+{}, bob {}+{}, dan {}+{} (snapshots+deltas)",
        region_sockets(),
        ann.snapshots,
        ann.deltas,
        bob.snapshots,
        bob.deltas,
        dan.snapshots,
        dan.deltas
    );

    // Everyone leaves: the object closes its upstream socket.
    for v in [ann, bob, dan] {
        v.close().await.expect("close");
    }
    assert!(
        eventually(|| region_sockets() == 0).await,
        "the upstream socket closes with the last viewer\n{}",
        stack.edge_log()
    );

    // And a plain GET of the socket path is told to upgrade (the region
    // core's code).
    let plain = stack
        .get(
            &format!("/v1/c/{CITY}/shows/{show}/live"),
            &Client::anonymous("10.9.0.4"),
        )
        .await;
    assert_eq!(plain.status, 400, "{plain}");
    assert_eq!(plain.code(), Some("websocket_required"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_spread_viewers_over_objects_each_with_one_upstream_socket() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]).var("LIVE_BUCKETS", "4"))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let region = stack.region(CITY);
    let url = ws_url(&stack.url, &format!("/v1/c/{CITY}/shows/{show}/live"));
    let mut viewers = Vec::new();
    for n in 0..12 {
        let ip = format!("10.9.4.{n}");
        let mut v = Viewer::connect_with(
            &url,
            ShowId(show.parse().unwrap()),
            &[("CF-Connecting-IP", ip.as_str())],
        )
        .await
        .expect("connect");
        let first = v.next(DEADLINE).await.expect("a frame");
        assert!(matches!(first, Some(Frame::Snapshot { .. })), "{first:?}");
        viewers.push(v);
    }
    let sockets = region.app().app.state.live.sockets();
    let opened = region.proxy.count("GET", &format!("/v1/shows/{show}/live"));
    eprintln!("measured: 12 viewers, LIVE_BUCKETS=4 → {sockets} region socket(s)");
    assert!(
        (2..=4).contains(&sockets),
        "one socket per object in use, at most LIVE_BUCKETS: {sockets}"
    );
    assert_eq!(opened as usize, sockets, "one connection per object");

    let carol = Client::user("carol", "10.9.4.200");
    let held = stack.hold(CITY, &show, &carol, &["B1"], None).await;
    assert_eq!(held.status, 201, "{held}");
    for v in &mut viewers {
        let seen = v
            .until(DEADLINE, |r| r.seat(5) == Some(SeatState::Held))
            .await
            .expect("frames");
        assert!(seen, "every object relays the hold");
    }
    for v in viewers {
        v.close().await.expect("close");
    }
    assert!(eventually(|| region.app().app.state.live.sockets() == 0).await);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_messages_are_ignored_and_ping_gets_pong() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let url = ws_url(&stack.url, &format!("/v1/c/{CITY}/shows/{show}/live"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    // The next text message, skipping protocol pings.
    async fn text(
        ws: &mut (impl futures::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin),
    ) -> String {
        loop {
            let msg = tokio::time::timeout(DEADLINE, ws.next())
                .await
                .expect("a message in time")
                .expect("open")
                .expect("a message");
            if let Message::Text(t) = msg {
                return t.as_str().to_owned();
            }
        }
    }
    let first: Frame = serde_json::from_str(&text(&mut ws).await).expect("a frame");
    assert!(matches!(first, Frame::Snapshot { .. }), "{first:?}");
    ws.send(Message::text("hello")).await.expect("send");
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    ws.send(Message::text("ping")).await.expect("send");
    assert_eq!(text(&mut ws).await, "pong");
    // Still a viewer: a hold arrives as a delta.
    let carol = Client::user("carol", "10.9.5.3");
    let held = stack.hold(CITY, &show, &carol, &["A3"], None).await;
    assert_eq!(held.status, 201, "{held}");
    let next: Frame = serde_json::from_str(&text(&mut ws).await).expect("a frame");
    assert!(
        matches!(&next, Frame::Delta { changes, .. } if changes.contains(&(2, SeatState::Held))),
        "{next:?}"
    );
    ws.close(None).await.expect("close");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upstream_is_reconnected_and_viewers_get_the_fresh_snapshot() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let region = stack.region(CITY);
    let live_path = format!("/v1/shows/{show}/live");
    let mut ann = viewer(&stack, &show).await;
    assert_eq!(region.proxy.count("GET", &live_path), 1);

    // The network between the object and the region fails; a seat is
    // held while the object is cut off.
    region.proxy.cut_sockets();
    let carol = Client::user("carol", "10.9.3.3");
    let held = stack.hold(CITY, &show, &carol, &["A2"], None).await;
    assert_eq!(held.status, 201, "{held}");

    // The object reconnects; ann (same socket) gets the new snapshot,
    // which has the hold.
    let until = Instant::now() + DEADLINE;
    while !(ann.snapshots >= 2 && ann.seat(1) == Some(SeatState::Held)) {
        assert!(
            Instant::now() < until,
            "no fresh snapshot with the hold (snapshots {}, seat {:?})\n{}",
            ann.snapshots,
            ann.seat(1),
            stack.edge_log()
        );
        ann.next(Duration::from_millis(200)).await.expect("frames");
    }
    assert!(ann.closed.is_none(), "the viewer's socket survived");
    assert_eq!(region.proxy.count("GET", &live_path), 2, "one reconnect");
    assert!(eventually(|| region.app().app.state.live.sockets() == 1).await);
    ann.close().await.expect("close");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_since_n_through_the_edge_uses_etags_304_and_a_micro_cache() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let carol = Client::user("carol", "10.9.1.3");
    let held = stack.hold(CITY, &show, &carol, &["A1", "A2"], None).await;
    assert_eq!(held.status, 201, "{held}");
    let poller = Client::anonymous("10.9.1.9");
    let seats = format!("/v1/c/{CITY}/shows/{show}/seats");

    // From 0: one frame with both holds, and the ETag of its number.
    let first = stack.get(&format!("{seats}?since=0"), &poller).await;
    assert_eq!(first.status, 200, "{first}");
    let etag = first.header("etag").expect("an ETag").to_owned();
    let seq: u64 = etag.trim_matches('"').parse().expect("a numeric ETag");
    assert!(seq >= 1, "{etag}");
    let frame: Frame = serde_json::from_value(first.body.clone()).expect("a frame");
    assert!(
        matches!(frame, Frame::Delta { from: 1, to, .. } | Frame::Snapshot { seq: to, .. } if to == seq),
        "{frame:?}"
    );

    // An unknown show: the region's 404, passed through.
    let unknown = stack
        .get(
            &format!("/v1/c/{CITY}/shows/{}/seats?since=0", uuid::Uuid::new_v4()),
            &poller,
        )
        .await;
    assert_eq!(unknown.status, 404, "{unknown}");

    // Up to date, by number: 304 with the ETag.
    let same = stack.get(&format!("{seats}?since={seq}"), &poller).await;
    assert_eq!(same.status, 304, "{same}");
    assert_eq!(same.header("etag"), Some(etag.as_str()));
    // By If-None-Match, answered from the edge's copy of since=0.
    let conditional = stack
        .send(
            stack
                .request(Method::GET, &format!("{seats}?since=0"), &poller)
                .header("If-None-Match", &etag),
        )
        .await;
    assert_eq!(conditional.status, 304, "{conditional}");
    assert_eq!(conditional.header("x-edge-cache"), Some("HIT"));

    // Many pollers in a burst: the region sees about one request per
    // second per (show, since).
    let region_polls = || {
        stack
            .region(CITY)
            .proxy
            .count("GET", &format!("/v1/shows/{show}/seats"))
    };
    let before = region_polls();
    let started = Instant::now();
    for n in 0..30u32 {
        let r = stack
            .get(
                &format!("{seats}?since={seq}"),
                &Client::anonymous(&format!("10.9.2.{n}")),
            )
            .await;
        assert_eq!(r.status, 304, "{r}");
    }
    let secs = started.elapsed().as_secs() + 1;
    let asked = region_polls() - before;
    eprintln!(
        "measured: 30 polls in {} ms reached the region {asked} time(s)",
        started.elapsed().as_millis()
    );
    assert!(asked <= secs + 1, "{asked} region requests in ~{secs} s");

    // A burst of concurrent polls of a key nobody asked for yet: the
    // first miss fetches, the others wait for it.
    let before = region_polls();
    let burst = (0..30u32).map(|n| {
        // A number the region has not reached: answered with a snapshot.
        let path = format!("{seats}?since={}", seq + 1000);
        let client = Client::anonymous(&format!("10.9.6.{n}"));
        let stack = &stack;
        async move { stack.get(&path, &client).await }
    });
    let answers = futures::future::join_all(burst).await;
    let etags: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|r| (r.status, r.header("etag").map(str::to_owned)))
        .collect();
    let odd: Vec<String> = answers
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| format!("{r} {:?}", r.headers))
        .collect();
    assert_eq!(
        etags.len(),
        1,
        "one answer for everyone: {etags:?} {odd:?}\n{}",
        stack.edge_log()
    );
    let asked = region_polls() - before;
    eprintln!("measured: 30 concurrent polls of a new key reached the region {asked} time(s)");
    assert!(asked <= 2, "{asked} region requests for one burst");

    // A change shows up within a second or so as a delta after `seq`.
    let release = stack
        .send(stack.request(
            Method::DELETE,
            &format!(
                "/v1/c/{CITY}/holds/{}",
                held.body["hold_id"].as_str().unwrap()
            ),
            &carol,
        ))
        .await;
    assert_eq!(release.status, 200, "{release}");
    let until = Instant::now() + DEADLINE;
    let changed = loop {
        let r = stack.get(&format!("{seats}?since={seq}"), &poller).await;
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 304, "{r}");
        assert!(Instant::now() < until, "the release never showed up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let next: Frame = serde_json::from_value(changed.body.clone()).expect("a frame");
    assert!(
        matches!(next, Frame::Delta { from, .. } if from == seq + 1),
        "{next:?}"
    );
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    stack.stop().await;
}

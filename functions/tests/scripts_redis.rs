//! The edge's Lua scripts on the real Redis (`TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), read back through the same decoders the
//! Worker uses, and checked against `shared`'s arithmetic: the GCRA of
//! `shared::rate_limit` for the gate, the serving counter and pre-queue
//! draw of `shared::waiting_room` for the room. Each test uses its own
//! random keys and deletes them.

use functions::rate_limit::{
    decode_gate, decode_gate_reply, gate_keys_args, Caller, ClassLimit, FailMode, GateVerdict,
    RouteClass, Who,
};
use functions::scripts::{COMPLETE, GATE, ROOM};
use functions::upstash::{Reply, Script};
use functions::waiting_room::{
    completion, decode_room_reply, pass_id, room_args, room_keys, status_view, Mode, RoomReply,
    Sale, State,
};
use shared::rate_limit::{Gcra, RateDecision};
use shared::waiting_room::{prequeue_score, SaleConfig};

fn redis() -> redis::Connection {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| {
            panic!("these tests need Redis at {url} (scripts/services.sh starts it): {e}")
        })
}

/// A Redis reply as the Upstash gateway turns it into JSON, then into
/// our [`Reply`].
fn to_reply(v: redis::Value) -> Reply {
    match v {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Int(i) => Reply::Int(i),
        redis::Value::BulkString(b) => Reply::Str(String::from_utf8(b).unwrap()),
        redis::Value::Okay => Reply::Str("OK".into()),
        redis::Value::SimpleString(s) => Reply::Str(s),
        redis::Value::Array(items) => Reply::Array(items.into_iter().map(to_reply).collect()),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn eval(con: &mut redis::Connection, script: &Script, keys: &[String], args: &[String]) -> Reply {
    let v: redis::Value = redis::cmd("EVAL")
        .arg(script.source)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{} script: {e}", script.name));
    to_reply(v)
}

fn unique() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn cleanup(con: &mut redis::Connection, pattern: &str) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(con).unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(con).unwrap();
    }
}

/// The gate as `shared`'s arithmetic says it must decide.
fn expected(limit: &ClassLimit, tats: &mut (Option<i64>, Option<i64>), now: i64) -> GateVerdict {
    let ip = limit.ip.decide(tats.0, now, limit.cost);
    let user = limit.user.decide(tats.1, now, limit.cost);
    if ip.allowed && user.allowed {
        tats.0 = ip.new_tat_ms;
        tats.1 = user.new_tat_ms;
    }
    let strip = |d: RateDecision| RateDecision {
        new_tat_ms: None,
        ..d
    };
    GateVerdict::Checked {
        ip: strip(ip),
        user: Some(strip(user)),
    }
}

#[test]
fn the_gate_script_decides_exactly_as_shared_gcra_for_both_keys() {
    let mut con = redis();
    let id = unique();
    let ip = format!("ip-{id}");
    let user = format!("user-{id}");
    let caller = Caller {
        ip_bucket: &ip,
        user: Some(&user),
    };
    for cost in [1, 2] {
        // Periods of 100 s: the TAT keys' real-time TTLs (their distance
        // from the simulated now) outlive the test by far, so no key
        // expires under it however slow the machine is.
        let limit = ClassLimit {
            user: Gcra {
                limit: 10,
                period_ms: 100_000,
                burst: 5,
            },
            ip: Gcra {
                limit: 7,
                period_ms: 100_000,
                burst: 8,
            },
            cost,
            fail: FailMode::Closed,
        };
        let class = if cost == 1 {
            RouteClass::Hold
        } else {
            RouteClass::Checkout
        };
        let mut tats = (None, None);
        // A deterministic, irregular sequence of arrival times.
        let (mut now, mut x) = (1_700_000_000_000i64, 12_345u64);
        let (mut allowed, mut refused) = (0, 0);
        for step in 0..400 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            now += ((x >> 33) % 16_000) as i64;
            let (keys, args) = gate_keys_args(class, &limit, &caller, now, &[]);
            let got = decode_gate_reply(&eval(&mut con, &GATE, &keys, &args), true)
                .unwrap()
                .0;
            let want = expected(&limit, &mut tats, now);
            assert_eq!(got, want, "cost {cost}, step {step}, now {now}");
            match got {
                GateVerdict::Checked { ip, user } if ip.allowed && user.unwrap().allowed => {
                    allowed += 1
                }
                _ => refused += 1,
            }
        }
        assert!(
            allowed > 50 && refused > 50,
            "the sequence exercises both outcomes: {allowed}/{refused}"
        );
    }
    cleanup(&mut con, &format!("rl:*{id}"));
}

#[test]
fn the_gate_script_checks_the_deny_set_and_reads_context_keys() {
    let mut con = redis();
    let id = unique();
    let (ip, user) = (format!("ip-{id}"), format!("user-{id}"));
    let caller = Caller {
        ip_bucket: &ip,
        user: Some(&user),
    };
    let limit = ClassLimit {
        user: Gcra {
            limit: 10,
            period_ms: 1_000,
            burst: 5,
        },
        ip: Gcra {
            limit: 10,
            period_ms: 1_000,
            burst: 5,
        },
        cost: 1,
        fail: FailMode::Open,
    };
    let deny = format!("test:{id}:deny");
    let ctx = format!("test:{id}:ctx");
    let _: () = redis::cmd("SET")
        .arg(&ctx)
        .arg("41")
        .query(&mut con)
        .unwrap();
    let run = |con: &mut redis::Connection| {
        let (mut keys, args) = gate_keys_args(
            RouteClass::Catalog,
            &limit,
            &caller,
            1_000,
            &[ctx.clone(), format!("test:{id}:none")],
        );
        keys[0] = deny.clone();
        decode_gate_reply(&eval(con, &GATE, &keys, &args), true).unwrap()
    };
    let (verdict, values) = run(&mut con);
    assert!(matches!(verdict, GateVerdict::Checked { .. }));
    assert_eq!(values, vec![Some("41".to_string()), None]);
    let _: () = redis::cmd("SADD")
        .arg(&deny)
        .arg(format!("user:{user}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(run(&mut con).0, GateVerdict::Denied(Who::User));
    let _: () = redis::cmd("SADD")
        .arg(&deny)
        .arg(format!("ip:{ip}"))
        .query(&mut con)
        .unwrap();
    assert_eq!(run(&mut con).0, GateVerdict::Denied(Who::Ip));
    cleanup(&mut con, &format!("test:{id}:*"));
    cleanup(&mut con, &format!("rl:*{id}"));
}

struct Room {
    sale: Sale,
    ip: String,
    /// Replaces the pass spacing argument (the negative control).
    spacing: Option<&'static str>,
}

const SEED: &str = "seed-for-the-test";

impl Room {
    /// A sale of `show` opening at `opens` (passes valid 300 s).
    fn new(
        show: &str,
        opens: i64,
        rate_per_sec: f64,
        grace_s: u32,
        spacing: Option<&'static str>,
    ) -> Self {
        Room {
            sale: Sale {
                city: "mum".into(),
                config: SaleConfig {
                    sale: show.to_owned(),
                    opens_at_ms: opens,
                    rate_per_sec,
                    pass_ttl_s: 300,
                    grace_s,
                },
            },
            ip: format!("ip-{show}"),
            spacing,
        }
    }

    fn call(
        &self,
        con: &mut redis::Connection,
        mode: Mode,
        user: &str,
        now: i64,
    ) -> (GateVerdict, Option<RoomReply>) {
        let limit = ClassLimit {
            user: Gcra {
                limit: 1_000,
                period_ms: 1_000,
                burst: 1_000,
            },
            ip: Gcra {
                limit: 1_000_000,
                period_ms: 1_000,
                burst: 1_000_000,
            },
            cost: 1,
            fail: FailMode::Closed,
        };
        let caller = Caller {
            ip_bucket: &self.ip,
            user: Some(user),
        };
        let sale = &self.sale.config.sale;
        let (mut keys, mut args) = gate_keys_args(RouteClass::Status, &limit, &caller, now, &[]);
        keys.extend(room_keys(sale));
        args.extend(room_args(
            mode,
            user,
            &self.sale,
            now,
            SEED,
            &pass_id(sale, user),
        ));
        if let Some(sp) = self.spacing {
            *args.last_mut().unwrap() = sp.to_owned();
        }
        decode_room_reply(&eval(con, &ROOM, &keys, &args)).unwrap()
    }

    fn reply(&self, con: &mut redis::Connection, mode: Mode, user: &str, now: i64) -> RoomReply {
        let (verdict, reply) = self.call(con, mode, user, now);
        assert!(
            matches!(verdict, GateVerdict::Checked { .. }),
            "{verdict:?}"
        );
        let reply = reply.unwrap();
        assert_eq!(
            reply.served,
            self.sale.config.served(now),
            "the script's counter is shared's served(now): completed passes add nothing"
        );
        reply
    }

    fn state(
        &self,
        con: &mut redis::Connection,
        mode: Mode,
        user: &str,
        now: i64,
    ) -> (State, Option<u64>) {
        let r = self.reply(con, mode, user, now);
        let v = status_view(&self.sale, user, &r, now, b"admission-key-for-the-test");
        (v.state, v.position)
    }

    fn order(&self, con: &mut redis::Connection) -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg(&room_keys(&self.sale.config.sale)[0])
            .arg(0)
            .arg(-1)
            .query(con)
            .unwrap()
    }
}

#[test]
fn the_room_script_draws_admits_drops_and_gives_places_back() {
    let mut con = redis();
    let show = unique();
    let opens = 1_000_000;
    let room = Room::new(&show, opens, 0.1, 30, None);
    let users: Vec<String> = (0..10).map(|i| format!("u{i}-{show}")).collect();

    // Before opening: a pre-queue; a second join keeps the place.
    for u in &users {
        assert_eq!(
            room.state(&mut con, Mode::Join, u, 900_000),
            (State::PreQueue, None)
        );
    }
    assert_eq!(
        room.state(&mut con, Mode::Join, &users[3], 950_000).0,
        State::PreQueue
    );
    let r = room.reply(&mut con, Mode::Status, &users[0], 960_000);
    assert_eq!(
        r.seed.as_deref(),
        Some(SEED),
        "the first join's seed is kept"
    );
    assert_eq!(room.order(&mut con).len(), 10);
    // Nothing of a sale lives forever: every key the room wrote expires
    // (KEEP_AFTER_MS after the sale's opening and the pass lifetime).
    for k in room_keys(&show) {
        let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut con).unwrap();
        assert!(pttl == -2 || pttl > 0, "{k} has no expiry (PTTL {pttl})");
    }
    assert_eq!(
        room.state(&mut con, Mode::Status, &format!("nobody-{show}"), 960_000)
            .0,
        State::NotJoined
    );

    // Opening: the first call draws the order from the seed, as shared's
    // prequeue_score says.
    room.reply(&mut con, Mode::Status, &users[0], opens);
    let mut want = users.clone();
    want.sort_by_key(|u| (prequeue_score(SEED, u), u.clone()));
    assert_eq!(room.order(&mut con), want, "the drawn order");
    let drawn = want;

    // After opening, joins go to the back in arrival order.
    let late = format!("late-{show}");
    assert_eq!(
        room.state(&mut con, Mode::Join, &late, opens + 5_000),
        (State::Waiting, Some(11))
    );

    // Admission by the counter: served(opens) = 1.
    let (s, p) = room.state(&mut con, Mode::Status, &drawn[0], opens);
    assert_eq!((s, p), (State::Admitted, Some(1)));
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[1], opens).0,
        State::Waiting
    );
    let first = room
        .reply(&mut con, Mode::Status, &drawn[0], opens + 1_000)
        .pass
        .unwrap();
    assert_eq!(first.pos, 1);
    // At opens + 20 s, served = 3: drawn[1] and drawn[2] are admitted, in
    // order. Passes are 10 s apart at 0.1/s: drawn[1]'s is issued now,
    // drawn[2]'s is ready at opens + 30 s.
    for (i, u) in drawn.iter().enumerate().skip(1).take(6) {
        let want = match i {
            1 => State::Admitted,
            2 => State::Ready,
            _ => State::Waiting,
        };
        assert_eq!(
            room.state(&mut con, Mode::Status, u, opens + 20_000),
            (want, Some(i as u64 + 1))
        );
    }
    let third = room.reply(&mut con, Mode::Status, &drawn[2], opens + 29_999);
    assert_eq!(third.pass.as_ref().map(|p| p.iat_ms), Some(opens + 30_000));
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[2], opens + 30_000),
        (State::Admitted, Some(3))
    );
    assert_eq!(
        room.reply(&mut con, Mode::Status, &drawn[0], opens + 30_000)
            .pass
            .unwrap(),
        first,
        "the pass record is kept"
    );

    // Dropouts: at opens + 40 s (grace 30 s), drawn[7..10] and the late
    // joiner have not polled since before opens + 10 s and are waiting:
    // they lose their places; drawn[0] is admitted and keeps it.
    let (s, p) = room.state(&mut con, Mode::Status, &drawn[1], opens + 40_000);
    assert_eq!((s, p), (State::Admitted, Some(2)));
    assert_eq!(room.order(&mut con), drawn[..7].to_vec());
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[8], opens + 40_000)
            .0,
        State::Dropped
    );
    assert_eq!(
        room.state(&mut con, Mode::Status, &late, opens + 40_000).0,
        State::Dropped
    );
    // Joining again queues at the back.
    assert_eq!(
        room.state(&mut con, Mode::Join, &drawn[8], opens + 41_000),
        (State::Waiting, Some(8))
    );

    // served(opens + 40 s) = 5: drawn[5] waits; a completed pass is
    // recorded (once) but admits nobody extra: the rate is a cap.
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[5], opens + 41_000)
            .0,
        State::Waiting
    );
    let (keys, args) = completion(&first.pid).unwrap();
    assert_eq!(eval(&mut con, &COMPLETE, &keys, &args), Reply::Int(1));
    assert_eq!(
        eval(&mut con, &COMPLETE, &keys, &args),
        Reply::Int(-1),
        "once per pass"
    );
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[5], opens + 41_000)
            .0,
        State::Waiting
    );

    // A lapsed pass: the status says so; joining again queues at the back.
    let lapse = opens + 300_000;
    assert_eq!(
        room.state(&mut con, Mode::Status, &drawn[0], lapse).0,
        State::Expired
    );
    let (s, p) = room.state(&mut con, Mode::Join, &drawn[0], lapse);
    assert_eq!(
        s,
        State::Admitted,
        "the counter has long passed the back of this short queue"
    );
    assert_eq!(p, Some(8));

    // The gate runs first: a denied user gets no room answer.
    let deny = functions::rate_limit::DENY_SET;
    let member = format!("user:{}", drawn[2]);
    let _: () = redis::cmd("SADD")
        .arg(deny)
        .arg(&member)
        .query(&mut con)
        .unwrap();
    let (verdict, reply) = room.call(&mut con, Mode::Status, &drawn[2], lapse);
    let _: () = redis::cmd("SREM")
        .arg(deny)
        .arg(&member)
        .query(&mut con)
        .unwrap();
    assert_eq!(verdict, GateVerdict::Denied(Who::User));
    assert!(reply.is_none());

    cleanup(&mut con, &format!("wr:{{{show}}}:*"));
    cleanup(&mut con, &format!("rl:*{show}"));
}

/// Issue instants of every pass recorded for a sale, sorted.
fn issue_instants(con: &mut redis::Connection, sale: &str) -> Vec<i64> {
    let passes: Vec<String> = redis::cmd("HVALS")
        .arg(&room_keys(sale)[7])
        .query(con)
        .unwrap();
    let mut at: Vec<i64> = passes
        .iter()
        .map(|p| {
            functions::waiting_room::PassRecord::parse(p)
                .unwrap()
                .iat_ms
        })
        .collect();
    at.sort_unstable();
    at
}

/// 1,500 users whose turns came while they were away all poll within one
/// second (100/s sale): the passes' issue instants stay 10 ms apart, in
/// the order the users asked, so no 10 s holds more than the rate; the
/// late ones are told `ready` with the wait. With the spacing set to 0
/// (the old behaviour) the same polls put all 1,500 in one second.
#[test]
fn passes_collected_in_a_burst_are_issued_at_the_rate() {
    let mut con = redis();
    for (spacing, control) in [(None, false), (Some("0"), true)] {
        let show = unique();
        let opens = 1_000_000;
        let room = Room::new(&show, opens, 100.0, 600, spacing);
        let users: Vec<String> = (0..1_500).map(|i| format!("u{i}-{show}")).collect();
        for (i, u) in users.iter().enumerate() {
            room.reply(&mut con, Mode::Join, u, opens + i as i64);
        }
        // At opens + 20 s the counter (2,001) has passed everyone.
        let at = opens + 20_000;
        let mut ready = 0;
        for (i, u) in users.iter().enumerate() {
            let now = at + (i as i64) * 1_000 / 1_500;
            let r = room.reply(&mut con, Mode::Status, u, now);
            let v = status_view(&room.sale, u, &r, now, b"k");
            if v.state == State::Ready {
                ready += 1;
                assert!(v.pass.is_none() && v.pass_in_ms.unwrap() > 0);
            } else {
                assert_eq!(v.state, State::Admitted, "{i}");
            }
        }
        let issued = issue_instants(&mut con, &show);
        assert_eq!(issued.len(), 1_500);
        let worst = shared::waiting_room::worst_window(&issued, 10_000);
        if control {
            assert_eq!(ready, 0);
            // All but the first (admitted as it joined, at opening).
            assert_eq!(worst, 1_499, "the control bunches");
        } else {
            assert!(worst <= 1_001, "{worst} passes in 10 s at 100/s");
            assert!(ready > 1_000, "most are told to come back: {ready}");
            let gaps = issued.windows(2).map(|w| w[1] - w[0]);
            assert!(gaps.clone().all(|g| g >= 10), "10 ms apart");
            // The chain runs ahead of the polls by the bunch only.
            assert!(issued[1_499] <= at + 15_000, "{}", issued[1_499] - at);
        }
        cleanup(&mut con, &format!("wr:{{{show}}}:*"));
        cleanup(&mut con, &format!("rl:*{show}"));
    }
}

#[test]
fn a_refused_gate_reply_decodes_without_a_room_part() {
    let r = Reply::Array(vec![Reply::Array(vec![Reply::Int(-1), Reply::Int(1)])]);
    assert_eq!(
        decode_gate(&r.array().unwrap()[0], true).unwrap(),
        GateVerdict::Denied(Who::Ip)
    );
}

//! The gateway over real HTTP on 127.0.0.1 port 0, in front of real Redis:
//! the shared one in `TEST_REDIS_URL` (default 127.0.0.1:6379) with keys
//! under a prefix unique to each test and deleted when it ends, or a
//! private `redis-server` on a Unix socket for the tests that kill Redis.

use redis::Commands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use upstash_gateway::{GatewayConfig, RunningGateway};

const TOKEN: &str = "test-token";
const UNSUPPORTED: &str = "ERR command not supported by the REST gateway";

fn shared_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn spawn_gateway(redis_url: String) -> RunningGateway {
    upstash_gateway::spawn(GatewayConfig {
        listen: "127.0.0.1:0".into(),
        redis_url,
        token: TOKEN.into(),
    })
    .await
    .expect("gateway starts")
}

/// Deletes every key under `prefix` when dropped, even if the test failed.
struct Keys {
    redis_url: String,
    prefix: String,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(mut con) =
            redis::Client::open(self.redis_url.as_str()).and_then(|client| client.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = match con.scan_match(format!("{}*", self.prefix)) {
            Ok(keys) => keys.collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
        }
    }
}

/// A gateway on the shared Redis, an HTTP client, and this test's keys.
struct Gateway {
    gateway: RunningGateway,
    http: reqwest::Client,
    keys: Keys,
}

/// Status and JSON body of one answer.
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    /// The `result` of a 200 answer.
    fn result(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        &self.body["result"]
    }

    /// The `error` text of an error answer with `status`.
    fn error(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{:?}", self.body);
        self.body["error"].as_str().expect("an error text")
    }
}

async fn start() -> Gateway {
    let redis_url = shared_redis_url();
    Gateway {
        gateway: spawn_gateway(redis_url.clone()).await,
        http: reqwest::Client::new(),
        keys: Keys {
            redis_url,
            prefix: format!("test:upstash-gateway:{}:", uuid::Uuid::new_v4()),
        },
    }
}

impl Gateway {
    /// A key of this test.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.keys.prefix)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(TOKEN)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(TOKEN)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Resp {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let body = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body:?}"));
        Resp { status, body }
    }

    /// `POST /` with one JSON command.
    async fn command(&self, command: Value) -> Resp {
        self.send(self.post("/").json(&command)).await
    }

    async fn pipeline(&self, commands: Value) -> Resp {
        self.send(self.post("/pipeline").json(&commands)).await
    }

    async fn multi_exec(&self, commands: Value) -> Resp {
        self.send(self.post("/multi-exec").json(&commands)).await
    }
}

#[tokio::test]
async fn single_command_round_trip() {
    let gw = start().await;
    let k = gw.key("greeting");
    let set = gw.command(json!(["SET", k, "hello", "EX", 100])).await;
    assert_eq!(set.result(), &json!("OK"));
    assert_eq!(
        gw.command(json!(["GET", k])).await.result(),
        &json!("hello")
    );
    let ttl = gw.command(json!(["TTL", k])).await;
    assert!(
        (1..=100).contains(&ttl.result().as_i64().unwrap()),
        "{ttl:?}"
    );
    // Numbers and booleans travel in their text form.
    let n = gw.key("n");
    gw.command(json!(["SET", n, 41])).await.result();
    assert_eq!(
        gw.command(json!(["INCRBY", n, 1])).await.result(),
        &json!(42)
    );
    gw.command(json!(["SET", n, true])).await.result();
    assert_eq!(gw.command(json!(["GET", n])).await.result(), &json!("true"));
}

#[tokio::test]
async fn redis_error_replies_are_400_with_the_redis_text() {
    let gw = start().await;
    let k = gw.key("text");
    gw.command(json!(["SET", k, "abc"])).await.result();
    let incr = gw.command(json!(["INCR", k])).await;
    assert_eq!(
        incr.error(StatusCode::BAD_REQUEST),
        "ERR value is not an integer or out of range"
    );
    let wrongtype = gw.command(json!(["LPUSH", k, "x"])).await;
    assert!(wrongtype
        .error(StatusCode::BAD_REQUEST)
        .starts_with("WRONGTYPE "));
    let unknown = gw.command(json!(["NOSUCHCOMMAND", k])).await;
    assert!(unknown
        .error(StatusCode::BAD_REQUEST)
        .starts_with("ERR unknown command"));
}

#[tokio::test]
async fn path_style_commands() {
    let gw = start().await;
    let k = gw.key("path");
    // Segments are URL-decoded one by one: %2F stays inside its argument.
    let set = gw
        .send(gw.get(&format!("/set/{k}%2Fa/hello%20world/ex/100")))
        .await;
    assert_eq!(set.result(), &json!("OK"));
    let get = gw.send(gw.get(&format!("/get/{k}%2Fa"))).await;
    assert_eq!(get.result(), &json!("hello world"));
    let ttl = gw.send(gw.get(&format!("/TTL/{k}%2Fa"))).await;
    assert!(ttl.result().as_i64().unwrap() > 0);

    // A POST body is the last argument, byte for byte; query parameters
    // follow it, and `_token` authenticates instead of a header.
    let value = r#"{"seats": ["A1", "A2"], "note": "a/b c"}"#;
    let set = gw
        .send(
            gw.http
                .post(gw.url(&format!("/set/{k}?EX=100&_token={TOKEN}")))
                .body(value),
        )
        .await;
    assert_eq!(set.result(), &json!("OK"));
    assert_eq!(gw.command(json!(["GET", k])).await.result(), &json!(value));
    assert!(
        gw.command(json!(["TTL", k]))
            .await
            .result()
            .as_i64()
            .unwrap()
            > 0
    );

    // Bytes that are not UTF-8 come back base64-encoded.
    let bin = gw.key("bin");
    gw.send(
        gw.post(&format!("/set/{bin}"))
            .body(vec![0xff_u8, 0x00, 0x61]),
    )
    .await
    .result();
    assert_eq!(
        gw.send(gw.get(&format!("/get/{bin}"))).await.result(),
        &json!("/wBh")
    );
}

#[tokio::test]
async fn nil_integer_array_and_nested_replies() {
    let gw = start().await;
    let (list, hash, stream) = (gw.key("list"), gw.key("hash"), gw.key("stream"));
    assert_eq!(
        gw.command(json!(["GET", gw.key("missing")])).await.result(),
        &Value::Null
    );
    assert_eq!(
        gw.command(json!(["RPUSH", list, "a", "b", "c"]))
            .await
            .result(),
        &json!(3)
    );
    assert_eq!(
        gw.command(json!(["LRANGE", list, 0, -1])).await.result(),
        &json!(["a", "b", "c"])
    );
    assert_eq!(
        gw.command(json!(["MGET", list, gw.key("missing")]))
            .await
            .result(),
        &json!([null, null]),
        "a list read as a string is nil in MGET"
    );
    gw.command(json!(["HSET", hash, "f", "v"])).await.result();
    assert_eq!(
        gw.command(json!(["HGETALL", hash])).await.result(),
        &json!(["f", "v"])
    );
    gw.command(json!(["XADD", stream, "1-1", "seat", "A1"]))
        .await
        .result();
    assert_eq!(
        gw.command(json!(["XRANGE", stream, "-", "+"]))
            .await
            .result(),
        &json!([["1-1", ["seat", "A1"]]])
    );
    let nested = gw
        .command(json!(["EVAL", "return {1, {'a', {2, false}}, 'z'}", 0]))
        .await;
    // Redis turns a Lua false into a nil reply, here nested two deep.
    assert_eq!(nested.result(), &json!([1, ["a", [2, null]], "z"]));
}

#[tokio::test]
async fn pipeline_keeps_going_past_a_failing_entry() {
    let gw = start().await;
    let (a, l) = (gw.key("a"), gw.key("l"));
    let replies = gw
        .pipeline(json!([
            ["SET", a, "1"],
            ["INCR", a],
            ["LPUSH", a, "x"],
            ["BLPOP", l, 0],
            ["INCR", a],
            ["GET", a],
        ]))
        .await;
    assert_eq!(replies.status, StatusCode::OK, "{replies:?}");
    let entries = replies.body.as_array().unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[0], json!({"result": "OK"}));
    assert_eq!(entries[1], json!({"result": 2}));
    assert!(entries[2]["error"]
        .as_str()
        .unwrap()
        .starts_with("WRONGTYPE "));
    assert_eq!(entries[3], json!({"error": UNSUPPORTED}));
    assert_eq!(entries[4], json!({"result": 3}));
    assert_eq!(entries[5], json!({"result": "3"}));
}

#[tokio::test]
async fn multi_exec_runs_all_or_nothing() {
    let gw = start().await;
    let (a, s, b) = (gw.key("a"), gw.key("s"), gw.key("b"));
    let ok = gw
        .multi_exec(json!([["SET", a, "1"], ["INCR", a], ["GET", a]]))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(
        ok.body,
        json!([{"result": "OK"}, {"result": 2}, {"result": "2"}])
    );

    // A runtime error is that entry's error; the others still apply
    // (Redis transactions do not roll back).
    gw.command(json!(["SET", s, "text"])).await.result();
    let partial = gw.multi_exec(json!([["INCR", s], ["SET", b, "ran"]])).await;
    assert_eq!(partial.status, StatusCode::OK, "{partial:?}");
    assert_eq!(
        partial.body[0]["error"],
        json!("ERR value is not an integer or out of range")
    );
    assert_eq!(partial.body[1], json!({"result": "OK"}));

    // A command that cannot be queued discards the whole transaction.
    let c = gw.key("c");
    let aborted = gw
        .multi_exec(json!([["SET", c, "1"], ["SET", b], ["INCR", a]]))
        .await;
    let error = aborted.error(StatusCode::BAD_REQUEST);
    assert!(error.starts_with("EXECABORT "), "{error}");
    assert!(error.contains("Command 1 (SET)"), "{error}");
    assert_eq!(gw.command(json!(["EXISTS", c])).await.result(), &json!(0));
    assert_eq!(gw.command(json!(["GET", a])).await.result(), &json!("2"));

    // So does a refused command, before anything is sent.
    let refused = gw
        .multi_exec(json!([["SET", c, "1"], ["SUBSCRIBE", "ch"]]))
        .await;
    assert_eq!(refused.error(StatusCode::BAD_REQUEST), UNSUPPORTED);
    assert_eq!(gw.command(json!(["EXISTS", c])).await.result(), &json!(0));

    // The shared connection is not left inside MULTI: this runs at once
    // instead of answering QUEUED.
    assert_eq!(gw.command(json!(["INCR", a])).await.result(), &json!(3));
}

#[tokio::test]
async fn eval_can_read_time_and_hash_with_sha1hex() {
    let gw = start().await;
    let k = gw.key("stamped");
    // Reads the clock, then writes: allowed since Redis 5 replicates
    // script effects, and what the Worker's rate limiter does.
    let script = "local t = redis.call('TIME') \
                  redis.call('SET', KEYS[1], t[1], 'EX', 60) \
                  return {tonumber(t[1]), tonumber(t[2]), redis.sha1hex(ARGV[1])}";
    let reply = gw.command(json!(["EVAL", script, 1, k, "abc"])).await;
    let result = reply.result().as_array().unwrap().clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let seconds = result[0].as_i64().unwrap();
    assert!((seconds - now).abs() < 60, "TIME {seconds} vs now {now}");
    assert!((0..1_000_000).contains(&result[1].as_i64().unwrap()));
    assert_eq!(result[2], json!("a9993e364706816aba3e25717850c26c9cd0d89d"));
    assert_eq!(
        gw.command(json!(["GET", k])).await.result(),
        &json!(seconds.to_string())
    );
}

#[tokio::test]
async fn evalsha_after_script_load() {
    let gw = start().await;
    let k = gw.key("counter");
    let script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let load = gw.command(json!(["SCRIPT", "LOAD", script])).await;
    let sha = load.result().as_str().unwrap().to_string();
    let expected = gw
        .command(json!(["EVAL", "return redis.sha1hex(ARGV[1])", 0, script]))
        .await;
    assert_eq!(expected.result(), &json!(sha));
    assert_eq!(
        gw.command(json!(["EVALSHA", sha, 1, k, 5])).await.result(),
        &json!(5)
    );
    assert_eq!(
        gw.command(json!(["EVALSHA", sha, 1, k, 5])).await.result(),
        &json!(10)
    );
    let exists = gw.command(json!(["SCRIPT", "EXISTS", sha])).await;
    assert_eq!(exists.result(), &json!([1]));
    let missing = gw
        .command(json!(["EVALSHA", "0".repeat(40), 1, k, 5]))
        .await;
    assert!(missing
        .error(StatusCode::BAD_REQUEST)
        .starts_with("NOSCRIPT "));
}

#[tokio::test]
async fn base64_encoding_header() {
    let gw = start().await;
    let (k, l) = (gw.key("b64"), gw.key("b64list"));
    let base64 = |request: reqwest::RequestBuilder| request.header("Upstash-Encoding", "base64");
    let set = gw
        .send(base64(gw.post("/")).json(&json!(["SET", k, "hello"])))
        .await;
    // The one exception Upstash documents: the status reply OK.
    assert_eq!(set.result(), &json!("OK"));
    let get = gw.send(base64(gw.post("/")).json(&json!(["GET", k]))).await;
    assert_eq!(get.result(), &json!("aGVsbG8="));
    let ping = gw.send(base64(gw.get("/ping"))).await;
    assert_eq!(ping.result(), &json!("UE9ORw=="));
    let pipeline = gw
        .send(base64(gw.post("/pipeline")).json(&json!([
            ["RPUSH", l, "a", "OK"],
            ["LRANGE", l, 0, -1],
            ["GET", gw.key("missing")],
            ["INCR", k],
        ])))
        .await;
    assert_eq!(pipeline.status, StatusCode::OK);
    assert_eq!(
        pipeline.body,
        json!([
            {"result": 2},
            {"result": ["YQ==", "T0s="]},
            {"result": null},
            {"error": "ERR value is not an integer or out of range"},
        ])
    );
}

#[tokio::test]
async fn requests_without_the_token_are_401() {
    let gw = start().await;
    let cases = [
        gw.http.post(gw.url("/")).json(&json!(["PING"])),
        gw.http
            .post(gw.url("/"))
            .bearer_auth("wrong")
            .json(&json!(["PING"])),
        gw.http
            .post(gw.url("/pipeline"))
            .header("Authorization", TOKEN)
            .json(&json!([["PING"]])),
        gw.http.get(gw.url("/ping?_token=wrong")),
        gw.http.get(gw.url("/no/such/thing")),
    ];
    for request in cases {
        let resp = gw.send(request).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{resp:?}");
        assert_eq!(resp.body, json!({"error": "Unauthorized"}));
    }
    let ok = gw
        .send(gw.http.get(gw.url(&format!("/ping?_token={TOKEN}"))))
        .await;
    assert_eq!(ok.result(), &json!("PONG"));
}

#[tokio::test]
async fn malformed_requests_are_400_json() {
    let gw = start().await;
    let cases = [
        ("/", "[\"GET\", "),
        ("/", "{\"command\": \"GET\"}"),
        ("/", "[]"),
        ("/", "[\"SET\", \"k\", null]"),
        ("/pipeline", "[]"),
        ("/pipeline", "[[\"PING\"], \"PING\"]"),
        ("/multi-exec", "not json"),
    ];
    for (path, body) in cases {
        let resp = gw.send(gw.post(path).body(body)).await;
        let error = resp.error(StatusCode::BAD_REQUEST);
        assert!(error.starts_with("ERR "), "{path} {body}: {error}");
    }
    let wrong_method = gw.send(gw.get("/pipeline")).await;
    wrong_method.error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bodies_over_one_mib_are_413() {
    let gw = start().await;
    let big = "x".repeat(1024 * 1024);
    let resp = gw.command(json!(["SET", gw.key("big"), big])).await;
    let error = resp.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error.contains("1048576"), "{error}");
    assert_eq!(
        gw.command(json!(["EXISTS", gw.key("big")])).await.result(),
        &json!(0)
    );
}

#[tokio::test]
async fn blocking_and_stateful_commands_are_refused() {
    let gw = start().await;
    let (l, s) = (gw.key("l"), gw.key("s"));
    for command in [
        json!(["BLPOP", l, 0]),
        json!(["brpop", l, 1]),
        json!(["XREAD", "BLOCK", 0, "STREAMS", s, "$"]),
        json!(["SUBSCRIBE", "channel"]),
        json!(["MONITOR"]),
        json!(["SELECT", 1]),
        json!(["MULTI"]),
        json!(["CLIENT", "REPLY", "OFF"]),
        json!(["SHUTDOWN", "NOSAVE"]),
    ] {
        let resp = gw.command(command.clone()).await;
        assert_eq!(
            resp.error(StatusCode::BAD_REQUEST),
            UNSUPPORTED,
            "{command}"
        );
    }
    let path = gw.send(gw.get(&format!("/blpop/{l}/0"))).await;
    assert_eq!(path.error(StatusCode::BAD_REQUEST), UNSUPPORTED);
    assert_eq!(gw.gateway.commands_served(), 0, "nothing reached Redis");
    // Non-blocking forms of the same families still work.
    assert_eq!(
        gw.command(json!(["XREAD", "COUNT", 1, "STREAMS", s, "0"]))
            .await
            .result(),
        &Value::Null
    );
    assert_eq!(
        gw.command(json!(["PUBLISH", "channel", "hi"]))
            .await
            .result(),
        &json!(0)
    );
}

#[tokio::test]
async fn counters_measure_round_trips_and_commands() {
    let gw = start().await;
    let k = gw.key("k");
    assert_eq!(
        (gw.gateway.requests_served(), gw.gateway.commands_served()),
        (0, 0)
    );
    gw.command(json!(["SET", k, "1"])).await.result();
    gw.pipeline(json!([["INCR", k], ["INCR", k], ["BLPOP", k, 0]]))
        .await;
    gw.multi_exec(json!([["INCR", k], ["GET", k]])).await;
    // An error reply is still a command Redis answered.
    gw.command(json!(["LPUSH", k, "x"])).await;
    // Refused, malformed and unauthenticated requests reach no Redis.
    gw.command(json!(["BLPOP", k, 0])).await;
    gw.send(gw.post("/").body("nope")).await;
    gw.send(gw.http.post(gw.url("/")).json(&json!(["PING"])))
        .await;
    assert_eq!(gw.gateway.requests_served(), 6, "the 401 is not counted");
    assert_eq!(gw.gateway.commands_served(), 1 + 2 + 2 + 1);
}

#[tokio::test]
async fn redis_down_is_503_and_the_gateway_still_starts() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = spawn_gateway(format!("redis://127.0.0.1:{closed_port}")).await;
    let http = reqwest::Client::new();
    for (path, body) in [("/", json!(["PING"])), ("/pipeline", json!([["PING"]]))] {
        let resp = http
            .post(format!("{}{path}", gateway.url()))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({"error": "Redis is unavailable"}));
    }
    gateway.stop().await;
}

/// A private redis-server on a Unix socket (no port to race for), for
/// the test that kills Redis: the shared one is never touched.
struct PrivateRedis {
    socket: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let socket = std::env::temp_dir().join(format!("ugw-{}.sock", uuid::Uuid::new_v4()));
        let mut redis = Self {
            socket,
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Starts it and returns once its log says it accepts connections.
    fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready) = mpsc::channel();
        // Drains the log for the server's whole life, so it never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections")
                {
                    let _ = ready_tx.send(());
                }
            }
        });
        self.child = Some(child);
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("redis-server became ready");
    }

    /// SIGKILL: connections drop with no goodbye.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[tokio::test]
async fn reconnects_after_redis_restarts() {
    let mut redis = PrivateRedis::start();
    let gateway = spawn_gateway(redis.url()).await;
    let (http, url) = (reqwest::Client::new(), gateway.url());
    let incr = || {
        http.post(url.as_str())
            .bearer_auth(TOKEN)
            .json(&json!(["INCR", "restarts"]))
            .send()
    };
    assert_eq!(incr().await.unwrap().status(), StatusCode::OK);

    redis.kill();
    let down = incr().await.unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.restart();
    // The first requests may still meet the dead connection and trigger
    // the reconnect; a handful of attempts must get through.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = incr().await.unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::OK {
            // A fresh, empty Redis: the counter starts again.
            assert_eq!(resp.json::<Value>().await.unwrap(), json!({"result": 1}));
            gateway.stop().await;
            return;
        }
    }
    panic!("never reconnected: {statuses:?}");
}

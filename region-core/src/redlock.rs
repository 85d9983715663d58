//! Redlock (opt-in, `REGION_REDLOCK_URLS`): the seat locks over 3 or 5
//! independent Redis servers instead of the shard's one Redis. Every lock
//! call runs on every server at once, each bounded by the timeout, and
//! counts the answers (docs/adr/0017-redis-sentinel-and-lost-locks.md):
//!
//! - a hold is granted only if a majority (N/2 + 1) took all its seats,
//!   and did so within the lock's validity (TTL minus the clock drift
//!   allowance, `ttl/100 + 2 ms`); otherwise its keys are released on
//!   every server and the seats are reported taken (a majority answered)
//!   or Redis is reported down (no majority answered, which feeds the
//!   breaker and moves the shard to the Postgres-only path);
//! - release and re-assertion go to every server; extension and
//!   re-assertion count only with a majority;
//! - a server that restarted empty (or was flushed) is not trusted to
//!   grant until every lock it forgot has expired (the Redis
//!   documentation's "delayed restart", done by the clients: see
//!   [`Memory`]), or until a full re-assertion from Postgres has given it
//!   back every live hold.
//!
//! Written here rather than taken from a crate: the Redlock crates lock
//! one resource under a random value of their own, while a hold takes
//! all its seats or none (one Lua script per server), its value is the
//! hold id Postgres fences with, and the hold path must tell "taken"
//! from "unreachable". The counting is a pure function ([`tally`]) with
//! unit tests below; the I/O is the fan-out around it.

use futures::future::join_all;
use redis::aio::ConnectionManager;
use redis::Script;
use shared::redis_scripts::{ACQUIRE_LUA, ASSERT_LUA, EXTEND_LUA, RELEASE_LUA};
use std::future::Future;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why one server gave no answer (logged and counted, then folded into
/// the quorum count).
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("timed out")]
    Timeout,
    #[error("not tried: failed less than {DOWN_FOR:?} ago")]
    Skipped,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// How long a server that failed is left out of lock calls (it counts as
/// not answering) before it is tried again. Without this, every hold
/// would wait the full timeout on a dead server while the other two
/// answer in a millisecond.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// The key naming a lock server's memory: a random id set by the first
/// client to see the server, so a server that comes back without its keys
/// (restarted without persistence, flushed, replaced) comes back with
/// another id. A full re-assertion from Postgres writes an id starting
/// with [`REASSERTED`]: that server's memory is complete again.
pub const MEMORY_KEY: &str = "redlock:memory";

/// The prefix of a memory id written by a full re-assertion.
pub const REASSERTED: &str = "reasserted:";

/// Sets the memory id if the server has none, and returns it.
const MEMORY_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

/// What a client knows of one server's memory. A server whose id changed
/// under the client has forgotten locks: its grants do not count until
/// the longest lock could have expired (the recovery window), or until
/// its id says a full re-assertion refilled it. A client meeting a
/// server for the first time cannot tell (this is the gap that remains:
/// a replica started while a server is recovering trusts it; Postgres'
/// second line still refuses the double hold, docs/adr/0017).
#[derive(Debug, Default)]
struct Memory {
    /// The id last seen; `None` before the first look.
    seen: Option<String>,
    /// Grants count from then on; `None`: trusted.
    untrusted_until: Option<Instant>,
    /// Whether the current connection has looked.
    looked: bool,
}

/// Which servers a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Hold-path calls: not the servers that failed less than
    /// [`DOWN_FOR`] ago.
    Up,
    /// Probes and re-assertion: every server.
    Every,
}

/// One of the independent servers.
struct Server {
    /// Its address, for logs and metrics (no credentials: host and port).
    addr: String,
    client: redis::Client,
    /// Until when it is left out (`Reach::Up`) after a failure. std
    /// Mutex: never held across an `.await`.
    down_until: Mutex<Option<Instant>>,
    // std RwLock: only held to clone or replace the handle, never across
    // an `.await`.
    conn: RwLock<Option<ConnectionManager>>,
    /// Its memory id as this client knows it (std Mutex, never held across
    /// an `.await`).
    memory: Mutex<Memory>,
}

/// The seat locks over independent Redis servers, with majority quorum.
pub struct Redlock {
    servers: Vec<Server>,
    quorum: usize,
    timeout: Duration,
    acquire: Script,
    release: Script,
    extend: Script,
    assert_hold: Script,
    memory: Script,
    /// How long a server that forgot its locks is not trusted to grant:
    /// the longest a lock can live.
    recovery_window: Duration,
}

/// The recovery window when none is set: longer than any hold here.
const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(30 * 60);

/// What a majority said to an acquisition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A majority took every seat, within the validity time.
    Granted,
    /// A majority answered but did not grant: the 0-based indexes of the
    /// seats some server refused.
    Taken(Vec<usize>),
    /// No majority answered, or the grants came after the validity time:
    /// the lock cannot be trusted, Redis counts as failed.
    NoQuorum(QuorumFailure),
}

/// Why a quorum was not reached (the `reason` label of
/// `redlock_quorum_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumFailure {
    /// Fewer than a majority of the servers answered.
    Unreachable,
    /// A majority granted, but after the lock's validity had run out.
    Expired,
    /// A majority answered, but fewer than a majority agreed (extension
    /// refused by some, or a split).
    Refused,
}

impl QuorumFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QuorumFailure::Unreachable => "unreachable",
            QuorumFailure::Expired => "expired",
            QuorumFailure::Refused => "refused",
        }
    }
}

/// A lock call that did not reach its quorum (the hold path maps it to
/// a Redis failure, which feeds the breaker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redlock: {answered} of the servers answered, {needed} needed ({})", why.label())]
pub struct NoQuorum {
    /// Servers that answered.
    pub answered: usize,
    /// The quorum.
    pub needed: usize,
    /// Why it failed.
    pub why: QuorumFailure,
}

/// The clock drift allowed for a lock of `ttl`: 1 % plus 2 ms, as in the
/// Redis documentation's algorithm.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// The pure count behind an acquisition: `answers` holds each server's
/// reply (`None`: no answer; `Some(taken)`: the 1-based indexes it
/// refused, empty if it took every seat), `elapsed` how long the round
/// took.
pub fn tally(
    answers: &[Option<Vec<usize>>],
    quorum: usize,
    elapsed: Duration,
    ttl: Duration,
) -> Verdict {
    let answered = answers.iter().filter(|a| a.is_some()).count();
    let granted = answers
        .iter()
        .filter(|a| a.as_ref().is_some_and(Vec::is_empty))
        .count();
    if granted >= quorum {
        return if elapsed + drift(ttl) < ttl {
            Verdict::Granted
        } else {
            Verdict::NoQuorum(QuorumFailure::Expired)
        };
    }
    if answered < quorum {
        return Verdict::NoQuorum(QuorumFailure::Unreachable);
    }
    let mut taken: Vec<usize> = answers
        .iter()
        .flatten()
        .flatten()
        .map(|i| i.saturating_sub(1))
        .collect();
    taken.sort_unstable();
    taken.dedup();
    Verdict::Taken(taken)
}

impl Server {
    fn is_left_out(&self) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| Instant::now() < until)
    }

    fn answered(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Instant::now() + DOWN_FOR);
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = None;
        // The next connection may reach a restarted server: look again.
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).looked = false;
    }

    /// Whether this server's memory must be looked at before its grants
    /// count: not yet on this connection, or still untrusted (a full
    /// re-assertion may have refilled it since).
    fn must_look(&self) -> bool {
        let m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        !m.looked || m.untrusted_until.is_some()
    }

    /// Records the memory id just read; returns whether grants count.
    fn saw_memory(&self, id: &str, window: Duration) -> bool {
        let now = Instant::now();
        let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        m.looked = true;
        if m.seen.as_deref() != Some(id) {
            if id.starts_with(REASSERTED) {
                m.untrusted_until = None;
            } else if m.seen.is_some() {
                tracing::warn!(
                    server = %self.addr,
                    ?window,
                    "redlock server came back without its locks; its grants do not count until they could have expired"
                );
                metrics::counter!("redlock_server_amnesia_total", "server" => self.addr.clone())
                    .increment(1);
                m.untrusted_until = Some(now + window);
            }
            m.seen = Some(id.to_owned());
        }
        if m.untrusted_until.is_some_and(|until| now >= until) {
            m.untrusted_until = None;
        }
        m.untrusted_until.is_none()
    }
}

impl Redlock {
    /// The servers at `urls` (3 or 5), each call bounded by `timeout`.
    pub fn new(urls: &[String], timeout: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            urls.len() == 3 || urls.len() == 5,
            "REGION_REDLOCK_URLS must name 3 or 5 Redis servers, not {}",
            urls.len()
        );
        let servers = urls
            .iter()
            .map(|url| {
                let client = redis::Client::open(url.as_str())?;
                let addr = client.get_connection_info().addr.to_string();
                Ok(Server {
                    addr,
                    client,
                    down_until: Mutex::new(None),
                    conn: RwLock::new(None),
                    memory: Mutex::new(Memory::default()),
                })
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        Ok(Self {
            quorum: servers.len() / 2 + 1,
            servers,
            timeout,
            acquire: Script::new(ACQUIRE_LUA),
            release: Script::new(RELEASE_LUA),
            extend: Script::new(EXTEND_LUA),
            assert_hold: Script::new(ASSERT_LUA),
            memory: Script::new(MEMORY_LUA),
            recovery_window: DEFAULT_RECOVERY_WINDOW,
        })
    }

    /// Sets how long a server that forgot its locks is not trusted to
    /// grant: the longest a lock can live (a hold's TTL plus its
    /// extension). Zero is the negative control of the restart test.
    pub fn with_recovery_window(mut self, window: Duration) -> Self {
        self.recovery_window = window;
        self
    }

    /// Appends to a full re-assertion's pipeline the mark that each
    /// server it reaches now holds every live lock again.
    pub fn mark_reasserted(pipe: &mut redis::Pipeline) {
        pipe.cmd("SET")
            .arg(MEMORY_KEY)
            .arg(format!("{REASSERTED}{}", uuid::Uuid::new_v4()))
            .ignore();
    }

    /// Negative control ONLY (`REGION_UNSAFE_REDLOCK_QUORUM`): grants with
    /// fewer servers than a majority, so two clients that each reach a
    /// different minority both get the same seat.
    pub fn with_unsafe_quorum(mut self, quorum: usize) -> Self {
        tracing::error!(
            quorum,
            servers = self.servers.len(),
            "REDLOCK QUORUM IS NOT A MAJORITY (negative-control mode): seats can be locked twice"
        );
        self.quorum = quorum.max(1);
        self
    }

    /// How many servers must agree.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Never true (there are 3 or 5 servers); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    async fn connect(&self, server: &Server) -> Result<ConnectionManager, ServerError> {
        if let Some(c) = server
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            self.timeout,
            server.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| ServerError::Timeout)??;
        *server.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `op` on every server in `reach` at once, each bounded by the
    /// timeout; one answer per server, in order. A server that fails is
    /// left out of `Reach::Up` calls for [`DOWN_FOR`], and its connection
    /// is dropped (the next try connects afresh: a refused connection
    /// fails at once, where a reconnecting handle may wait out its
    /// back-off).
    async fn on_all<T, F, Fut>(&self, reach: Reach, op: F) -> Vec<Result<T, ServerError>>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.on_each(reach, |_, c| op(c)).await
    }

    /// [`Self::on_all`] with the server passed to `op` too.
    async fn on_each<'s, T, F, Fut>(&'s self, reach: Reach, op: F) -> Vec<Result<T, ServerError>>
    where
        F: Fn(&'s Server, ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let op = &op;
        join_all(self.servers.iter().map(|server| async move {
            if reach == Reach::Up && server.is_left_out() {
                return Err(ServerError::Skipped);
            }
            let res = match self.connect(server).await {
                Ok(conn) => match tokio::time::timeout(self.timeout, op(server, conn)).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(ServerError::Redis(e)),
                    Err(_) => Err(ServerError::Timeout),
                },
                Err(e) => Err(e),
            };
            match &res {
                Ok(_) => server.answered(),
                // A script error is a bug of ours, not an outage.
                Err(ServerError::Redis(e)) if e.kind() == redis::ErrorKind::ResponseError => {
                    tracing::warn!(server = %server.addr, error = %e, "redlock script failed");
                }
                Err(e) => {
                    tracing::debug!(server = %server.addr, error = %e, "redlock server failed");
                    metrics::counter!("redlock_server_failures_total", "server" => server.addr.clone())
                        .increment(1);
                    server.failed();
                }
            }
            res
        }))
        .await
    }

    fn no_quorum(&self, op: &'static str, why: QuorumFailure, answered: usize) -> NoQuorum {
        metrics::counter!("redlock_quorum_failures_total", "op" => op, "reason" => why.label())
            .increment(1);
        NoQuorum {
            answered,
            needed: self.quorum,
            why,
        }
    }

    /// Takes all `keys` for `value` (a hold id) on a majority, or none
    /// anywhere. `Ok(vec![])` means granted; otherwise the 0-based indexes
    /// of keys some server holds for another value.
    pub async fn acquire(
        &self,
        keys: &[String],
        value: &str,
        ttl: Duration,
    ) -> Result<Vec<usize>, NoQuorum> {
        let started = Instant::now();
        let px = ttl.as_millis().max(1) as u64;
        let answers = self
            .on_each(Reach::Up, |server, mut c| {
                let mut inv = self.acquire.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.arg(value).arg(px);
                let look = server.must_look().then(|| {
                    let mut m = self.memory.prepare_invoke();
                    m.key(MEMORY_KEY).arg(uuid::Uuid::new_v4().to_string());
                    m
                });
                async move {
                    let trusted = match look {
                        Some(m) => {
                            let id: String = m.invoke_async(&mut c).await?;
                            server.saw_memory(&id, self.recovery_window)
                        }
                        None => true,
                    };
                    // Its keys are set either way (they help it catch
                    // up); an untrusted server's grant just doesn't count.
                    let taken = inv.invoke_async::<Vec<usize>>(&mut c).await?;
                    Ok(trusted.then_some(taken))
                }
            })
            .await;
        let answers: Vec<Option<Vec<usize>>> =
            answers.into_iter().map(|a| a.ok().flatten()).collect();
        let answered = answers.iter().flatten().count();
        let verdict = tally(&answers, self.quorum, started.elapsed(), ttl);
        if verdict == Verdict::Granted {
            return Ok(Vec::new());
        }
        // Not ours: undo what any server took for us (compare-and-delete,
        // so a server that refused keeps the other hold's keys).
        let _ = self.release(keys, value).await;
        match verdict {
            Verdict::Granted => Ok(Vec::new()),
            Verdict::Taken(taken) => Ok(taken),
            Verdict::NoQuorum(why) => Err(self.no_quorum("acquire", why, answered)),
        }
    }

    /// Deletes, on every server, the `keys` whose value is still `value`.
    /// Returns the most any server deleted; fails only if no majority
    /// answered (the keys then lapse with their TTL).
    pub async fn release(&self, keys: &[String], value: &str) -> Result<u32, NoQuorum> {
        let answers = self
            .on_all(Reach::Up, |mut c| {
                let mut inv = self.release.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.arg(value);
                async move { inv.invoke_async::<u32>(&mut c).await }
            })
            .await;
        let deleted: Vec<u32> = answers.into_iter().flatten().collect();
        if deleted.len() < self.quorum {
            return Err(self.no_quorum("release", QuorumFailure::Unreachable, deleted.len()));
        }
        Ok(deleted.into_iter().max().unwrap_or(0))
    }

    /// Re-sets `keys` to `value` with a new TTL on every server.
    /// `Ok(true)` only if a majority extended; `Ok(false)` if a majority
    /// answered and some key belongs to another value.
    pub async fn extend(
        &self,
        keys: &[String],
        value: &str,
        ttl: Duration,
    ) -> Result<bool, NoQuorum> {
        let px = ttl.as_millis().max(1) as u64;
        let answers = self
            .on_all(Reach::Up, |mut c| {
                let mut inv = self.extend.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.arg(value).arg(px);
                async move { inv.invoke_async::<i32>(&mut c).await }
            })
            .await;
        let answered: Vec<i32> = answers.into_iter().flatten().collect();
        let extended = answered.iter().filter(|&&ok| ok == 1).count();
        if extended >= self.quorum {
            return Ok(true);
        }
        if answered.len() < self.quorum {
            return Err(self.no_quorum("extend", QuorumFailure::Unreachable, answered.len()));
        }
        self.no_quorum("extend", QuorumFailure::Refused, answered.len());
        Ok(false)
    }

    /// Sets `keys` to `value` on every server unconditionally (Postgres
    /// decided the owner); needs a majority to count.
    pub async fn assert_value(
        &self,
        keys: &[String],
        value: &str,
        ttl: Duration,
    ) -> Result<(), NoQuorum> {
        let px = ttl.as_millis().max(1) as u64;
        let answers = self
            .on_all(Reach::Up, |mut c| {
                let mut inv = self.assert_hold.prepare_invoke();
                for k in keys {
                    inv.key(k);
                }
                inv.arg(value).arg(px);
                async move { inv.invoke_async::<i32>(&mut c).await }
            })
            .await;
        self.majority("assert", answers).map(|_| ())
    }

    /// One command batch on every server (re-assertion: SET and DEL of
    /// seat keys, compare-and-delete by EVAL); needs a majority.
    pub async fn pipe_on_all(&self, pipe: &redis::Pipeline) -> Result<(), NoQuorum> {
        let answers = self
            .on_all(Reach::Every, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await;
        self.majority("reassert", answers).map(|_| ())
    }

    /// A PING on every server; Ok if a majority answered.
    pub async fn ping(&self) -> Result<(), NoQuorum> {
        let answers = self
            .on_all(Reach::Every, |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await;
        self.majority("ping", answers).map(|_| ())
    }

    /// The keys matching `pattern` on every server that answers (SCAN),
    /// merged; needs a majority.
    pub async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, NoQuorum> {
        let answers = self
            .on_all(Reach::Every, |mut c| async move {
                let mut cursor: u64 = 0;
                let mut keys = Vec::new();
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await?;
                    keys.extend(batch);
                    if next == 0 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            })
            .await;
        let mut keys: Vec<String> = self
            .majority("scan", answers)?
            .into_iter()
            .flatten()
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// What a majority of the servers holds in each of `keys` (an
    /// operator's consistency check): `Some(value)` when a majority holds
    /// that value, `None` when a majority holds no key, and a
    /// `no majority: …` description when they are split. Needs a majority
    /// to answer.
    pub async fn values(&self, keys: &[String]) -> Result<Vec<Option<String>>, NoQuorum> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self
            .on_all(Reach::Up, |mut c| async move {
                redis::cmd("MGET")
                    .arg(keys)
                    .query_async::<Vec<Option<String>>>(&mut c)
                    .await
            })
            .await;
        let answers = self.majority("read", answers)?;
        Ok((0..keys.len())
            .map(|i| {
                agreed(
                    answers.iter().map(|a| a.get(i).cloned().flatten()),
                    self.quorum,
                )
            })
            .collect())
    }

    /// The answers of the servers that answered, if they are a majority.
    fn majority<T>(
        &self,
        op: &'static str,
        answers: Vec<Result<T, ServerError>>,
    ) -> Result<Vec<T>, NoQuorum> {
        let ok: Vec<T> = answers.into_iter().flatten().collect();
        if ok.len() < self.quorum {
            return Err(self.no_quorum(op, QuorumFailure::Unreachable, ok.len()));
        }
        Ok(ok)
    }
}

/// The value at least `quorum` of `answers` agree on (`None`: no key),
/// or a description of the split.
fn agreed(answers: impl Iterator<Item = Option<String>>, quorum: usize) -> Option<String> {
    let mut seen: Vec<(Option<String>, usize)> = Vec::new();
    for a in answers {
        match seen.iter_mut().find(|(v, _)| *v == a) {
            Some((_, n)) => *n += 1,
            None => seen.push((a, 1)),
        }
    }
    if let Some((v, _)) = seen.iter().find(|(_, n)| *n >= quorum) {
        return v.clone();
    }
    let each: Vec<String> = seen
        .iter()
        .map(|(v, n)| format!("{} x{n}", v.as_deref().unwrap_or("(none)")))
        .collect();
    Some(format!("no majority: {}", each.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);
    const FAST: Duration = Duration::from_millis(5);

    fn yes() -> Option<Vec<usize>> {
        Some(vec![])
    }

    #[test]
    fn a_read_reports_the_majority_value_or_the_split() {
        let some = |s: &str| Some(s.to_owned());
        let agreed3 = |a: Vec<Option<String>>| agreed(a.into_iter(), 2);
        assert_eq!(agreed3(vec![some("h1"), some("h1"), None]), some("h1"));
        assert_eq!(agreed3(vec![None, None, some("h1")]), None);
        assert_eq!(
            agreed3(vec![some("h1"), some("h2"), None]),
            some("no majority: h1 x1, h2 x1, (none) x1")
        );
    }

    #[test]
    fn a_majority_of_grants_in_time_is_a_lock() {
        assert_eq!(tally(&[yes(), yes(), None], 2, FAST, TTL), Verdict::Granted);
        assert_eq!(
            tally(&[yes(), yes(), Some(vec![2])], 2, FAST, TTL),
            Verdict::Granted
        );
        assert_eq!(
            tally(&[yes(), yes(), yes(), None, None], 3, FAST, TTL),
            Verdict::Granted
        );
    }

    #[test]
    fn grants_after_the_validity_time_are_not() {
        // 10 s TTL: drift is 102 ms, so the grants must come within 9.898 s.
        assert_eq!(drift(TTL), Duration::from_millis(102));
        let late = TTL - Duration::from_millis(100);
        assert_eq!(
            tally(&[yes(), yes(), yes()], 2, late, TTL),
            Verdict::NoQuorum(QuorumFailure::Expired)
        );
        let in_time = TTL - Duration::from_millis(103);
        assert_eq!(
            tally(&[yes(), yes(), yes()], 2, in_time, TTL),
            Verdict::Granted
        );
    }

    #[test]
    fn a_minority_of_answers_is_an_outage_not_a_conflict() {
        assert_eq!(
            tally(&[yes(), None, None], 2, FAST, TTL),
            Verdict::NoQuorum(QuorumFailure::Unreachable)
        );
        assert_eq!(
            tally(&[Some(vec![1]), None, None], 2, FAST, TTL),
            Verdict::NoQuorum(QuorumFailure::Unreachable)
        );
        assert_eq!(
            tally(&[yes(), yes(), None, None, None], 3, FAST, TTL),
            Verdict::NoQuorum(QuorumFailure::Unreachable)
        );
    }

    #[test]
    fn a_majority_that_does_not_grant_names_the_taken_seats() {
        assert_eq!(
            tally(&[Some(vec![1, 3]), Some(vec![3]), yes()], 2, FAST, TTL),
            Verdict::Taken(vec![0, 2])
        );
        // A split: one grant, one refusal, one silent.
        assert_eq!(
            tally(&[yes(), Some(vec![2]), None], 2, FAST, TTL),
            Verdict::Taken(vec![1])
        );
    }

    #[test]
    fn a_quorum_of_one_grants_what_a_majority_refuses() {
        // The negative control's broken quorum, in miniature.
        let answers = [yes(), Some(vec![1]), Some(vec![1])];
        assert_eq!(tally(&answers, 1, FAST, TTL), Verdict::Granted);
        assert_eq!(tally(&answers, 2, FAST, TTL), Verdict::Taken(vec![0]));
    }

    #[test]
    fn only_three_or_five_servers() {
        let urls = |n: u16| -> Vec<String> {
            (0..n)
                .map(|i| format!("redis://127.0.0.1:{}", 7000 + i))
                .collect()
        };
        for n in [1, 2, 4, 6] {
            let err = Redlock::new(&urls(n), FAST).err().expect("refused");
            assert!(err.to_string().contains("REGION_REDLOCK_URLS"), "{err}");
        }
        assert_eq!(Redlock::new(&urls(3), FAST).expect("3").quorum(), 2);
        assert_eq!(Redlock::new(&urls(5), FAST).expect("5").quorum(), 3);
    }
}

# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ and by .ci/run. Sourced, never
# run: it defines functions and REPO_ROOT, and changes nothing else.

# The repository root, whatever directory the caller started in.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

log() { echo "[$(basename "$0")] $*" >&2; }
die() {
    echo "[$(basename "$0")] error: $*" >&2
    exit 1
}

# Runs a command as root: directly when we are root (CI, containers), else
# through non-interactive sudo (a developer laptop). No TTY is assumed.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || die "'sudo $*' failed (run this script as root, or allow passwordless sudo)"
    else
        die "need root to run '$*' (no sudo on this machine)"
    fi
}

# apt-get update runs at most once per script run, and only when something
# is actually missing, so an already-provisioned machine never touches the
# network.
_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install these yourself: $*"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" </dev/null
}

# Makes cargo usable: non-login shells (CI, cron) often lack ~/.cargo/bin on
# PATH, and `ring` (used for JWTs) needs a C compiler to build.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
        export PATH
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust (https://rustup.rs), then re-run"
    if ! command -v cc >/dev/null 2>&1; then
        apt_install gcc libc6-dev
    fi
}

# Adds a rustup target unless it is already installed (adding one needs the
# network; checking does not).
ensure_rust_target() {
    local target="$1"
    if command -v rustup >/dev/null 2>&1; then
        rustup target list --installed | grep -x "$target" >/dev/null ||
            rustup target add "$target"
    else
        log "rustup not found; assuming the toolchain already has $target"
    fi
}

# --- Background services (scripts/up.sh and scripts/down.sh) -------------

# Fails unless nothing listens on HOST:PORT. Anything answering there is
# not ours (down.sh has stopped what we started): starting would fail with
# "address in use", or worse, clients would talk to someone else.
#   require_free_port <what> <host:port> <variable that sets it>
require_free_port() {
    local what="$1" addr="$2" var="$3"
    if (: <"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
        die "$addr ($what) is already in use by another process (not started by this script).
Stop it, or run with another address, e.g. $var=127.0.0.1:$((${addr##*:} + 1)) scripts/up.sh"
    fi
}

# Starts a program in the background as a service of its own and prints
# its pid. setsid: its own session, so a Ctrl-C in this terminal (e.g.
# during the demo) does not reach it. The inner shell records its pid,
# then execs the program, so the pid file names the service process
# itself. Output goes to LOG_FILE (emptied first); NO_COLOR keeps terminal
# colour codes out of it.
#   start_service <pid file> <log file> <program> [args...]
start_service() {
    local pid_file="$1" log_file="$2"
    shift 2
    mkdir -p "$(dirname "$pid_file")" "$(dirname "$log_file")"
    rm -f "$pid_file"
    : >"$log_file"
    # shellcheck disable=SC2016 # $$, $1 and $@ belong to the inner shell
    NO_COLOR=1 setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pid_file" "$@" \
        >>"$log_file" 2>&1 </dev/null &
    for _ in $(seq 1 50); do
        [ -s "$pid_file" ] && break
        sleep 0.1
    done
    [ -s "$pid_file" ] || die "$1 did not start; see $log_file"
    cat "$pid_file"
}

# The error lines of a log first: with RUST_BACKTRACE set, a start-up
# error is followed by a long backtrace that would push it out of a plain
# tail.
show_log_errors() {
    local log_file="$1"
    echo "--- errors in $log_file ---" >&2
    grep -m 5 -E '^Error:|panicked| ERROR ' "$log_file" >&2 || echo "(none)" >&2
    echo "--- last lines of $log_file ---" >&2
    tail -n 15 "$log_file" >&2 || true
}

# Waits until PROBE (a command) succeeds. Dies, showing the log's errors,
# if the process exits first (removing its pid file) or TIMEOUT seconds
# pass. WHERE names the address in the message.
#   await_service <name> <where> <pid> <pid file> <log file> <timeout s> <probe...>
await_service() {
    local name="$1" where="$2" pid="$3" pid_file="$4" log_file="$5" timeout="$6"
    shift 6
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pid_file"
            show_log_errors "$log_file"
            die "the $name exited during start-up; full log: $log_file"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_errors "$log_file"
            die "the $name (pid $pid) is not ready at $where after ${timeout} s; see $log_file (it is still running: scripts/down.sh stops it)"
        fi
        sleep 0.2
    done
}

# The HTTP services: ready when URL answers 2xx.
#   wait_ready <name> <url> <pid> <pid file> <log file> <timeout s>
wait_ready() {
    await_service "$@" curl -fsS --max-time 2 "$2"
}

# A service that speaks no HTTP (the mail catcher): ready when HOST:PORT
# accepts a TCP connection.
#   wait_port <name> <host:port> <pid> <pid file> <log file> <timeout s>
port_open() { (: <"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_port() {
    await_service "$@" port_open "$2"
}

# Stops the service a pid file names, and only if that pid still runs the
# expected program (/proc/<pid>/comm): after a reboot or a crash the
# number may belong to something else by now. SIGTERM first (graceful
# shutdown), SIGKILL after 15 s.
#   stop_service <name> <program name> <pid file>
stop_service() {
    local name="$1" comm="$2" pid_file="$3" pid
    if [ ! -f "$pid_file" ]; then
        echo "$name: not running (no $pid_file)"
        return 0
    fi
    pid="$(cat "$pid_file")"
    if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
        echo "$name: not running (removing stale $pid_file)"
        rm -f "$pid_file"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) did not stop within 15 s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
    echo "$name: stopped (pid $pid)"
}

# --- The edge Worker -------------------------------------------------------

# True when functions/build exists and nothing it is built from (the
# Worker's and shared's sources and manifests, the lock file, the build
# scripts) is newer than it: scripts/up.sh then skips the rebuild, which
# also leaves functions/build alone for anything running it meanwhile.
edge_build_fresh() {
    local stamp="$REPO_ROOT/functions/build/wasm-gzip-bytes"
    [ -f "$stamp" ] && [ -f "$REPO_ROOT/functions/build/index.js" ] || return 1
    [ -z "$(find "$REPO_ROOT/functions/src" "$REPO_ROOT/functions/Cargo.toml" \
        "$REPO_ROOT/shared/src" "$REPO_ROOT/shared/Cargo.toml" \
        "$REPO_ROOT/Cargo.toml" "$REPO_ROOT/Cargo.lock" \
        "$REPO_ROOT/scripts/build-edge.sh" "$REPO_ROOT/scripts/edge-toolchain.sh" \
        -newer "$stamp" -print -quit 2>/dev/null)" ]
}

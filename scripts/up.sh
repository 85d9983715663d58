#!/usr/bin/env bash
# README command 1: brings everything up and runs the demo.
#
#   1. PostgreSQL and Redis installed and running (scripts/services.sh);
#   2. release build of the region core and the load generator;
#   3. the `booking` database created if missing, and migrated;
#   4. the region core (re)started in the background on 127.0.0.1:8080;
#   5. the demo: `loadgen demo` seeds two cities through the operator API
#      and runs a small flash sale against the running region core.
#
# The region core keeps running afterwards; scripts/down.sh stops it.
# Any REGION_* variable set by the caller is passed on (see README.md).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

export REGION_LISTEN="${REGION_LISTEN:-127.0.0.1:8080}"
export REGION_DATABASE_URL="${REGION_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/booking}"
BASE_URL="http://$REGION_LISTEN"
RUN_DIR="$REPO_ROOT/.run"
PID_FILE="$RUN_DIR/region-core.pid"
LOG_FILE="$RUN_DIR/region-core.log"
READY_TIMEOUT_S=60

step() { printf '\n==> %s\n' "$*"; }

step "Services (PostgreSQL, Redis)"
bash scripts/services.sh

step "Build (release): region-core, loadgen"
ensure_rust
cargo build --release -p region-core -p loadgen

step "Database"
# The server URL with the maintenance database, and the name to create:
# postgres://u:p@host:port/booking?x=y -> .../postgres and booking.
db_name="${REGION_DATABASE_URL##*/}"
db_name="${db_name%%\?*}"
admin_url="${REGION_DATABASE_URL%/*}/postgres"
[[ "$db_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
    die "REGION_DATABASE_URL must end in a plain database name, got '$db_name'"
db_exists() {
    [ "$(psql "$admin_url" -X -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db_name'" </dev/null)" = "1" ]
}
if db_exists; then
    echo "database $db_name exists"
else
    # A concurrent run may create it between the check and here; that is fine.
    psql "$admin_url" -X -q -c "CREATE DATABASE \"$db_name\"" </dev/null 2>/dev/null || db_exists ||
        die "could not create database $db_name via $admin_url"
    echo "database $db_name created"
fi
target/release/region-core migrate

step "Region core on $REGION_LISTEN"
# Stop the instance a previous run of this script started (if any).
bash scripts/down.sh
listen_host="${REGION_LISTEN%:*}"
listen_port="${REGION_LISTEN##*:}"
# Anything still answering on the port is not ours: starting would fail
# with "address in use", or worse the demo would talk to someone else.
if (: <"/dev/tcp/$listen_host/$listen_port") 2>/dev/null; then
    die "$REGION_LISTEN is already in use by another process (not started by this script).
Stop it, or run with another address, e.g. REGION_LISTEN=127.0.0.1:8081 scripts/up.sh"
fi
mkdir -p "$RUN_DIR"
: >"$LOG_FILE"
# setsid: its own session, so a Ctrl-C in this terminal (e.g. during the
# demo) does not reach it. The inner shell records its pid, then execs the
# server, so the pid file names the region-core process itself. NO_COLOR
# keeps terminal colour codes out of the log file.
# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
NO_COLOR=1 setsid bash -c 'echo $$ >"$1"; exec target/release/region-core' _ "$PID_FILE" \
    >>"$LOG_FILE" 2>&1 </dev/null &
for _ in $(seq 1 50); do
    [ -s "$PID_FILE" ] && break
    sleep 0.1
done
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
[ -n "$pid" ] || die "the region core did not start; see $LOG_FILE"

# The error lines first: with RUST_BACKTRACE set, a start-up error is
# followed by a long backtrace that would push it out of a plain tail.
show_log_errors() {
    echo "--- errors in $LOG_FILE ---" >&2
    grep -m 5 -E '^Error:|panicked| ERROR ' "$LOG_FILE" >&2 || echo "(none)" >&2
    echo "--- last lines of $LOG_FILE ---" >&2
    tail -n 15 "$LOG_FILE" >&2 || true
}
deadline=$((SECONDS + READY_TIMEOUT_S))
until curl -fsS --max-time 2 "$BASE_URL/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PID_FILE"
        show_log_errors
        die "the region core exited during start-up; full log: $LOG_FILE"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        show_log_errors
        die "the region core (pid $pid) is not ready at $BASE_URL/readyz after ${READY_TIMEOUT_S} s; see $LOG_FILE (it is still running: scripts/down.sh stops it)"
    fi
    sleep 0.5
done
echo "ready: $(curl -fsS --max-time 2 "$BASE_URL/readyz" || true)"

step "Demo: two cities and a small flash sale (loadgen demo)"
if ! target/release/loadgen demo --target "$BASE_URL"; then
    die "the demo failed (output above). The region core is still running at $BASE_URL (log: $LOG_FILE); scripts/down.sh stops it."
fi

cat <<EOF

The region core is running at $BASE_URL (pid $pid, log: .run/region-core.log).
  curl $BASE_URL/v1/cities
  target/release/region-core mint-token --sub alice                 # a user token
  target/release/region-core mint-token --sub ops --role operator   # an operator token
API: docs/api.md. Stop it with: scripts/down.sh
EOF

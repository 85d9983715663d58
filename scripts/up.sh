#!/usr/bin/env bash
# README command 1: brings everything up and runs the demo.
#
#   1. PostgreSQL and Redis installed and running (scripts/services.sh);
#   2. release build of the region core, the sandbox payment gateway and
#      the load generator;
#   3. the `booking` database created if missing, and migrated;
#   4. the sandbox payment gateway (re)started in the background on
#      127.0.0.1:8090, its webhooks pointed at the region core;
#   5. the region core (re)started in the background on 127.0.0.1:8080,
#      charging through that gateway;
#   6. the demo: `loadgen demo` seeds two cities through the operator API,
#      runs a small flash sale against the running region core, then walks
#      one buyer through a purchase, a replay, a cancellation and its
#      refund.
#
# Both keep running afterwards; scripts/down.sh stops them. Any REGION_*
# or SANDBOX_* variable set by the caller is passed on (see README.md and
# docs/sandbox-gateway.md; e.g. SANDBOX_FAULT_RATE=0.2 makes a share of
# payments fail, and the demo's buyer retries as a real client would).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

export REGION_LISTEN="${REGION_LISTEN:-127.0.0.1:8080}"
export REGION_DATABASE_URL="${REGION_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/booking}"
# The sandbox gateway and the region core must agree on its address, its
# API key and the webhook signing secret; the defaults of both agree.
export SANDBOX_LISTEN="${SANDBOX_LISTEN:-127.0.0.1:8090}"
export REGION_GATEWAY_URL="${REGION_GATEWAY_URL:-http://$SANDBOX_LISTEN}"
export REGION_GATEWAY_API_KEY="${REGION_GATEWAY_API_KEY:-${SANDBOX_API_KEY:-sk_sandbox_local}}"
export SANDBOX_API_KEY="${SANDBOX_API_KEY:-$REGION_GATEWAY_API_KEY}"
export REGION_GATEWAY_WEBHOOK_SECRET="${REGION_GATEWAY_WEBHOOK_SECRET:-${SANDBOX_WEBHOOK_SECRET:-whsec_sandbox_local}}"
export SANDBOX_WEBHOOK_SECRET="${SANDBOX_WEBHOOK_SECRET:-$REGION_GATEWAY_WEBHOOK_SECRET}"
export SANDBOX_WEBHOOK_URL="${SANDBOX_WEBHOOK_URL:-http://$REGION_LISTEN/v1/webhooks/payments}"
[ "$SANDBOX_API_KEY" = "$REGION_GATEWAY_API_KEY" ] ||
    die "SANDBOX_API_KEY and REGION_GATEWAY_API_KEY differ: the region core could not charge"
[ "$SANDBOX_WEBHOOK_SECRET" = "$REGION_GATEWAY_WEBHOOK_SECRET" ] ||
    die "SANDBOX_WEBHOOK_SECRET and REGION_GATEWAY_WEBHOOK_SECRET differ: the region core would refuse every webhook"
BASE_URL="http://$REGION_LISTEN"
GATEWAY_URL="http://$SANDBOX_LISTEN"
RUN_DIR="$REPO_ROOT/.run"
PID_FILE="$RUN_DIR/region-core.pid"
LOG_FILE="$RUN_DIR/region-core.log"
GW_PID_FILE="$RUN_DIR/sandbox-gateway.pid"
GW_LOG_FILE="$RUN_DIR/sandbox-gateway.log"
READY_TIMEOUT_S=60

step() { printf '\n==> %s\n' "$*"; }

step "Services (PostgreSQL, Redis)"
bash scripts/services.sh

step "Build (release): region-core, sandbox-gateway, loadgen"
ensure_rust
cargo build --release -p region-core -p sandbox-gateway -p loadgen

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

step "Payment gateway (sandbox) on $SANDBOX_LISTEN"
# Stop what a previous run of this script started (core and gateway).
bash scripts/down.sh
require_free_port "the payment gateway" "$SANDBOX_LISTEN" SANDBOX_LISTEN
require_free_port "the region core" "$REGION_LISTEN" REGION_LISTEN
# Started before the core, which charges through it; its webhooks go to
# the core (delivery is retried, so the core not being up yet is fine).
gw_pid="$(start_service "$GW_PID_FILE" "$GW_LOG_FILE" target/release/sandbox-gateway)"
wait_ready "payment gateway" "$GATEWAY_URL/healthz" "$gw_pid" "$GW_PID_FILE" "$GW_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$GATEWAY_URL/healthz" || true) (webhooks to $SANDBOX_WEBHOOK_URL, fault rate ${SANDBOX_FAULT_RATE:-0})"

step "Region core on $REGION_LISTEN (charging through $REGION_GATEWAY_URL)"
pid="$(start_service "$PID_FILE" "$LOG_FILE" target/release/region-core)"
wait_ready "region core" "$BASE_URL/readyz" "$pid" "$PID_FILE" "$LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$BASE_URL/readyz" || true)"

step "Demo: two cities, a small flash sale and one purchase (loadgen demo)"
if ! target/release/loadgen demo --target "$BASE_URL" --gateway-url "$REGION_GATEWAY_URL"; then
    die "the demo failed (output above). The region core is still running at $BASE_URL (log: $LOG_FILE), the payment gateway at $GATEWAY_URL (log: $GW_LOG_FILE); scripts/down.sh stops them."
fi

cat <<EOF

The region core is running at $BASE_URL (pid $pid, log: .run/region-core.log),
charging through the sandbox payment gateway at $GATEWAY_URL (pid $gw_pid, log: .run/sandbox-gateway.log).
  curl $BASE_URL/v1/cities
  target/release/region-core mint-token --sub alice                 # a user token
  target/release/region-core mint-token --sub ops --role operator   # an operator token
  curl -H "Authorization: Bearer $REGION_GATEWAY_API_KEY" $GATEWAY_URL/sandbox/ledger   # every charge and refund
API: docs/api.md, docs/sandbox-gateway.md. Stop both with: scripts/down.sh
EOF

#!/usr/bin/env bash
# README command 1: brings everything up and runs the demo through the edge.
#
#   1. PostgreSQL and Redis installed and running (scripts/services.sh);
#   2. release build of the region core, the sandbox payment gateway, the
#      Upstash-compatible REST gateway and the load generator; the edge
#      Worker built to WASM (scripts/build-edge.sh, skipped when
#      functions/build is newer than its sources; EDGE_REBUILD=1 forces it);
#   3. the `booking` database created if missing, and migrated;
#   4. the sandbox payment gateway (re)started in the background on
#      127.0.0.1:8090, its webhooks pointed at the region core;
#   5. the region core (re)started in the background on 127.0.0.1:8080,
#      charging through that gateway;
#   6. the Upstash-compatible REST gateway (upstash-gateway) on
#      127.0.0.1:8079, in front of the local Redis: the edge's state;
#   7. the edge Worker in workerd (node functions/dev/serve.mjs) on
#      127.0.0.1:8787, routing the demo cities to that region core, with
#      the region core's JWT secret and admission-pass key;
#   7b. a local mail catcher (tools/mailcatcher, aiosmtpd; installed by
#      scripts/mail-toolchain.sh) on 127.0.0.1:1025, the region core's
#      REGION_SMTP_URL, keeping every message in .run/mail/;
#   8. the demo (tools/demo): `demo` seeds two cities through the edge, runs a
#      flash sale through its waiting room (join before opening, admitted
#      in order with passes, buy), shows the queue cannot be bypassed, then
#      walks one buyer through a purchase, a replay, a cancellation and its
#      refund, all through the edge.
#
# Everything keeps running afterwards; scripts/down.sh stops it. Any
# REGION_*, SANDBOX_* or UPSTASH_GATEWAY_* variable set by the caller is
# passed on (see README.md, docs/edge.md, docs/sandbox-gateway.md; e.g.
# SANDBOX_FAULT_RATE=0.2 makes a share of payments fail, and the demo's
# buyers retry as real clients would). EDGE_LISTEN moves the edge,
# EDGE_KEY_PREFIX its Redis keys.
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
# The edge verifies the region core's tokens and signs the admission passes
# the region core checks: it gets the core's JWT secret and the first of its
# admission keys (the defaults of both sides agree; set them once here).
export REGION_JWT_SECRET="${REGION_JWT_SECRET:-dev-only-secret-change-me}"
export REGION_ADMISSION_KEYS="${REGION_ADMISSION_KEYS:-dev-only-admission-key-change-me}"
export UPSTASH_GATEWAY_LISTEN="${UPSTASH_GATEWAY_LISTEN:-127.0.0.1:8079}"
export UPSTASH_GATEWAY_TOKEN="${UPSTASH_GATEWAY_TOKEN:-local-dev-token}"
EDGE_LISTEN="${EDGE_LISTEN:-127.0.0.1:8787}"
EDGE_KEY_PREFIX="${EDGE_KEY_PREFIX:-demo:}"
[ "$SANDBOX_API_KEY" = "$REGION_GATEWAY_API_KEY" ] ||
    die "SANDBOX_API_KEY and REGION_GATEWAY_API_KEY differ: the region core could not charge"
[ "$SANDBOX_WEBHOOK_SECRET" = "$REGION_GATEWAY_WEBHOOK_SECRET" ] ||
    die "SANDBOX_WEBHOOK_SECRET and REGION_GATEWAY_WEBHOOK_SECRET differ: the region core would refuse every webhook"
BASE_URL="http://$REGION_LISTEN"
MAIL_LISTEN="${MAIL_LISTEN:-127.0.0.1:1025}"
export REGION_SMTP_URL="${REGION_SMTP_URL:-smtp://$MAIL_LISTEN}"
export REGION_MAIL_FROM="${REGION_MAIL_FROM:-Tickets <tickets@demo.example>}"
export REGION_PUBLIC_URL="${REGION_PUBLIC_URL:-http://$EDGE_LISTEN}"
GATEWAY_URL="http://$SANDBOX_LISTEN"
UPSTASH_URL="http://$UPSTASH_GATEWAY_LISTEN"
EDGE_URL="http://$EDGE_LISTEN"
RUN_DIR="$REPO_ROOT/.run"
PID_FILE="$RUN_DIR/region-core.pid"
LOG_FILE="$RUN_DIR/region-core.log"
GW_PID_FILE="$RUN_DIR/sandbox-gateway.pid"
GW_LOG_FILE="$RUN_DIR/sandbox-gateway.log"
UP_PID_FILE="$RUN_DIR/upstash-gateway.pid"
UP_LOG_FILE="$RUN_DIR/upstash-gateway.log"
EDGE_PID_FILE="$RUN_DIR/edge.pid"
EDGE_LOG_FILE="$RUN_DIR/edge.log"
MAIL_PID_FILE="$RUN_DIR/mail-catcher.pid"
MAIL_LOG_FILE="$RUN_DIR/mail-catcher.log"
MAIL_DIR="$RUN_DIR/mail"
READY_TIMEOUT_S=60

step() { printf '\n==> %s\n' "$*"; }

step "Services (PostgreSQL, Redis)"
bash scripts/services.sh

step "Build (release): region-core, sandbox-gateway, upstash-gateway, demo"
ensure_rust
cargo build --release -p region-core -p sandbox-gateway -p upstash-gateway -p demo

step "Build: the edge Worker (Rust -> WASM)"
command -v node >/dev/null 2>&1 ||
    die "node not found: the edge runs in workerd through Miniflare, which needs Node.js >= 18 (install Node 20, e.g. from nodejs.org or nvm)"
if [ "${EDGE_REBUILD:-0}" != "1" ] && edge_build_fresh; then
    echo "functions/build is newer than the Worker's sources: not rebuilt (EDGE_REBUILD=1 forces it)"
else
    bash scripts/build-edge.sh
fi

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
# Stop what a previous run of this script started (edge, core, gateways).
bash scripts/down.sh
require_free_port "the payment gateway" "$SANDBOX_LISTEN" SANDBOX_LISTEN
require_free_port "the region core" "$REGION_LISTEN" REGION_LISTEN
require_free_port "the Upstash gateway" "$UPSTASH_GATEWAY_LISTEN" UPSTASH_GATEWAY_LISTEN
require_free_port "the edge" "$EDGE_LISTEN" EDGE_LISTEN
require_free_port "the mail catcher" "$MAIL_LISTEN" MAIL_LISTEN
# Started before the core, which charges through it; its webhooks go to
# the core (delivery is retried, so the core not being up yet is fine).
gw_pid="$(start_service "$GW_PID_FILE" "$GW_LOG_FILE" target/release/sandbox-gateway)"
wait_ready "payment gateway" "$GATEWAY_URL/healthz" "$gw_pid" "$GW_PID_FILE" "$GW_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$GATEWAY_URL/healthz" || true) (webhooks to $SANDBOX_WEBHOOK_URL, fault rate ${SANDBOX_FAULT_RATE:-0})"

step "Mail catcher on $MAIL_LISTEN (the region core's SMTP server; messages in .run/mail/)"
eval "$(bash scripts/mail-toolchain.sh)"
mail_pid="$(start_service "$MAIL_PID_FILE" "$MAIL_LOG_FILE" "$MAIL_CATCHER_PYTHON" "$MAIL_CATCHER_SCRIPT" \
    --dir "$MAIL_DIR" --host "${MAIL_LISTEN%:*}" --port "${MAIL_LISTEN##*:}")"
wait_port "mail catcher" "$MAIL_LISTEN" "$mail_pid" "$MAIL_PID_FILE" "$MAIL_LOG_FILE" "$READY_TIMEOUT_S"
# down.sh checks the pid still runs this program before stopping it.
cat "/proc/$mail_pid/comm" >"$MAIL_PID_FILE.comm"
echo "ready: SMTP on $MAIL_LISTEN, sender $REGION_MAIL_FROM, links to $REGION_PUBLIC_URL"

step "Region core on $REGION_LISTEN (charging through $REGION_GATEWAY_URL)"
pid="$(start_service "$PID_FILE" "$LOG_FILE" target/release/region-core)"
wait_ready "region core" "$BASE_URL/readyz" "$pid" "$PID_FILE" "$LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$BASE_URL/readyz" || true)"

step "Upstash-compatible REST gateway on $UPSTASH_GATEWAY_LISTEN (in front of the local Redis)"
up_pid="$(start_service "$UP_PID_FILE" "$UP_LOG_FILE" target/release/upstash-gateway)"
# Every endpoint wants the token; PING also shows Redis answers through it.
wait_ready "Upstash gateway" "$UPSTASH_URL/ping?_token=$UPSTASH_GATEWAY_TOKEN" "$up_pid" "$UP_PID_FILE" "$UP_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$UPSTASH_URL/ping?_token=$UPSTASH_GATEWAY_TOKEN" || true)"

step "Edge Worker in workerd on $EDGE_LISTEN (mum, nyc -> $BASE_URL)"
# The vars and secrets the Worker reads (docs/edge.md, "Configuration").
# Each simulated demo user sends its own CF-Connecting-IP, as Cloudflare
# would for real users, so the edge is told to trust that header here
# (TRUST_CF_CONNECTING_IP) and the default per-IP rate limits stay as
# they are.
edge_pid="$(start_service "$EDGE_PID_FILE" "$EDGE_LOG_FILE" env \
    REGIONS="{\"mum\":\"$BASE_URL\",\"nyc\":\"$BASE_URL\"}" \
    UPSTASH_REDIS_REST_URL="$UPSTASH_URL" \
    UPSTASH_REDIS_REST_TOKEN="$UPSTASH_GATEWAY_TOKEN" \
    ADMISSION_KEY="${REGION_ADMISSION_KEYS%%,*}" \
    JWT_SECRET="$REGION_JWT_SECRET" \
    KEY_PREFIX="$EDGE_KEY_PREFIX" \
    TRUST_CF_CONNECTING_IP=true \
    node functions/dev/serve.mjs --host "${EDGE_LISTEN%:*}" --port "${EDGE_LISTEN##*:}" --log-level warn)"
wait_ready "edge" "$EDGE_URL/healthz" "$edge_pid" "$EDGE_PID_FILE" "$EDGE_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$EDGE_URL/healthz" || true) (KEY_PREFIX $EDGE_KEY_PREFIX, state through $UPSTASH_URL)"

step "Demo through the edge: two cities, a flash sale through the waiting room, one purchase (tools/demo)"
if ! target/release/demo --edge "$EDGE_URL" --target "$BASE_URL" --gateway-url "$REGION_GATEWAY_URL" --mail-dir "$MAIL_DIR"; then
    die "the demo failed (output above). Still running: the edge at $EDGE_URL (log: $EDGE_LOG_FILE), the region core at $BASE_URL (log: $LOG_FILE), the Upstash gateway at $UPSTASH_URL (log: $UP_LOG_FILE), the payment gateway at $GATEWAY_URL (log: $GW_LOG_FILE); scripts/down.sh stops them."
fi

cat <<EOF

Running (logs in .run/; scripts/down.sh stops them all):
  the edge Worker (workerd)    $EDGE_URL  pid $edge_pid
  the region core              $BASE_URL  pid $pid
  the Upstash gateway          $UPSTASH_URL  pid $up_pid (the edge's Redis keys start with $EDGE_KEY_PREFIX)
  the sandbox payment gateway  $GATEWAY_URL  pid $gw_pid
  the mail catcher (SMTP)      $MAIL_LISTEN  pid $mail_pid (every e-mail sent: $MAIL_DIR/*.eml)
Try:
  curl -i $EDGE_URL/v1/cities                                        # a cached read (X-Edge-Cache)
  AL=\$(target/release/region-core mint-token --sub alice)           # a user token
  curl -H "Authorization: Bearer \$AL" $EDGE_URL/v1/c/mum/me/notifications   # forwarded to mum's region core
  curl -H "Authorization: Bearer $REGION_GATEWAY_API_KEY" $GATEWAY_URL/sandbox/ledger   # every charge and refund
A sale's waiting room: $EDGE_URL/c/mum/sales/<show id> (HTML)
or $EDGE_URL/v1/c/mum/sales/<show id>/status (JSON). API: docs/api.md, docs/edge.md.

Buy a ticket in a browser (sign in with any e-mail address, pay with the test card):
  $EDGE_URL/c/mum
EOF

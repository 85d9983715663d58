#!/usr/bin/env bash
# README command 1: brings everything up and runs the demo through the edge.
#
#   1. PostgreSQL and Redis installed and running (scripts/services.sh);
#   2. release build of the region core, the sandbox payment gateway, the
#      Upstash-compatible REST gateway and the demo; the edge Worker built
#      to WASM (scripts/build-edge.sh, skipped when functions/build is newer
#      than its sources; EDGE_REBUILD=1 forces it);
#   3. a local mail catcher (tools/mailcatcher, aiosmtpd; installed by
#      scripts/mail-toolchain.sh) on 127.0.0.1:1025, every replica's
#      REGION_SMTP_URL, keeping every message in .run/mail/;
#   4. the global catalog (`region-core catalog`, database booking_global)
#      on 127.0.0.1:8070: titles every city shares, and search across
#      cities; then two city shards (scripts/shards.sh), each with its own database, its
#      own Redis server, its own sandbox payment gateway and two region-core
#      replicas (docs/runbook.md, "Replicas and leases"):
#        mum  shard code MUM  database booking_mum  Redis 127.0.0.1:6380
#             replicas 127.0.0.1:8080 and :8081, payment gateway :8090
#        nyc  shard code NYC  database booking_nyc  Redis 127.0.0.1:6381
#             replicas 127.0.0.1:8082 and :8083, payment gateway :8091
#      (databases created if missing, and migrated);
#   5. the Upstash-compatible REST gateway (upstash-gateway) on
#      127.0.0.1:8079, in front of the local Redis: the edge's state;
#   6. the edge Worker in workerd (node functions/dev/serve.mjs) on
#      127.0.0.1:8787, routing each city to its shard's two replicas, with
#      the region cores' JWT secret and admission-pass key;
#   7. the demo (tools/demo): `demo` seeds the two cities through the edge,
#      runs a flash sale through its waiting room (join before opening,
#      admitted in order with passes, buy), shows the queue cannot be
#      bypassed, walks one buyer through a purchase, a replay, a
#      cancellation and its refund, all through the edge, and then sells
#      in both cities while mum's Redis and one mum replica are killed
#      (scripts/shard-chaos.sh): mum keeps selling, nyc does not notice,
#      nothing is sold twice. Both are started again afterwards.
#
# Everything keeps running afterwards; scripts/down.sh stops it. Any
# REGION_*, SANDBOX_* or UPSTASH_GATEWAY_* variable set by the caller is
# passed on to every replica or gateway (see README.md, docs/edge.md,
# docs/sandbox-gateway.md; e.g. SANDBOX_FAULT_RATE=0.2 makes a share of
# payments fail, and the demo's buyers retry as real clients would), except
# the per-shard ones scripts/shards.sh sets (REGION_LISTEN,
# REGION_DATABASE_URL, REGION_REDIS_URL, REGION_SHARD_CODE,
# REGION_REPLICA_ID, REGION_GATEWAY_URL, SANDBOX_LISTEN,
# SANDBOX_WEBHOOK_URL). PG_ADMIN_URL names the Postgres server (default
# postgres://postgres:postgres@127.0.0.1:5432/postgres). EDGE_LISTEN moves
# the edge, EDGE_KEY_PREFIX its Redis keys.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

export PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
# The sandbox gateways and the region cores must agree on the API key and
# the webhook signing secret; the defaults of both agree.
export REGION_GATEWAY_API_KEY="${REGION_GATEWAY_API_KEY:-${SANDBOX_API_KEY:-sk_sandbox_local}}"
export SANDBOX_API_KEY="${SANDBOX_API_KEY:-$REGION_GATEWAY_API_KEY}"
export REGION_GATEWAY_WEBHOOK_SECRET="${REGION_GATEWAY_WEBHOOK_SECRET:-${SANDBOX_WEBHOOK_SECRET:-whsec_sandbox_local}}"
export SANDBOX_WEBHOOK_SECRET="${SANDBOX_WEBHOOK_SECRET:-$REGION_GATEWAY_WEBHOOK_SECRET}"
# The edge verifies the region cores' tokens and signs the admission passes
# the region cores check: it gets their JWT secret and the first of their
# admission keys (the defaults of both sides agree; set them once here).
export REGION_JWT_SECRET="${REGION_JWT_SECRET:-dev-only-secret-change-me}"
export REGION_ADMISSION_KEYS="${REGION_ADMISSION_KEYS:-dev-only-admission-key-change-me}"
export UPSTASH_GATEWAY_LISTEN="${UPSTASH_GATEWAY_LISTEN:-127.0.0.1:8079}"
export UPSTASH_GATEWAY_TOKEN="${UPSTASH_GATEWAY_TOKEN:-local-dev-token}"
EDGE_LISTEN="${EDGE_LISTEN:-127.0.0.1:8787}"
EDGE_KEY_PREFIX="${EDGE_KEY_PREFIX:-demo:}"
[ "$SANDBOX_API_KEY" = "$REGION_GATEWAY_API_KEY" ] ||
    die "SANDBOX_API_KEY and REGION_GATEWAY_API_KEY differ: the region cores could not charge"
[ "$SANDBOX_WEBHOOK_SECRET" = "$REGION_GATEWAY_WEBHOOK_SECRET" ] ||
    die "SANDBOX_WEBHOOK_SECRET and REGION_GATEWAY_WEBHOOK_SECRET differ: the region cores would refuse every webhook"
MAIL_LISTEN="${MAIL_LISTEN:-127.0.0.1:1025}"
export REGION_SMTP_URL="${REGION_SMTP_URL:-smtp://$MAIL_LISTEN}"
export REGION_MAIL_FROM="${REGION_MAIL_FROM:-Tickets <tickets@demo.example>}"
export REGION_PUBLIC_URL="${REGION_PUBLIC_URL:-http://$EDGE_LISTEN}"
UPSTASH_URL="http://$UPSTASH_GATEWAY_LISTEN"
EDGE_URL="http://$EDGE_LISTEN"
RUN_DIR="$REPO_ROOT/.run"
UP_PID_FILE="$RUN_DIR/upstash-gateway.pid"
UP_LOG_FILE="$RUN_DIR/upstash-gateway.log"
EDGE_PID_FILE="$RUN_DIR/edge.pid"
EDGE_LOG_FILE="$RUN_DIR/edge.log"
MAIL_PID_FILE="$RUN_DIR/mail-catcher.pid"
MAIL_LOG_FILE="$RUN_DIR/mail-catcher.log"
MAIL_DIR="$RUN_DIR/mail"
READY_TIMEOUT_S=60
# shellcheck source-path=SCRIPTDIR source=shards.sh
source "$REPO_ROOT/scripts/shards.sh"

step() { printf '\n==> %s\n' "$*"; }

step "Services (PostgreSQL, Redis)"
bash scripts/services.sh

step "Build (release): region-core, sandbox-gateway, upstash-gateway, demo, loadgen"
ensure_rust
# loadgen too (the demo links its library anyway): the rehearsal against
# these shards, `loadgen isolation --target …`, then needs no build.
cargo build --release -p region-core -p sandbox-gateway -p upstash-gateway -p demo -p loadgen

step "Build: the edge Worker (Rust -> WASM)"
command -v node >/dev/null 2>&1 ||
    die "node not found: the edge runs in workerd through Miniflare, which needs Node.js >= 18 (install Node 20, e.g. from nodejs.org or nvm)"
if [ "${EDGE_REBUILD:-0}" != "1" ] && edge_build_fresh; then
    echo "functions/build is newer than the Worker's sources: not rebuilt (EDGE_REBUILD=1 forces it)"
else
    bash scripts/build-edge.sh
fi

step "Databases (one per shard, and the global catalog's)"
ensure_database "$CATALOG_DB"
for shard in $SHARDS; do
    ensure_database "$(shard_db "$shard")"
    REGION_DATABASE_URL="$(shard_db_url "$shard")" target/release/region-core migrate
done

step "Stopping what a previous run started"
bash scripts/down.sh
for shard in $SHARDS; do
    for addr in "$(shard_gateway "$shard")" $(shard_replicas "$shard") "127.0.0.1:$(shard_redis_port "$shard")"; do
        require_free_port "shard $shard" "$addr" "the ports in scripts/shards.sh"
    done
done
require_free_port "the global catalog" "$CATALOG_LISTEN" CATALOG_LISTEN
require_free_port "the Upstash gateway" "$UPSTASH_GATEWAY_LISTEN" UPSTASH_GATEWAY_LISTEN
require_free_port "the edge" "$EDGE_LISTEN" EDGE_LISTEN
require_free_port "the mail catcher" "$MAIL_LISTEN" MAIL_LISTEN

step "Mail catcher on $MAIL_LISTEN (every replica's SMTP server; messages in .run/mail/)"
eval "$(bash scripts/mail-toolchain.sh)"
mail_pid="$(start_service "$MAIL_PID_FILE" "$MAIL_LOG_FILE" "$MAIL_CATCHER_PYTHON" "$MAIL_CATCHER_SCRIPT" \
    --dir "$MAIL_DIR" --host "${MAIL_LISTEN%:*}" --port "${MAIL_LISTEN##*:}")"
wait_port "mail catcher" "$MAIL_LISTEN" "$mail_pid" "$MAIL_PID_FILE" "$MAIL_LOG_FILE" "$READY_TIMEOUT_S"
# down.sh checks the pid still runs this program before stopping it.
cat "/proc/$mail_pid/comm" >"$MAIL_PID_FILE.comm"
echo "ready: SMTP on $MAIL_LISTEN, sender $REGION_MAIL_FROM, links to $REGION_PUBLIC_URL"

step "Global catalog on $CATALOG_LISTEN (titles every city shares, search; database $CATALOG_DB)"
start_catalog

for shard in $SHARDS; do
    step "Shard $shard ($(shard_code "$shard")): Redis on 127.0.0.1:$(shard_redis_port "$shard"), payment gateway on $(shard_gateway "$shard"), replicas on $(shard_replicas "$shard" | tr '\n' ' ')"
    start_shard_redis "$shard"
    start_shard_gateway "$shard"
    for i in 1 2; do
        start_shard_replica "$shard" "$i"
    done
done

step "Upstash-compatible REST gateway on $UPSTASH_GATEWAY_LISTEN (in front of the local Redis)"
up_pid="$(start_service "$UP_PID_FILE" "$UP_LOG_FILE" target/release/upstash-gateway)"
# Every endpoint wants the token; PING also shows Redis answers through it.
wait_ready "Upstash gateway" "$UPSTASH_URL/ping?_token=$UPSTASH_GATEWAY_TOKEN" "$up_pid" "$UP_PID_FILE" "$UP_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$UPSTASH_URL/ping?_token=$UPSTASH_GATEWAY_TOKEN" || true)"

step "Edge Worker in workerd on $EDGE_LISTEN (each city -> its shard's replicas)"
# The vars and secrets the Worker reads (docs/edge.md, "Configuration").
# Each simulated demo user sends its own CF-Connecting-IP, as Cloudflare
# would for real users, so the edge is told to trust that header here
# (TRUST_CF_CONNECTING_IP) and the default per-IP rate limits stay as
# they are.
regions="$(regions_json)"
echo "REGIONS=$regions"
# A directory an operator stored (scripts/add-city.sh) may name shards of
# an earlier run: this run's table is the directory until one is stored.
redis-cli -h 127.0.0.1 -p 6379 DEL "${EDGE_KEY_PREFIX}directory" >/dev/null
edge_pid="$(start_service "$EDGE_PID_FILE" "$EDGE_LOG_FILE" env \
    REGIONS="$regions" \
    CATALOG_URL="http://$CATALOG_LISTEN" \
    UPSTASH_REDIS_REST_URL="$UPSTASH_URL" \
    UPSTASH_REDIS_REST_TOKEN="$UPSTASH_GATEWAY_TOKEN" \
    ADMISSION_KEY="${REGION_ADMISSION_KEYS%%,*}" \
    JWT_SECRET="$REGION_JWT_SECRET" \
    KEY_PREFIX="$EDGE_KEY_PREFIX" \
    TRUST_CF_CONNECTING_IP=true \
    node functions/dev/serve.mjs --host "${EDGE_LISTEN%:*}" --port "${EDGE_LISTEN##*:}" --log-level warn)"
wait_ready "edge" "$EDGE_URL/healthz" "$edge_pid" "$EDGE_PID_FILE" "$EDGE_LOG_FILE" "$READY_TIMEOUT_S"
echo "ready: $(curl -fsS --max-time 2 "$EDGE_URL/healthz" || true) (KEY_PREFIX $EDGE_KEY_PREFIX, state through $UPSTASH_URL)"

step "Demo through the edge: two cities, a flash sale through the waiting room, one purchase, a shard outage (tools/demo)"
mum_url="http://$(shard_replicas mum | sed -n 1p)"
nyc_url="http://$(shard_replicas nyc | sed -n 1p)"
if ! target/release/demo --edge "$EDGE_URL" --target "$mum_url" --other-target "$nyc_url" \
    --gateway-url "http://$(shard_gateway mum)" --mail-dir "$MAIL_DIR" \
    --outage-command "bash scripts/shard-chaos.sh kill mum"; then
    bash scripts/shard-chaos.sh restore mum || true
    die "the demo failed (output above). Still running (logs in .run/): the edge at $EDGE_URL, the shards' replicas, Redis servers and payment gateways, the Upstash gateway at $UPSTASH_URL; scripts/down.sh stops them."
fi
step "Starting again what the demo's outage killed (mum's Redis and replica 2)"
bash scripts/shard-chaos.sh restore mum

cat <<EOF

Running (logs in .run/; scripts/down.sh stops them all):
  the edge Worker (workerd)    $EDGE_URL  pid $edge_pid
$(shards_summary)
  the Upstash gateway          $UPSTASH_URL  pid $up_pid (the edge's Redis keys start with $EDGE_KEY_PREFIX)
  the mail catcher (SMTP)      $MAIL_LISTEN  pid $mail_pid (every e-mail sent: $MAIL_DIR/*.eml)
Try:
  curl -i $EDGE_URL/v1/cities                                        # a cached read (X-Edge-Cache)
  curl "$EDGE_URL/v1/search?q=interstelar"                           # titles across cities, typos and all
  AL=\$(target/release/region-core mint-token --sub alice)           # a user token
  curl -H "Authorization: Bearer \$AL" $EDGE_URL/v1/c/mum/me/notifications   # forwarded to a mum replica
  curl -H "Authorization: Bearer $REGION_GATEWAY_API_KEY" http://$(shard_gateway mum)/sandbox/ledger   # mum's charges and refunds
  psql $(shard_db_url mum) -c 'SELECT job, holder, epoch FROM shard_leases'   # which mum replica leads what
A sale's waiting room: $EDGE_URL/c/mum/sales/<show id> (HTML)
or $EDGE_URL/v1/c/mum/sales/<show id>/status (JSON). API: docs/api.md, docs/edge.md.

Buy a ticket in a browser (sign in with any e-mail address, pay with the test card):
  $EDGE_URL/c/mum
EOF

#!/usr/bin/env bash
# Adds a city, on a shard of its own, to the deployment scripts/up.sh runs,
# without restarting anything else (docs/runbook.md, "Adding a city"):
#
#   scripts/add-city.sh <city> <SHARD_CODE> <time zone> [name] [currency]
#   scripts/add-city.sh blr BLR Asia/Kolkata Bengaluru INR
#
#   1. records the shard in .run/shards.extra (scripts/shards.sh reads it,
#      so down.sh and the next up.sh know it), with free ports for its
#      Redis, its payment gateway and its two replicas;
#   2. creates and migrates its database, booking_<city>;
#   3. starts its Redis, payment gateway and two region-core replicas
#      (REGION_SHARD_CODE=<SHARD_CODE>, REGION_REPLICA_ID=<city>-1, -2);
#   4. registers it in the edge's directory: PUT /v1/operator/directory
#      through the edge, every shard with its replicas (no redeploy);
#   5. proves it: `demo --prove-city` creates the city, a venue, a screen
#      and a show through the edge, and one buyer pays for a seat; the
#      booking number must carry the shard code.
#
# EDGE_LISTEN and REGION_JWT_SECRET as for up.sh. Exits non-zero if any
# step fails (what was started keeps running; scripts/down.sh stops it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

city="${1:-}"
code="${2:-}"
tz="${3:-}"
name="${4:-$city}"
currency="${5:-USD}"
[[ "$city" =~ ^[a-z]{2,16}$ ]] || die "usage: $0 <city (lower-case letters)> <SHARD_CODE> <time zone> [name] [currency]"
[[ "$code" =~ ^[A-Za-z0-9]{1,8}$ ]] || die "the shard code must be 1-8 letters or digits, got '$code'"
[ -n "$tz" ] || die "usage: $0 <city> <SHARD_CODE> <time zone> [name] [currency]"
export REGION_JWT_SECRET="${REGION_JWT_SECRET:-dev-only-secret-change-me}"
export REGION_ADMISSION_KEYS="${REGION_ADMISSION_KEYS:-dev-only-admission-key-change-me}"
export REGION_SMTP_URL="${REGION_SMTP_URL:-smtp://127.0.0.1:1025}"
export REGION_MAIL_FROM="${REGION_MAIL_FROM:-Tickets <tickets@demo.example>}"
EDGE_URL="http://${EDGE_LISTEN:-127.0.0.1:8787}"
# shellcheck source-path=SCRIPTDIR source=shards.sh
source "$REPO_ROOT/scripts/shards.sh"

[ -x target/release/region-core ] && [ -x target/release/demo ] ||
    die "run scripts/up.sh first (it builds the binaries and starts the edge)"
curl -fsS --max-time 2 "$EDGE_URL/healthz" >/dev/null ||
    die "the edge does not answer at $EDGE_URL: run scripts/up.sh first"
[ -z "$(shard_code "$city")" ] || die "$city is already a shard ($(shard_code "$city"))"
for other in $SHARDS; do
    [ "$(shard_code "$other" | tr '[:lower:]' '[:upper:]')" != "${code^^}" ] ||
        die "shard code $code is taken by $other: booking numbers must stay unique"
done

step() { printf '\n==> %s\n' "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "1. Recording shard $city ($code) in .run/shards.extra"
mkdir -p .run
line="$city $code $(free_port) $(free_port),$(free_port) $(free_port)"
echo "$line" >>.run/shards.extra
# Read the table again, with the new line.
source "$REPO_ROOT/scripts/shards.sh"
echo "$line"

step "2. Database $(shard_db "$city")"
ensure_database "$(shard_db "$city")"
REGION_DATABASE_URL="$(shard_db_url "$city")" target/release/region-core migrate

step "3. Redis, payment gateway and two replicas"
start_shard_redis "$city"
start_shard_gateway "$city"
for i in 1 2; do
    start_shard_replica "$city" "$i"
done

step "4. Registering every shard in the edge's directory (PUT /v1/operator/directory)"
op="$(target/release/region-core mint-token --sub add-city --role operator)"
regions="$(regions_json)"
curl -fsS --max-time 10 -X PUT -H "Authorization: Bearer $op" -H 'Content-Type: application/json' \
    --data "$regions" "$EDGE_URL/v1/operator/directory"
echo

step "5. Proving it: the city, a show and a first booking through the edge"
out="$(target/release/demo --edge "$EDGE_URL" --prove-city "$city" --city-name "$name" \
    --city-time-zone "$tz" --city-currency "$currency")"
echo "$out"
grep -q "RESULT: OK: .*-${code^^}-" <<<"$out" ||
    die "the first booking does not carry shard code ${code^^}"
echo
echo "$city is live on shard ${code^^}: $EDGE_URL/c/$city"

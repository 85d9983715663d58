#!/usr/bin/env bash
# CI's last step: the README's first command on this checkout, then a city
# added the way the runbook says, then everything stopped again.
#
#   scripts/up.sh                                  (two shards, the edge, the demo)
#   scripts/add-city.sh blr BLR Asia/Kolkata …     (a third shard, registered
#                                                   in the edge's directory,
#                                                   proved with a booking)
#   loadgen isolation --target mum=… --target nyc=…  (load across the running
#                                                   shards, one target per
#                                                   city, both audited)
#   scripts/down.sh                                (always, even on failure)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

finish() {
    local rc=$?
    bash scripts/down.sh >/dev/null 2>&1 || true
    rm -f .run/shards.extra
    exit "$rc"
}
trap finish EXIT

bash scripts/up.sh
bash scripts/add-city.sh blr BLR Asia/Kolkata Bengaluru INR

# A short run of the load across shards against what up.sh started: the
# runbook's rehearsal against a staging deployment, in miniature.
# shellcheck source-path=SCRIPTDIR source=shards.sh
source scripts/shards.sh
target_of() { echo "$1=$(shard_replicas "$1" | sed 's|^|http://|' | paste -sd, -)"; }
target/release/loadgen isolation --json \
    --target "$(target_of mum)" --target "$(target_of nyc)" \
    --audit-database "mum=$(shard_db_url mum)" --audit-database "nyc=$(shard_db_url nyc)" \
    --alone-secs 3 --sale-secs 5 --nyc-rate 50 --buyers 8

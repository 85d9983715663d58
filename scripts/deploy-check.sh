#!/usr/bin/env bash
# CI's last step: the README's first command on this checkout, then a city
# added the way the runbook says, then everything stopped again.
#
#   scripts/up.sh                                  (two shards, the edge, the demo)
#   scripts/add-city.sh blr BLR Asia/Kolkata …     (a third shard, registered
#                                                   in the edge's directory,
#                                                   proved with a booking)
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

#!/usr/bin/env bash
# The benchmarks (docs/BENCHMARKS.md): builds, in release mode, what
# `loadgen` spawns and measures (the region core, the sandbox payment
# gateway) and loadgen itself, the edge Worker too with --through-edge
# (skipped while functions/build is newer than its sources), then runs
#
#   target/release/loadgen "$@"
#
# e.g. scripts/bench.sh holds --json
#      scripts/bench.sh checkout --json
#      scripts/bench.sh flash-sale --through-edge --json
#      scripts/bench.sh seatmap --json                  (viewers on the region core)
#      scripts/bench.sh seatmap --through-edge --json   (through the edge's Durable Objects)
#
# Postgres and Redis are started if needed (scripts/services.sh). With
# --target, loadgen drives that running deployment instead of spawning one.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash scripts/services.sh >/dev/null
ensure_rust
cargo build --release -p region-core -p sandbox-gateway -p loadgen
# The edge runs in workerd for --through-edge, and always for sellout.
if [[ " $* " == *" --through-edge "* || "${1:-}" == "sellout" ]] && ! edge_build_fresh; then
    bash scripts/build-edge.sh
fi
# Hundreds of sockets at once: lift a low soft limit on open files.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/loadgen "$@"

#!/usr/bin/env bash
# Stops what scripts/up.sh started, and only that: the region core, then
# the sandbox payment gateway, each found through its pid file in .run/.
# PostgreSQL and Redis are left running: they may be shared with other
# work on this machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The core first: it calls the gateway (charges, refunds), not the other
# way round. SIGTERM lets it drain in-flight requests and stop its
# background tasks (graceful shutdown).
stop_service "region core" region-core "$REPO_ROOT/.run/region-core.pid"
stop_service "payment gateway" sandbox-gateway "$REPO_ROOT/.run/sandbox-gateway.pid"

#!/usr/bin/env bash
# Stops what scripts/up.sh started, and only that: the edge Worker, the
# region core, the Upstash gateway, the sandbox payment gateway, then the
# mail catcher, each found through its pid file in .run/. PostgreSQL and Redis are left
# running: they may be shared with other work on this machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Callers before what they call: the edge calls the region core and the
# Upstash gateway; the core calls the payment gateway (charges, refunds).
# SIGTERM lets each drain in-flight requests (graceful shutdown); the
# edge's serve.mjs disposes of workerd on it.
stop_service "edge" node "$REPO_ROOT/.run/edge.pid"
stop_service "region core" region-core "$REPO_ROOT/.run/region-core.pid"
stop_service "Upstash gateway" upstash-gateway "$REPO_ROOT/.run/upstash-gateway.pid"
stop_service "payment gateway" sandbox-gateway "$REPO_ROOT/.run/sandbox-gateway.pid"
# The mail catcher is a Python program: up.sh recorded its process name.
mail_comm="$(cat "$REPO_ROOT/.run/mail-catcher.pid.comm" 2>/dev/null || echo python)"
stop_service "mail catcher" "$mail_comm" "$REPO_ROOT/.run/mail-catcher.pid"
rm -f "$REPO_ROOT/.run/mail-catcher.pid.comm"

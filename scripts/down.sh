#!/usr/bin/env bash
# Stops what scripts/up.sh started, and only that: the edge Worker, each
# shard's region-core replicas, payment gateway and Redis server
# (scripts/shards.sh), the Upstash gateway, then the mail catcher, each
# found through its pid file in .run/. The shared PostgreSQL and Redis are
# left running: they may be shared with other work on this machine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Callers before what they call: the edge calls the region core and the
# Upstash gateway; the core calls the payment gateway (charges, refunds).
# SIGTERM lets each drain in-flight requests (graceful shutdown); the
# edge's serve.mjs disposes of workerd on it.
stop_service "edge" node "$REPO_ROOT/.run/edge.pid"
# shellcheck source-path=SCRIPTDIR source=shards.sh
source "$REPO_ROOT/scripts/shards.sh"
stop_shards
stop_service "Upstash gateway" upstash-gateway "$REPO_ROOT/.run/upstash-gateway.pid"
# What an up.sh from before the shards (one region core) left running.
for old in region-core sandbox-gateway; do
    if [ -e "$REPO_ROOT/.run/$old.pid" ]; then
        stop_service "$old (single-shard layout)" "$old" "$REPO_ROOT/.run/$old.pid"
    fi
done
# The mail catcher is a Python program: up.sh recorded its process name.
mail_comm="$(cat "$REPO_ROOT/.run/mail-catcher.pid.comm" 2>/dev/null || echo python)"
stop_service "mail catcher" "$mail_comm" "$REPO_ROOT/.run/mail-catcher.pid"
rm -f "$REPO_ROOT/.run/mail-catcher.pid.comm"

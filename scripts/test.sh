#!/usr/bin/env bash
# README command 2: runs every test of the workspace against real
# PostgreSQL and Redis (started by scripts/services.sh if needed).
#
# Extra arguments go to cargo test, e.g.
#   scripts/test.sh -p e2e                 # only the end-to-end tests
#   scripts/test.sh -- --nocapture holds   # filter by name, show output
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bash scripts/services.sh
ensure_rust

# The edge end-to-end tests run the built Worker in workerd: build it
# (pinned toolchain, installed on first use; EDGE_SKIP_BUILD=1 reuses an
# existing functions/build/).
if [ "${EDGE_SKIP_BUILD:-0}" != "1" ] || [ ! -f functions/build/index.js ]; then
    bash scripts/build-edge.sh >/dev/null
fi

# The browser tests drive headless Chromium over WebDriver and check each
# page with axe-core: install them if missing, and say where they are.
eval "$(bash scripts/browser-toolchain.sh)"

# The mail tests send real SMTP to a local catcher (aiosmtpd) they start
# on a free port: install it if missing, and say where it is.
eval "$(bash scripts/mail-toolchain.sh)"

# Where the tests find the services. Each test creates its own database
# from TEST_DATABASE_URL (so the role must be allowed to CREATE DATABASE)
# and uses its own keys in TEST_REDIS_URL; tests that kill Redis start a
# private redis-server on a free port instead.
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# Debian keeps the PostgreSQL server binaries (postgres, initdb, pg_ctl) off
# PATH; append the newest version's directory for tests that need them.
pg_bin="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -n "$pg_bin" ]; then
    PATH="$PATH:$pg_bin"
    export PATH
fi

# The concurrency tests open hundreds of sockets at once; lift a low
# soft limit on open files (never above the hard limit).
soft="$(ulimit -Sn)"
hard="$(ulimit -Hn)"
if [ "$soft" != "unlimited" ] && [ "$soft" -lt 65536 ]; then
    if [ "$hard" = "unlimited" ] || [ "$hard" -ge 65536 ]; then
        ulimit -Sn 65536
    else
        ulimit -Sn "$hard"
    fi
fi

# Every package by default; only the named ones when the caller picks
# packages with -p/--package (cargo's --workspace would override them).
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

# Fault tests run the real binaries (a sandbox gateway they freeze with
# SIGSTOP, a region core they kill): build them next to the test binaries.
cargo build --bins -p sandbox-gateway -p region-core

echo "TEST_DATABASE_URL=$TEST_DATABASE_URL TEST_REDIS_URL=$TEST_REDIS_URL"
# --no-fail-fast: one failing test binary must not hide the others'
# results (the run still fails).
exec cargo test "${scope[@]}" --all-targets --no-fail-fast "$@"
